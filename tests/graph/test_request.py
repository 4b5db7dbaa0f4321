"""What MATCH_BASE_PROTOCOL_METHODS admits, as `explain` and the RBAC translation share it (graph/request.py)."""

from __future__ import annotations

import pytest

from controlplane.api.agentic import Authorization
from controlplane.graph.request import CLIENT_RESPONSE, Request
from controlplane.graph.rules import permission_matches


def _request(**kwargs) -> Request:
    return Request.build(source="spiffe://cluster.local/ns/a/sa/b", port=10443, path="/mcp", **kwargs)


def _inline(option: str, methods: list | None = None) -> Authorization:
    mcp = {"mcpBaseProtocolMethodsOption": option, **({"methods": methods} if methods else {})}
    return Authorization.model_validate({"type": "Inline", "mcp": mcp})


@pytest.mark.parametrize("name", ["response", CLIENT_RESPONSE])
def test_the_response_and_its_envoy_name_are_the_same_request(name):
    request = _request(mcp_method=name)
    assert request.mcp_method == CLIENT_RESPONSE and request.http_method == "POST"
    assert request.is_base_protocol()


def test_a_response_carrying_a_tool_name_is_not_an_answer():
    """Envoy names `{"result":{}, "method":"tools/call", "params":{"name":"echo"}}` a response, with the
    tool; the server runs the tool. Only a response without a request inside is base protocol."""
    assert not _request(mcp_method=CLIENT_RESPONSE, tool="echo").is_base_protocol()


@pytest.mark.parametrize("method", ["tools/call", "resources/list", "tasks/list", "__jsonrpc_responsex",
                                    "_jsonrpc_response", "Response"])
def test_other_methods_are_not_responses(method):
    assert not _request(mcp_method=method).is_base_protocol()


def test_match_base_protocol_admits_a_response_and_skip_does_not():
    response = _request(mcp_method="response")
    assert permission_matches(_inline("MATCH_BASE_PROTOCOL_METHODS"), response)
    assert not permission_matches(_inline("SKIP_BASE_PROTOCOL_METHODS", [{"name": "tools/call"}]), response)
    assert not permission_matches(_inline("MATCH_BASE_PROTOCOL_METHODS", [{"name": "tools/call", "params": ["get-sum"]}]),
                                  _request(mcp_method=CLIENT_RESPONSE, tool="echo"))
