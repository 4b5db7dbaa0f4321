"""LocalPods removes every namespace, veth, bridge and /etc/netns directory it made, also when the code
inside it fails; a pod resolves Service names through its own /etc/hosts (needs root and `ip netns`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.netns import LocalPods, existing_namespaces, why_unavailable


@pytest.fixture
def permitted():
    reason = why_unavailable() if os.geteuid() == 0 else "needs root (network namespaces)"
    if reason:
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)


def test_everything_is_removed_even_when_the_body_fails(permitted):
    prefix = f"acpt{os.getpid() % 10000}"
    with pytest.raises(RuntimeError, match="the body failed"), LocalPods(prefix, subnet="10.252.9") as pods:
        agent = pods.add("agent", hosts={"10.252.9.3": ["weather.tools.svc.cluster.local"]})
        tool = pods.add("tool")
        assert {pods.node.name, agent.name, tool.name} <= existing_namespaces()
        assert Path("/etc/netns", agent.name, "hosts").read_text().endswith(
            "10.252.9.3 weather.tools.svc.cluster.local\n")
        lookup = "import socket; print(socket.gethostbyname('weather.tools.svc.cluster.local'))"
        resolved = pods.run(agent, [sys.executable, "-c", lookup])
        assert resolved.stdout.strip() == tool.address  # the pod's /etc/hosts, mounted by `ip netns exec`
        raise RuntimeError("the body failed")
    assert not {ns for ns in existing_namespaces() if ns.startswith(prefix)}
    assert not any(Path("/etc/netns", f"{prefix}-{role}").exists() for role in ("agent", "tool"))
