"""The hop a route names, parsed as hostile input, and the quickstart's decisions per agent and tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.graph.model import AuthorizationGraph
from controlplane.sources.directory import DirectorySource
from controlplane.toolfilter.decide import BadHop, Hop, tool_predicate

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
SPIFFE = "spiffe://cluster.local/ns/quickstart/sa/"


@pytest.mark.parametrize("text", [None, "", "gateway", "gateway/ns/name", "gateway/ns/name/0", "gateway/ns/name/x",
                                  "gateway/ns//443", "gateway/ns/name/70000", "sidecar/ns/sa/xb", "other/a/b/1",
                                  "gateway/ns/name/443/extra", "sidecar/" + "a/" * 300 + "b"])
def test_a_malformed_hop_is_refused(text):
    with pytest.raises(BadHop):
        Hop.parse(text)


def test_hops_round_trip():
    for text in ("gateway/quickstart/agent-gateway/10443", "sidecar/tools/weather/tools/weather-mcp"):
        assert Hop.parse(text).encode() == text


def test_the_quickstart_agents_may_call_what_their_grants_say():
    graph = AuthorizationGraph(trust_domain="cluster.local")
    graph.apply(DirectorySource(QUICKSTART).load())
    hop = Hop.parse("gateway/quickstart/agent-gateway/10443")
    for agent, allowed in {"research-agent": {"get-sum", "echo"}, "math-agent": {"get-sum"},
                           "intern-agent": set(), "stranger": set()}.items():
        may_call = tool_predicate(graph, hop, caller=SPIFFE + agent, path="/tools/mcp", host="")
        assert {t for t in ("get-sum", "echo", "get-env") if may_call(t)} == allowed, agent
    assert not tool_predicate(graph, hop, caller=None, path="/tools/mcp", host="")("get-sum")
