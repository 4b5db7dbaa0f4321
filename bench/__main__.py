"""`make bench` / `make bench-quick`: one JSON report of the push path at mesh scale.

Sections: `pipeline` (cold build and one-policy edits, files to snapshot bytes, each size in a fresh
process for an honest peak RSS), `convergence` (simulated Envoys in their own processes against this
server and against a bare grpc.aio server sending the same bytes: the ratio is the figure),
`hot_spots` (old and new code of the profile's hot spots timed side by side), `incremental` (graph and
translation incrementality), `dependents` (whom an edit rebuilds: every
view built to decide vs the dependency index), `hostile_files`, `tools_list` (a filtered tools/list
and a tools/call through a real Envoy, the filter on vs off). Figures are printed, never asserted: these machines
are shared and noisy, so read the ratios; seconds are for orientation.

`python -m bench [--quick]`
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time

from bench import convergence, dependents, hostile_files, hot_spots, incremental, tools_list
from tests.support.processes import REPO_ROOT, repo_env

PROFILES = {
    "quick": {"pipeline": [300], "convergence": [(300, 100)], "hot_spots": 100, "incremental": [10],
              "dependents": [20], "hostile_rounds": 1, "tools_list": 30},
    "full": {"pipeline": [300, 1000, 3000], "convergence": [(1000, 100), (1000, 1000), (100, 1000)],
             "hot_spots": 300, "incremental": [10, 100],
             "dependents": [100, 1000], "hostile_rounds": 3, "tools_list": 500},
}


def pipeline_in_fresh_process(rules: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.pipeline", str(rules)], cwd=REPO_ROOT, env=repo_env(),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def machine() -> dict:
    import os

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


def main(argv: list[str]) -> int:
    profile = PROFILES["quick" if "--quick" in argv else "full"]
    started = time.monotonic()
    report = {"machine": machine(),
              "pipeline": [pipeline_in_fresh_process(n) for n in profile["pipeline"]],
              "convergence": [convergence.side_by_side(r, s) for r, s in profile["convergence"]],
              "hot_spots": hot_spots.run(rules=profile["hot_spots"]),
              "incremental": incremental.run(profile["incremental"]),
              "dependents": dependents.run(profile["dependents"]),
              "hostile_files": hostile_files.run(rounds=profile["hostile_rounds"]),
              "tools_list": tools_list.run(profile["tools_list"])}
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["note"] = "ratios compare runs made moments apart on this machine; seconds are for orientation only"
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
