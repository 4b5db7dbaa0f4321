"""The MCP filter, configured fail closed: Envoy must decide on the same JSON-RPC message the server runs.

Envoy's MCP filter parses a request body into the dynamic metadata that RBAC decides on; the MCP server
parses the body again and runs what it reads. With the filter's defaults the two readings can differ,
and that difference was a tool-authorization bypass (seen through Envoy 1.40 and the test server):

- only the first 8 KiB are parsed and the rest passes unchecked, so an allowed tool name, padding, then a
  second `"name"` (or `"method"`) key made RBAC judge the first while the server (last duplicate wins)
  ran the second;
- non-MCP traffic is proxied unchecked (`PASS_THROUGH`).

So the listener's filter (fixed, never per policy) rejects duplicate keys at any depth, parses bodies up
to `MAX_REQUEST_BODY_BYTES` whole, and answers 400 to anything that is not MCP (`REJECT_NO_MCP`: a POST
whose root JSON object does not fit the limit, or is not JSON-RPC, a GET without
`Accept: text/event-stream`, a DELETE without `Mcp-Session-Id`). A route that reaches no XBackend (only
Gateway API Service backends, which may be ordinary HTTP services) gets `PASS_THROUGH` back per route
(`McpOverride`), with the same limit; there, a body the filter could only partly parse carries
`is_exceeding_limit`, and every RBAC level with an Allow policy denies it (features/rbac.py).

Client responses (a client's answer to the server's sampling/elicitation request, `{"id":N,"result":...}`)
get the method `__jsonrpc_response`. So does a body with `result` (or `error`) *and* a `method`, which
the MCP server runs as that method (seen with `"result":{}` before or after `"method":"tools/call"`: the
tool ran). The filter keeps no trace of the method it overwrote except the method's group, so the filter
writes groups (`GROUP_KEY`): a body without a method (or with one the filter does not know) is in the
built-in group `unknown`, one with `tools/call` in `tool`, and so on. Every spec method the filter does not
classify gets a group here (`EXTRA_GROUPS`), and so does a request whose method is literally
`__jsonrpc_response`: only a body with no method the server could run stays `unknown`, and that is the
only response an Allow policy admits (features/rbac.py).

The limit, 1 MiB: tool calls carry arguments (documents, code, prompts), often well past 8 KiB, rarely
past a few hundred KiB; Envoy buffers up to the limit per request in flight, so it must stay bounded
(Envoy's own maximum is 10 MiB). A bigger call is refused with 400, never half-checked.
"""

from __future__ import annotations

from controlplane.graph.view import RouteRuleView
from controlplane.translate.context import PortContext, ProxyContext
from controlplane.translate.features.base import Feature

MCP_FILTER = "envoy.filters.http.mcp"
MCP_TYPE = "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"
MCP_OVERRIDE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.McpOverride"
MAX_REQUEST_BODY_BYTES = 1024 * 1024
EXCEEDING_LIMIT_KEY = "is_exceeding_limit"  # the filter's marker for a body it parsed only in part
GROUP_KEY = "group"  # the filter's classification of the body's own `method`, even where it says `__jsonrpc_response`
NO_METHOD_GROUP = "unknown"  # the filter's built-in group of a body without a method it knows
# MCP 2025-11-25 methods Envoy 1.40's built-in groups leave `unknown`, and the forged response name.
EXTRA_GROUPS = {"tasks/get": "task", "tasks/result": "task", "tasks/list": "task", "tasks/cancel": "task",
                "elicitation/create": "elicitation", "roots/list": "roots",
                "__jsonrpc_response": "forged_response"}


def mcp_filter_config() -> dict:
    """The listener's MCP filter: only whole, unambiguous MCP requests pass."""
    return {"@type": MCP_TYPE, "trafficMode": "REJECT_NO_MCP", "rejectDuplicateKeys": True,
            "maxRequestBodySize": MAX_REQUEST_BODY_BYTES, "parserConfig": parser_config()}


def parser_config() -> dict:
    """Groups, so RBAC can tell a bare client response from a request that also carries `result`."""
    methods = [{"method": method, "group": group} for method, group in EXTRA_GROUPS.items()]
    return {"groupMetadataKey": GROUP_KEY, "methods": methods}


def pass_through_override() -> dict:
    """Per-route override for a route that reaches no MCP backend: non-MCP traffic is proxied."""
    return {"@type": MCP_OVERRIDE_TYPE, "trafficMode": "PASS_THROUGH",
            "maxRequestBodySize": MAX_REQUEST_BODY_BYTES}


class Mcp(Feature):
    """The MCP filter first in every chain; PASS_THROUGH back on routes that reach no MCP server."""

    name = "mcp"

    def http_filters(self, port: PortContext) -> list[dict]:
        if not port.proxy.enforces_policy:
            return []
        return [{"name": MCP_FILTER, "typedConfig": mcp_filter_config()}]

    def route_config(self, proxy: ProxyContext, rule: RouteRuleView) -> dict:
        if any(ref.backend.is_mcp for ref in rule.backends):
            return {}
        return {MCP_FILTER: pass_through_override()}  # redirects and Service backends: not necessarily MCP
