"""graph/reach.py on its own: which authorizations can certainly never match."""

from __future__ import annotations

from controlplane.api.agentic import Authorization
from controlplane.graph.reach import never_matches


def auth(**fields) -> Authorization:
    return Authorization.model_validate({"type": "Inline", **fields})


def test_mcp_methods_need_post():
    tools = {"methods": [{"name": "tools/call"}]}
    assert "POST bodies only" in never_matches(auth(methods=["GET", "DELETE"], mcp=tools), None)
    assert never_matches(auth(methods=["GET", "POST"], mcp=tools), None) == ""
    assert never_matches(auth(methods=["GET"]), None) == ""  # no MCP method asked: a GET can match
    base = {"methods": [{"name": "tools/call"}], "mcpBaseProtocolMethodsOption": "MATCH_BASE_PROTOCOL_METHODS"}
    assert never_matches(auth(methods=["GET"], mcp=base), None) == ""  # the session's GET is base protocol


def test_ports_only_where_the_target_ports_are_known():
    assert "only ports [9999]" in never_matches(auth(ports=[9999]), {8443})
    assert never_matches(auth(ports=[9999, 8443]), {8443}) == ""
    assert never_matches(auth(ports=[9999]), None) == ""  # an XBackend target: not certain, not reported
    assert never_matches(None, {8443}) == ""
