"""Child processes for tests, the demo and the bench: started from the repo root, always stopped.

Why one module: the peers (`python -m tests.support.mcp_server`, `python -m controlplane.cli serve`) are
modules of this clone, not of an installed package, so a child finds them only when the repo root is on
its path whatever the caller's working directory; and every harness used to carry its own copy of
"terminate, wait, then kill".
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the repo root first on PYTHONPATH (children import `tests.*`)."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def spawn(argv: list[str], *, log: Path | None = None, **kwargs) -> subprocess.Popen:
    """Start ``argv`` from the repo root with ``repo_env()``; output goes to ``log`` (appended) or nowhere."""
    kwargs.setdefault("cwd", REPO_ROOT)
    kwargs.setdefault("env", repo_env())
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    if log is None:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)


def terminate(proc: subprocess.Popen | None, *, timeout: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit code. Safe on None and on a dead process."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_for_port(port: int, *, what: str, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    def open_() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(open_, timeout=timeout, what=f"{what} on port {port}", proc=proc)


def wait_until(check, *, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout} s")
