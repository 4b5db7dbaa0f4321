"""The control plane logs a problem when it appears and when it clears, never again at every reload."""

from __future__ import annotations

import logging

from controlplane.api.base import Problem
from controlplane.api.changes import ChangeSet
from controlplane.controller import MAX_PROBLEM_LINES, ControlPlane, Settings


def _problems(count: int, origin: str = "f.yaml") -> list[Problem]:
    return [Problem(origin, i, "XBackend", "ns", f"b{i}\nFORGED", "spec.mcp.port", "too big") for i in range(count)]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "controlplane.controller"]


def test_problems_are_logged_once_when_they_appear_and_once_when_they_clear(tmp_path, caplog):
    plane = ControlPlane(source=None, settings=Settings(state_dir=tmp_path, trust_domain="cluster.local",
                                                        xds_address="127.0.0.1:0", admin_address="127.0.0.1:0"))
    caplog.set_level(logging.INFO, logger="controlplane.controller")
    plane.apply(ChangeSet(problems={"f.yaml": _problems(3)}), publish=False)
    assert len(_warnings(caplog)) == 3 and all("\n" not in m for m in _warnings(caplog))
    caplog.clear()
    plane.apply(ChangeSet(problems={"f.yaml": _problems(3), "other.yaml": []}), publish=False)
    assert _warnings(caplog) == []
    plane.apply(ChangeSet(problems={"f.yaml": _problems(2)}), publish=False)
    assert [m.split(":")[0] for m in _warnings(caplog)] == ["problem cleared"]
    assert plane.problems["f.yaml"] == _problems(2)


def test_many_new_problems_are_counted_past_a_few_lines(tmp_path, caplog):
    plane = ControlPlane(source=None, settings=Settings(state_dir=tmp_path, trust_domain="cluster.local",
                                                        xds_address="127.0.0.1:0", admin_address="127.0.0.1:0"))
    caplog.set_level(logging.WARNING, logger="controlplane.controller")
    plane.apply(ChangeSet(problems={"f.yaml": _problems(10_000)}), publish=False)
    messages = _warnings(caplog)
    assert len(messages) == MAX_PROBLEM_LINES + 1 and f"{10_000 - MAX_PROBLEM_LINES} more in f.yaml" in messages[-1]
