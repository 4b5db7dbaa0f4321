"""The MCP conformance suite (npm ``@modelcontextprotocol/conformance``): install it, run it, read its results.

Why here: the suite is a Node program. It is pinned by ``tests/conformance/package-lock.json`` and
installed with ``npm ci`` into ``.conformance/`` at the repo root (git-ignored) by ``make conformance``
(which ``make test`` runs) or, once, by the first test that needs it; nothing is fetched while it runs.
Pinned to 0.1.12: from 0.1.14 on the suite imports ``fs.globSync`` and so needs Node 22, and the
machines here have Node 20 (Debian's).

The suite's server mode connects to a URL as an MCP client, runs each scenario, and writes one
``checks.json`` per scenario into ``<out>/server-<scenario>-<timestamp>/``: a list of checks, each with an
``id`` and a ``status`` (``SUCCESS``, ``FAILURE``, ``WARNING``, ``INFO``). A scenario passes when none of
its checks failed, which is how the suite's own summary counts it.

    python -m tests.support.conformance install      # what `make conformance` runs
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import REPO_ROOT

__all__ = ["INSTALL_DIR", "ScenarioResult", "compare", "ensure_installed", "missing_tools", "read_results",
           "run_suite"]

PIN_DIR = REPO_ROOT / "tests" / "conformance"
INSTALL_DIR = REPO_ROOT / ".conformance"
BINARY = INSTALL_DIR / "node_modules" / ".bin" / "conformance"
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT[\d-]+Z$")


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario's outcome: passed, and the ids of the checks that failed (sorted, for comparing)."""

    passed: bool
    failed_checks: tuple[str, ...]


def missing_tools() -> str | None:
    """Why the suite cannot run here (no node or npm), or None."""
    absent = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    return f"{' and '.join(absent)} not on PATH: the MCP conformance suite is a Node program" if absent else None


def ensure_installed() -> Path:
    """The suite's executable, installed from the lockfile first if it is not there (or is stale)."""
    stamp = INSTALL_DIR / "package-lock.json"
    pinned = PIN_DIR / "package-lock.json"
    if BINARY.exists() and stamp.exists() and stamp.read_bytes() == pinned.read_bytes():
        return BINARY
    INSTALL_DIR.mkdir(exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(PIN_DIR / name, INSTALL_DIR / name)
    result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=INSTALL_DIR,
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0 or not BINARY.exists():
        stamp.unlink(missing_ok=True)  # the next attempt starts over
        raise RuntimeError(f"npm ci in {INSTALL_DIR} failed ({result.returncode}): {result.stderr[-2000:]}")
    return BINARY


def run_suite(url: str, out: Path, *, timeout: float = 300) -> dict[str, ScenarioResult]:
    """Run every active server scenario against ``url``; the results read back from ``out``.

    The suite exits 1 whenever a scenario fails, so its exit code says nothing here; a run that wrote
    no results at all raises, with the suite's output.
    """
    out.mkdir(parents=True, exist_ok=True)
    log = out / "suite-output.txt"
    with log.open("w") as fh:
        subprocess.run([str(ensure_installed()), "server", "--url", url, "--output-dir", str(out)],
                       stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout,
                       cwd=INSTALL_DIR, check=False)
    results = read_results(out)
    if not results:
        raise RuntimeError(f"the conformance suite wrote no results for {url}: {log.read_text()[-3000:]}")
    return results


def read_results(out: Path) -> dict[str, ScenarioResult]:
    """{scenario: result} from the suite's ``server-<scenario>-<timestamp>/checks.json`` folders.

    A checks.json that cannot be read as the suite writes it (malformed or half-written JSON, not a list
    of objects, a check without an id or status) is a failed scenario whose one failed check says why:
    it is never dropped (the comparison would then call it "did not run") and never read as a pass.
    """
    results: dict[str, ScenarioResult] = {}
    for folder in sorted(out.iterdir()):
        match = _RESULT_DIR.match(folder.name)
        if not match or not folder.is_dir() or not (folder / "checks.json").exists():
            continue
        try:
            failed = _failed_checks(folder / "checks.json")
        except ValueError as exc:
            failed = (f"unreadable checks.json: {exc}",)
        results[match["scenario"]] = ScenarioResult(passed=not failed, failed_checks=failed)
    return results


def _failed_checks(path: Path) -> tuple[str, ...]:
    """The ids of the checks that failed, sorted; ValueError (one line) when the file is not the suite's."""
    try:
        checks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(checks, list) or not checks:
        raise ValueError(f"expected a non-empty list of checks, got {type(checks).__name__} {str(checks)[:80]}")
    failed = []
    for index, check in enumerate(checks):
        if not isinstance(check, dict) or not isinstance(check.get("status"), str) or "id" not in check:
            raise ValueError(f"check {index} is not an object with an id and a status: {str(check)[:80]}")
        if check["status"] == "FAILURE":
            failed.append(str(check["id"]))
    return tuple(sorted(failed))


def compare(direct: dict[str, ScenarioResult], gateway: dict[str, ScenarioResult]) -> list[str]:
    """One line per scenario whose outcome differs (or that ran on one side only); empty when equal."""
    lines = []
    for scenario in sorted(direct.keys() | gateway.keys()):
        left, right = direct.get(scenario), gateway.get(scenario)
        if left != right:
            lines.append(f"{scenario}: direct {_describe(left)}, through the gateway {_describe(right)}")
    return lines


def _describe(result: ScenarioResult | None) -> str:
    if result is None:
        return "did not run"
    return "passed" if result.passed else f"failed {', '.join(result.failed_checks)}"


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m tests.support.conformance install")
    if (why := missing_tools()) is not None:
        print(f"skipping the MCP conformance suite's install: {why}")
        sys.exit(0)
    print(f"MCP conformance suite: {ensure_installed()}")
