"""Which tools may this caller call through this hop: the authorization graph's own answer, per tool.

A hop is what the proxy's route says it is (`Hop.parse` of the ext_proc stream's `x-agentic-hop`
metadata): a Gateway and the port the request came in on, or a tool's sidecar and the XBackend it
fronts. The decision for one tool is exactly `agentic-cp explain`'s for `tools/call <tool>` with the
same caller, port, path and host: through a Gateway, route selection, the Gateway level, then the
XBackend level (both must allow); at a sidecar, the XBackend level (`explain --backend`). A tool whose call would be
handed to an ExternalAuth authorizer is listed (the authorizer decides the call, which explain cannot
predict offline); a tool the graph denies is not. The graph is the live one, so a policy edit changes
the next list at once, with no xDS push at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.base import ResourceKey
from controlplane.graph.explain import ALLOW, explain_backend, explain_gateway
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.request import Request
from controlplane.logs import clip

HOP_HEADER = "x-agentic-hop"  # gRPC initial metadata of the ext_proc stream, set per virtual host
GATEWAY_HOP, SIDECAR_HOP = "gateway", "sidecar"


class BadHop(ValueError):
    """The hop metadata is missing or malformed: nothing can be decided, so the list is refused."""


@dataclass(frozen=True)
class Hop:
    """`gateway/<ns>/<name>/<port>` or `sidecar/<ns>/<serviceaccount>/<xbackend-ns>/<xbackend>`."""

    kind: str  # "gateway" or "sidecar"
    namespace: str  # the Gateway's, or the sidecar's workload's
    name: str  # the Gateway, or the workload's ServiceAccount
    port: int = 0  # a gateway's listener port
    backend: ResourceKey | None = None  # a sidecar's XBackend

    def encode(self) -> str:
        tail = f"{self.backend.namespace}/{self.backend.name}" if self.backend else str(self.port)
        return f"{self.kind}/{self.namespace}/{self.name}/{tail}"

    @classmethod
    def parse(cls, text: str | None) -> Hop:
        parts = (text or "").split("/")
        if not all(parts) or len(text or "") > 512:
            raise BadHop(f"{HOP_HEADER} {clip(text)!r} has an empty part or is too long")
        if len(parts) == 4 and parts[0] == GATEWAY_HOP and parts[3].isdigit() and 0 < int(parts[3]) < 65536:
            return cls(GATEWAY_HOP, parts[1], parts[2], port=int(parts[3]))
        if len(parts) == 5 and parts[0] == SIDECAR_HOP:
            return cls(SIDECAR_HOP, parts[1], parts[2], backend=ResourceKey("XBackend", parts[3], parts[4]))
        raise BadHop(f"{HOP_HEADER} {clip(text)!r} is neither gateway/<ns>/<name>/<port> nor "
                     "sidecar/<ns>/<serviceaccount>/<xbackend-ns>/<xbackend>")

    @property
    def gateway(self) -> ResourceKey:
        return ResourceKey("Gateway", self.namespace, self.name)


def tool_predicate(graph: AuthorizationGraph, hop: Hop, *, caller: str | None, path: str, host: str):
    """`may_call(tool) -> bool` for one response; each distinct tool is decided once."""
    decided: dict[str, bool] = {}

    def may_call(tool: str) -> bool:
        if tool not in decided:
            request = Request.build(source=caller, port=hop.port, path=path or "/", host=host, tool=tool)
            if hop.kind == GATEWAY_HOP:
                decision = explain_gateway(graph, hop.gateway, request)
            else:
                decision = explain_backend(graph, hop.backend, request)
            decided[tool] = decision.decision == ALLOW
        return decided[tool]

    return may_call
