#!/usr/bin/env python3
"""Copy the upstream kube-agentic-networking CRDs into the chart's crds/ folder.

The schema text is copied byte for byte (so every pattern, limit and CEL rule stays upstream's);
only the controller-gen `status:` stub at the end is dropped and a licence header is prepended.
The stale `agentic.prototype.x-k8s.io_xbackends.yaml` is deliberately not copied.

Usage: hack/sync-crds.py [UPSTREAM_CRDS_DIR]   (default: ../shared/upstream-examples/... beside the repo)
"""

from __future__ import annotations

import sys
from pathlib import Path

CHART = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = CHART.parents[2] / "shared/upstream-examples/kube-agentic-networking/crds"
FILES = (
    "agentic.networking.x-k8s.io_xaccesspolicies.yaml",
    "agentic.networking.x-k8s.io_xbackends.yaml",
)
HEADER = """\
# Copied from kubernetes-sigs/kube-agentic-networking (k8s/crds/{name}),
# Copyright The Kubernetes Authors, licensed under the Apache License, Version 2.0:
# http://www.apache.org/licenses/LICENSE-2.0
# Only the empty controller-gen `status:` stub was removed. Regenerate with hack/sync-crds.py.
"""


def strip_status_stub(text: str) -> str:
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.rstrip("\n") == "status:":  # top-level key: no indentation
            return "".join(lines[:i])
    return text


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    for name in FILES:
        body = strip_status_stub((source / name).read_text())
        text = HEADER.format(name=name) + body.removeprefix("---\n")
        (CHART / "crds" / name).write_text(text)
        print(f"wrote crds/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
