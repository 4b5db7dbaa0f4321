"""How long a one-policy edit takes to reach every simulated Envoy (last ACK), against the raw fan-out.

The server (bench/fanout_server.py) and the clients (bench/simclient.py) run in their own processes.
Each edit's convergence per stream is the wall-clock time from the start of the edit on the server to
the client's ACK of the new RouteConfiguration version. The raw server sends the same bytes with no
control plane behind it, so `ratio_to_raw` is the figure that matters on a shared, noisy machine.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time

from tests.support.processes import REPO_ROOT, repo_env, terminate

STREAMS_PER_CLIENT_PROCESS = 250


class Clients:
    """Client processes and the ACK times they report, by (stream, version)."""

    def __init__(self, ready: dict, streams: int) -> None:
        self.acks: dict[tuple[int, str], float] = {}
        self.lock = threading.Lock()
        self.processes = []
        for first in range(0, streams, STREAMS_PER_CLIENT_PROCESS):
            count = min(STREAMS_PER_CLIENT_PROCESS, streams - first)
            argv = [sys.executable, "-m", "bench.simclient", str(ready["port"]), ready["node_id"], str(first),
                    str(count), *ready["routes"]]
            process = subprocess.Popen(argv, cwd=REPO_ROOT, env=repo_env(), stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._collect, args=(process,), daemon=True).start()
            self.processes.append(process)

    def _collect(self, process) -> None:
        for line in process.stdout:
            record = json.loads(line)
            with self.lock:
                self.acks.setdefault((record["stream"], record["version"]), record["t"])

    def wait(self, version: str, streams: int, timeout: float) -> list[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                times = [self.acks[(s, version)] for s in range(streams) if (s, version) in self.acks]
            if len(times) == streams:
                return times
            time.sleep(0.05)
        return times

    def stop(self) -> None:
        for process in self.processes:
            terminate(process)


def run(mode: str, rules: int, streams: int, *, edits: int = 3, timeout: float = 120.0) -> dict:
    server = subprocess.Popen([sys.executable, "-m", "bench.fanout_server", mode, str(rules)], cwd=REPO_ROOT,
                              env=repo_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    clients = None
    try:
        ready = json.loads(server.stdout.readline())
        clients = Clients(ready, streams)
        connected = len(clients.wait(ready["route_version"], streams, timeout))
        latencies, publish, sent = [], [], []
        for _ in range(edits):
            server.stdin.write("edit\n")
            server.stdin.flush()
            edit = json.loads(server.stdout.readline())
            acked = clients.wait(edit["route_version"], streams, timeout)
            latencies += [t - edit["t0"] for t in acked]
            publish.append(edit["total_s"])
            sent.append(edit["bytes_per_proxy"])
        server.stdin.write("quit\n")
        server.stdin.flush()
        rss = json.loads(server.stdout.readline())["peak_rss_mib"]
        return {"mode": mode, "rules": rules, "streams": streams, "connected": connected,
                "acks": len(latencies), "expected_acks": edits * streams, **percentiles(latencies),
                "edit_pipeline_s_median": round(statistics.median(publish), 4),
                "bytes_per_edit_all_streams": int(statistics.median(sent)) * streams,
                "server_peak_rss_mib": rss}
    finally:
        if clients is not None:
            clients.stop()
        terminate(server)


def percentiles(samples: list[float]) -> dict:
    if not samples:
        return {"p50_s": None, "p99_s": None, "max_s": None}
    ordered = sorted(samples)
    return {"p50_s": round(ordered[len(ordered) // 2], 4),
            "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4),
            "max_s": round(ordered[-1], 4)}


def side_by_side(rules: int, streams: int, *, edits: int = 3) -> dict:
    real = run("real", rules, streams, edits=edits)
    raw = run("raw", rules, streams, edits=edits)
    ratio = round(real["p99_s"] / raw["p99_s"], 2) if real["p99_s"] and raw["p99_s"] else None
    return {"rules": rules, "streams": streams, "real": real, "raw": raw, "p99_ratio_to_raw": ratio}


if __name__ == "__main__":
    print(json.dumps(side_by_side(int(sys.argv[1]), int(sys.argv[2])), indent=2))
