"""Upstream's e2e and conformance expectations, decided offline by the graph (see tests/upstream_cases.py)."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import upstream_dir
from tests.graph.upstream_cases import replay_suite


def _suites():
    root = upstream_dir()
    return root, yaml.safe_load((root / "cases.yaml").read_text())["suites"]


@pytest.mark.parametrize("suite_name", ["TestControllerE2E", "TestExternalAuthE2E", "TestGatewayTLS",
                                        "TestQuickstartE2E", "TestConformance"])
def test_upstream_suite_decisions(suite_name):
    root, suites = _suites()
    suite = next(s for s in suites if s["suite"] == suite_name)
    outcomes = replay_suite(root, suite)
    decided = [o for o in outcomes if o.actual is not None]
    skipped = [o for o in outcomes if o.actual is None]
    for o in skipped:
        print(f"skipped: {o.case}: {o.call.get('method', o.call)} {o.call.get('tool') or ''}: {o.why}")
    wrong = [f"{o.case}: {o.call} expected {o.expected}, got {o.actual} ({o.why})"
             for o in decided if o.actual != o.expected]
    assert not wrong, "\n".join(wrong)
    if suite_name != "TestExternalAuthE2E":
        assert decided, "nothing was decided"


def test_replay_counts_every_upstream_call():
    root, suites = _suites()
    total = sum(len(c.get("calls", [])) + len(c.get("status_checks", [])) for s in suites for c in s["cases"])
    replayed = sum(len(replay_suite(root, s)) for s in suites)
    statuses_elsewhere = sum(1 for s in suites for c in s["cases"] for chk in c.get("status_checks", [])
                             if chk["object"]["kind"] != "XAccessPolicy")
    assert replayed == total - statuses_elsewhere
