"""Generate the betterproto2 code of this project's .proto files (`make protos`).

Why a script of its own, run with any Python 3: the generator (betterproto2-compiler, with grpcio-tools'
protoc) formats its output with the ruff it pins, so it gets a venv of its own (.venv-protos, from
requirements.txt beside this file) instead of the project's venv and its newer ruff. The staleness test
(tests/protos/test_generated.py) runs this same script into a temporary folder and compares.

    python3 protos/generate.py                 # rewrite controlplane/protos/
    python3 protos/generate.py --out DIR       # write elsewhere (the staleness test)
    python3 protos/generate.py --install-only  # only make sure the generator venv exists
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

PROTOS = Path(__file__).resolve().parent
ROOT = PROTOS.parent
PACKAGE = ROOT / "controlplane" / "protos"
REQUIREMENTS = PROTOS / "requirements.txt"
GENERATOR_VENV = Path(os.environ.get("AGENTIC_CP_PROTOS_VENV", ROOT / ".venv-protos"))
STAMP = GENERATOR_VENV / ".installed"


class GeneratorUnavailable(RuntimeError):
    """The generator venv could not be made (no registry, no venv module)."""


def ensure_generator() -> Path:
    """The generator venv's bin folder, installed from requirements.txt when missing or outdated."""
    bin_dir = GENERATOR_VENV / "bin"
    if STAMP.exists() and STAMP.read_bytes() == REQUIREMENTS.read_bytes():
        return bin_dir
    try:
        venv.create(GENERATOR_VENV, with_pip=True, clear=True)
        subprocess.run([bin_dir / "python", "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS],
                       check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or err
        raise GeneratorUnavailable(f"cannot install the protos generator into {GENERATOR_VENV}: {detail}") from err
    STAMP.write_bytes(REQUIREMENTS.read_bytes())
    return bin_dir


def proto_files() -> list[str]:
    return sorted(str(path.relative_to(PROTOS)) for path in PROTOS.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Replace ``out_dir`` with the code generated from every .proto under protos/."""
    bin_dir = ensure_generator()
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # the pinned ruff
    subprocess.run([bin_dir / "python", "-m", "grpc_tools.protoc", f"-I{PROTOS}",
                    f"--plugin=protoc-gen-python_betterproto2={bin_dir / 'protoc-gen-python_betterproto2'}",
                    f"--python_betterproto2_out={out_dir}", *proto_files()],
                   check=True, cwd=PROTOS, env=env, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PACKAGE, help="where the generated package goes")
    parser.add_argument("--install-only", action="store_true", help="only install the generator")
    args = parser.parse_args(argv)
    try:
        if args.install_only:
            print(ensure_generator())
            return 0
        generate(args.out)
    except GeneratorUnavailable as err:
        print(f"protos: {err}", file=sys.stderr)
        return 3
    print(f"generated {', '.join(proto_files())} into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
