"""A request as the authorization graph sees it: who sends it, where to, and what MCP call it carries."""

from __future__ import annotations

from dataclasses import dataclass, field

BASE_EXACT_METHODS = ("initialize", "tools/list", "ping")
BASE_PREFIX_METHODS = ("completion/", "logging/", "notifications/")
# A client's JSON-RPC response (its answer to the server's sampling/createMessage, elicitation/create or
# roots/list): no `method`, so Envoy's MCP filter names it this. MATCH_BASE_PROTOCOL_METHODS admits it,
# but only a response that carries no request inside it: a body with `result` *and* a method is also
# named `__jsonrpc_response` by the filter while the MCP server runs the method (features/rbac.py).
CLIENT_RESPONSE = "__jsonrpc_response"
CLIENT_RESPONSE_ALIASES = ("response", CLIENT_RESPONSE)  # what `explain --mcp-method` accepts for it


@dataclass(frozen=True)
class Request:
    source: str | None  # the caller's SPIFFE ID; None for a caller without a client certificate
    port: int
    path: str
    http_method: str = "POST"
    host: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    mcp_method: str | None = None
    tool: str | None = None  # params.name of the JSON-RPC request

    @property
    def header_map(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def is_base_protocol(self) -> bool:
        """What MATCH_BASE_PROTOCOL_METHODS lets through (upstream #279)."""
        if self.mcp_method == CLIENT_RESPONSE:
            return self.tool is None  # a tool name means the body carried a request: not an answer
        if self.mcp_method is not None:
            return self.mcp_method in BASE_EXACT_METHODS or self.mcp_method.startswith(BASE_PREFIX_METHODS)
        if self.http_method == "GET":
            return True
        return self.http_method == "DELETE" and "mcp-session-id" in self.header_map

    @classmethod
    def build(cls, *, source: str | None, port: int, path: str, http_method: str | None = None,
              host: str = "", headers: dict[str, str] | None = None, mcp_method: str | None = None,
              tool: str | None = None) -> Request:
        """Fill the defaults a caller means: a tool implies tools/call; an MCP method implies POST;
        `response` is the client response's name (`__jsonrpc_response`, as the access log shows it)."""
        if mcp_method in CLIENT_RESPONSE_ALIASES:
            mcp_method = CLIENT_RESPONSE
        if tool is not None and mcp_method is None:
            mcp_method = "tools/call"
        if http_method is None:
            http_method = "POST" if mcp_method is not None else "GET"
        return cls(source=source, port=port, path=path, http_method=http_method.upper(), host=host,
                   headers=dict(headers or {}), mcp_method=mcp_method, tool=tool)
