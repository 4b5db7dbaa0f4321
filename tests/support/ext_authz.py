"""A real Envoy external authorizer (gRPC ``envoy.service.auth.v3.Authorization/Check``) for tests.

Why: upstream's ExternalAuth tests run Authorino with an AuthConfig that reads the MCP request from
the check request's metadata context (``filter_metadata.<mcp namespace>.method`` and ``params.name``)
and allows ``initialize`` plus ``tools/call`` of a few tools. Authorino needs a cluster; this is the
same contract in a few lines, served by grpc.aio, so the gateway's ext_authz filter is exercised for
real (real gRPC, real Envoy, real check requests) and a test can also read back what Envoy sent.

    async with serve_ext_authz(allowed_tools={"get-sum", "get-env"}, port=0) as authz:
        ...  # point an ExternalAuth policy at 127.0.0.1:authz.port; authz.checks lists what Envoy asked

The answer is a ``CheckResponse``: status code 0 (OK) to allow, 7 (PERMISSION_DENIED) with a
``denied_response`` of HTTP 403 to deny, which the gateway turns into its JSON-RPC denial.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MCP_NAMESPACE", "AuthzCheck", "ExtAuthzServer", "serve_ext_authz"]

CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"
MCP_NAMESPACE = "envoy.filters.http.mcp"  # where Envoy 1.40's MCP filter writes the parsed request
OK, PERMISSION_DENIED = 0, 7


@dataclass(frozen=True)
class AuthzCheck:
    """One check request as the authorizer saw it, and what it answered."""

    principal: str  # the caller's peer certificate URI SAN (attributes.source.principal)
    mcp: dict[str, Any]  # filter_metadata[MCP_NAMESPACE] as plain JSON
    http_method: str
    path: str
    body: str
    allowed: bool

    @property
    def method(self) -> str | None:
        return self.mcp.get("method")

    @property
    def tool(self) -> str | None:
        return (self.mcp.get("params") or {}).get("name")


@dataclass
class ExtAuthzServer:
    """The allow-list (upstream's conformance AuthConfig) and the checks seen so far."""

    allowed_tools: frozenset[str]
    allowed_methods: frozenset[str] = frozenset({"initialize"})
    port: int = 0
    checks: list[AuthzCheck] = field(default_factory=list)

    def decide(self, mcp: dict[str, Any]) -> bool:
        method = mcp.get("method")
        if method in self.allowed_methods:
            return True
        return method == "tools/call" and (mcp.get("params") or {}).get("name") in self.allowed_tools

    async def check(self, request, context) -> bytes:
        """The Check RPC: decide from the MCP metadata, record, answer."""
        attributes = request.attributes
        metadata = attributes.metadata_context.filter_metadata if attributes.metadata_context else {}
        mcp = metadata[MCP_NAMESPACE].to_dict() if MCP_NAMESPACE in metadata else {}
        http = attributes.request.http
        allowed = self.decide(mcp)
        self.checks.append(AuthzCheck(principal=attributes.source.principal, mcp=mcp, http_method=http.method,
                                      path=http.path, body=http.body, allowed=allowed))
        return bytes(_response(allowed))


def _response(allowed: bool):
    from envoy_data_plane.envoy.service.auth.v3 import CheckResponse, DeniedHttpResponse
    from envoy_data_plane.envoy.type.v3 import HttpStatus, StatusCode
    from envoy_data_plane.google.rpc import Status

    if allowed:
        return CheckResponse(status=Status(code=OK))
    return CheckResponse(status=Status(code=PERMISSION_DENIED, message="tool not allowed by the authorizer"),
                         denied_response=DeniedHttpResponse(status=HttpStatus(code=StatusCode.Forbidden)))


@asynccontextmanager
async def serve_ext_authz(*, allowed_tools: Iterable[str], allowed_methods: Iterable[str] = ("initialize",),
                          host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[ExtAuthzServer]:
    """Serve the authorizer on the running loop (plaintext gRPC, HTTP/2) until the block exits."""
    import grpc
    from envoy_data_plane.envoy.service.auth.v3 import CheckRequest

    authz = ExtAuthzServer(allowed_tools=frozenset(allowed_tools), allowed_methods=frozenset(allowed_methods))
    handler = grpc.unary_unary_rpc_method_handler(authz.check, request_deserializer=CheckRequest.parse,
                                                  response_serializer=bytes)
    service, method = CHECK_METHOD.strip("/").split("/")
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method: handler}),))
    authz.port = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    try:
        yield authz
    finally:
        await server.stop(grace=1)
