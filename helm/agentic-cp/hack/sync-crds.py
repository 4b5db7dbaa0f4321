#!/usr/bin/env python3
"""Copy the upstream kube-agentic-networking CRDs into the chart's files/crds/ folder, byte for byte.

The chart does not ship them as they stand: templates/crds/crds.yaml renders them with
additionalPrinterColumns added (and says so on each CRD), so that `helm upgrade` upgrades them.
Keeping the source byte-equal makes a refresh a plain copy and any local change visible in the template.
The stale `agentic.prototype.x-k8s.io_xbackends.yaml` is deliberately not copied.

Usage: hack/sync-crds.py [UPSTREAM_CRDS_DIR]   (default: ../shared/upstream-examples/... beside the repo)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = CHART.parents[2] / "shared/upstream-examples/kube-agentic-networking/crds"
FILES = (
    "agentic.networking.x-k8s.io_xaccesspolicies.yaml",
    "agentic.networking.x-k8s.io_xbackends.yaml",
)


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    for name in FILES:
        shutil.copyfile(source / name, CHART / "files" / "crds" / name)
        print(f"wrote files/crds/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
