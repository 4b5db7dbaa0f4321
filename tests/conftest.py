"""Shared test helpers: where the project's and upstream's example manifests live, and the suite's flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "tests" / "manifests"
SHARED = ROOT.parent / "shared"
UPSTREAM = SHARED / "upstream-examples" / "kube-agentic-networking"


def upstream_dir() -> Path:
    """The upstream examples beside the clone, or a printed skip where they are absent."""
    if not UPSTREAM.is_dir():
        pytest.skip(f"upstream examples not found at {UPSTREAM} (CI keeps ../shared beside the clone)")
    return UPSTREAM


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/translate/testdata/out from the current translation; review the diff")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SKIP_SLOW") == "1":
        skip = pytest.mark.skip(reason="SKIP_SLOW=1: slow end-to-end tests skipped on request")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
