"""GuardrailPolicy -> Envoy's ext_proc: MCP request and response bodies sent to a guardrail service.

How Envoy is asked: every enforcing chain carries one ext_proc filter per level
(`ext_proc.guardrail_gateway`, `ext_proc.guardrail_backend`), after the RBAC and rate limit filters (a
refused call is never inspected) and before the router. The listener's filter is a fixed placeholder,
disabled (`HttpFilter.disabled`) and pointing at a cluster that does not exist, so that attaching,
changing or removing a guardrail is a route update and never drains a listener. A Gateway's guardrail
arrives in each virtual host's `typed_per_filter_config`, an XBackend's in each weighted cluster's, as an
`ExtProcPerRoute` whose presence enables the filter and whose `overrides` name the real service, its
timeout, the processing mode and the failure mode.

What the service is sent: request headers, then the whole request body (BUFFERED: a guardrail judging
half a JSON-RPC message could be fooled), then, when responses are inspected, response headers and the
whole response body. The service learns the policy from the stream's gRPC metadata:
`x-agentic-guardrail-policy` (namespace/name), `x-agentic-guardrail-inspect` (`requests`, `responses` or
both, comma-separated) and `x-agentic-guardrail-methods` (the MCP methods to judge, comma-separated,
`*` for every one). `allowModeOverride` lets it skip the bodies of a request it does not judge (a GET's
event stream must never be buffered).

Failure: closed by default (`failureModeAllow: false`): an unreachable, slow (past the policy's
timeout) or broken guardrail refuses the call with a local 500, which features/jsonrpc_denial.py answers
as a JSON-RPC error marked `x-agentic-decision: blocked`. `failureMode: Open` lets such calls pass
unchecked. A block decided by the guardrail itself is its own `ImmediateResponse` (see
controlplane/guardrail/).
"""

from __future__ import annotations

from controlplane.graph.view import BackendRefView, ListenerView, ResolvedGuardrail
from controlplane.translate import clusters
from controlplane.translate.context import BACKEND, GATEWAY, PortContext, ProxyContext
from controlplane.translate.features.base import Feature
from controlplane.xds.resources import CLUSTER, Resource

EXT_PROC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
EXT_PROC_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
GUARDRAIL_UNSET_CLUSTER = "guardrail-unset"  # never defined: the placeholder is disabled unless a route enables it
MESSAGE_TIMEOUT = "10s"  # per message, fixed on the listener: the api's MAX_GUARDRAIL_TIMEOUT_MS
POLICY_HEADER = "x-agentic-guardrail-policy"
INSPECT_HEADER = "x-agentic-guardrail-inspect"
METHODS_HEADER = "x-agentic-guardrail-methods"


def guardrail_filter(level: str) -> str:
    return f"envoy.filters.http.ext_proc.guardrail_{level}"


class Guardrail(Feature):
    """The guardrail of each level, per virtual host (Gateway) and per weighted cluster (XBackend)."""

    name = "guardrail"

    def http_filters(self, port: PortContext) -> list[dict]:
        if not port.proxy.enforces_policy:
            return []
        return [{"name": guardrail_filter(level), "disabled": True, "typedConfig": _placeholder(level)}
                for level in (GATEWAY, BACKEND)]

    def virtual_host_config(self, proxy: ProxyContext, listener: ListenerView) -> dict:
        return level_config(listener.guardrail, GATEWAY) if proxy.enforces_policy else {}

    def weighted_cluster_config(self, proxy: ProxyContext, backend: BackendRefView) -> dict:
        return level_config(backend.backend.guardrail, BACKEND) if proxy.enforces_policy else {}

    def resources(self, proxy: ProxyContext) -> list[Resource]:
        """A cluster per guardrail service the Gateway's and its backends' policies name."""
        if not proxy.enforces_policy:
            return []
        found = {}
        for listener in proxy.gateway.listeners:
            guardrails = [listener.guardrail] + [ref.backend.guardrail for attachment in listener.routes
                                                 for ref in attachment.rule.backends]
            found.update((g.cluster, g) for g in guardrails if g is not None)
        return [resource for _, g in sorted(found.items()) for resource in guardrail_cluster(g)]


def _placeholder(level: str) -> dict:
    """The listener's ext_proc filter: fails closed, asks for everything a guardrail may judge."""
    return {"@type": EXT_PROC_TYPE, "grpcService": {"envoyGrpc": {"clusterName": GUARDRAIL_UNSET_CLUSTER}},
            "failureModeAllow": False, "processingMode": processing_mode(responses=True),
            "messageTimeout": MESSAGE_TIMEOUT, "allowModeOverride": True, "statPrefix": f"{level}_guardrail"}


def processing_mode(*, responses: bool) -> dict:
    """Headers and whole bodies of the request, and of the response when responses are judged.

    The request body is sent even when only responses are judged: it carries the JSON-RPC id the
    block answers with, and the method that says whether the response is judged at all."""
    return {"requestHeaderMode": "SEND", "requestBodyMode": "BUFFERED", "requestTrailerMode": "SKIP",
            "responseHeaderMode": "SEND" if responses else "SKIP",
            "responseBodyMode": "BUFFERED" if responses else "NONE", "responseTrailerMode": "SKIP"}


def level_config(guardrail: ResolvedGuardrail | None, level: str) -> dict:
    """The level's ExtProcPerRoute: enables the placeholder and points it at the policy's service."""
    if guardrail is None:
        return {}
    inspect = ",".join(side for side, on in (("requests", guardrail.requests), ("responses", guardrail.responses))
                       if on)
    metadata = [{"key": POLICY_HEADER, "value": guardrail.ref}, {"key": INSPECT_HEADER, "value": inspect},
                {"key": METHODS_HEADER, "value": ",".join(guardrail.methods)}]
    service = {"envoyGrpc": {"clusterName": guardrail.cluster, "authority": guardrail.authority},
               "timeout": f"{guardrail.timeout_ms / 1000:g}s"}
    overrides = {"processingMode": processing_mode(responses=guardrail.responses), "grpcService": service,
                 "grpcInitialMetadata": metadata, "failureModeAllow": guardrail.fail_open}
    return {guardrail_filter(level): {"@type": EXT_PROC_PER_ROUTE_TYPE, "overrides": overrides}}


def guardrail_cluster(guardrail: ResolvedGuardrail) -> list[Resource]:
    """HTTP/2 (gRPC) to the service: EDS for a Service (no ready endpoint: fail closed), DNS for an address."""
    if guardrail.address is None:
        return clusters.eds(guardrail.cluster, guardrail.endpoints, http2=True)
    host, port = guardrail.address
    cluster = clusters.eds_cluster(guardrail.cluster, http2=True)
    del cluster["edsClusterConfig"]
    endpoint = {"endpoint": {"address": {"socketAddress": {"address": host, "portValue": port}}}}
    cluster.update({"type": "STRICT_DNS", "dnsLookupFamily": "V4_PREFERRED",
                    "loadAssignment": {"clusterName": guardrail.cluster, "endpoints": [{"lbEndpoints": [endpoint]}]}})
    return [Resource(CLUSTER, guardrail.cluster, cluster)]
