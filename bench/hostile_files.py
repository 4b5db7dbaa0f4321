"""`make bench` section: does `agentic-cp serve` keep answering /healthz while hostile files are written?

Starts a real control plane on a copy of the quickstart, then writes an alias bomb, deep nesting, an
oversize file and a large file just under the limit, several times each, while /healthz is polled.
Reports the worst probe latency and the process's peak RSS; figures are printed, never asserted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from tests.support.envoy import free_ports
from tests.support.processes import REPO_ROOT, spawn, terminate

BILLION_LAUGHS = "\n".join(["a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]"] + [
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]) + "\n"


def hostile_writes() -> list[tuple[str, str]]:
    near_limit = "".join(f"k{i}: [{', '.join(['v'] * 20)}]\n" for i in range(20_000))[: 3 * 2**20]
    near_limit = near_limit[: near_limit.rindex("\n") + 1]
    return [("laughs.yaml", BILLION_LAUGHS), ("nested.yaml", "a: " + "[" * 500 + "]" * 500 + "\n"),
            ("nested.json", "[" * 1000 + "]" * 1000), ("huge.yaml", "k: " + "x" * (50 * 2**20) + "\n"),
            ("near-limit.yaml", near_limit)]


def run(rounds: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config"
        shutil.copytree(REPO_ROOT / "examples" / "quickstart", config)
        admin, xds = free_ports(2)
        process = spawn(
            [sys.executable, "-m", "controlplane.cli", "serve", "--config", str(config), "--state-dir",
             str(Path(tmp) / "state"), "--xds-address", f"127.0.0.1:{xds}",
             "--admin-address", f"127.0.0.1:{admin}", "--log-level", "error"])
        try:
            _wait_ready(admin, process)
            probe = _Prober(admin, process.pid)
            probe.start()
            for _ in range(rounds):
                for name, text in hostile_writes():
                    (config / name).write_text(text)
                    time.sleep(0.3)
            time.sleep(1.0)
            probe.stop()
            return {"probes": probe.count, "failed_probes": probe.failures, "alive": process.poll() is None,
                    "healthz_worst_s": round(probe.worst, 4), "rss_peak_mib": round(probe.rss_peak / 2**10, 1),
                    "files": [n for n, _ in hostile_writes()], "rounds": rounds}
        finally:
            terminate(process, timeout=10)


class _Prober(threading.Thread):
    def __init__(self, port: int, pid: int):
        super().__init__(daemon=True)
        self.url, self.pid = f"http://127.0.0.1:{port}/healthz", pid
        self.count = self.failures = 0
        self.worst = 0.0
        self.rss_peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as response:
                    ok = response.status == 200
            except OSError:
                ok = False
            self.worst = max(self.worst, time.perf_counter() - started)
            self.count += 1
            self.failures += not ok
            self.rss_peak = max(self.rss_peak, _rss_kib(self.pid))
            self._stop_event.wait(0.05)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _wait_ready(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the control plane did not become ready")
