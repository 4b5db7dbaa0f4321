"""OpenTelemetry, when serve is given a collector: a span per request and the audit record as an OTLP log.

Off by default. With `serve --otel-collector HOST:PORT`, every proxy that enforces policy (gateway,
sidecar inbound, egress) also
- traces each request with Envoy's OpenTelemetry tracer (`envoy.tracers.opentelemetry`, the connection
  manager's `tracing`), its service name the proxy's node id, its tags the attributes below;
- sends the audit record through Envoy's OpenTelemetry access logger (`envoy.access_loggers.open_telemetry`),
  a logger beside the stdout and gRPC ones of features/access_log.py, with the same facts.

Both speak OTLP over gRPC to the cluster `otel-collector` (HTTP/2, plaintext), added to the proxy's CDS.
The attribute names are the OpenTelemetry semantic conventions' where they exist (the MCP conventions of
open-telemetry/semantic-conventions-genai: `mcp.method.name`, `gen_ai.tool.name`, `mcp.resource.uri`,
`mcp.session.id`, `jsonrpc.request.id`; HTTP's `http.request.method`, `http.response.status_code`,
`url.path`) and this project's `agentic.*` for the rest (who decided what). Tracing sits in the connection
manager, so turning it on or off updates the Listeners once (they drain); no policy ever changes it.
"""

from __future__ import annotations

from controlplane.translate.context import BACKEND, GATEWAY, OtelCollector, PortContext, ProxyContext
from controlplane.translate.features.access_log import RBAC_METADATA, SESSION_HEADER, node_id
from controlplane.translate.features.base import Feature
from controlplane.translate.features.ext_authz import delegated_key
from controlplane.translate.features.jsonrpc_denial import DECISION_HEADER
from controlplane.translate.features.local_rate_limit import LIMIT_HEADER
from controlplane.translate.features.mcp import MCP_FILTER
from controlplane.xds.resources import CLUSTER, Resource

OTEL_CLUSTER = "otel-collector"
TRACER_TYPE = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"
OTEL_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _mcp(key: str) -> str:
    return f"%DYNAMIC_METADATA({MCP_FILTER}:{key})%"


def _rbac(key: str) -> str:
    return f"%DYNAMIC_METADATA({RBAC_METADATA}:{key})%"


# One table for the span's tags and the log record's attributes: name -> Envoy substitution format.
ATTRIBUTES = {
    "mcp.method.name": _mcp("method"),
    "gen_ai.tool.name": _mcp("params:name"),
    "mcp.resource.uri": _mcp("params:uri"),
    "jsonrpc.request.id": _mcp("id"),
    "mcp.session.id": f"%REQ({SESSION_HEADER.upper()})%",
    "http.request.method": "%REQ(:METHOD)%",
    "url.path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "http.response.status_code": "%RESPONSE_CODE%",
    "agentic.caller": "%DOWNSTREAM_PEER_URI_SAN%",  # the caller's SPIFFE ID (no convention names it)
    "agentic.decision": f"%RESP({DECISION_HEADER})%",  # denied, limited, blocked; absent: allowed
    "agentic.gateway.rule": _rbac("gateway_shadow_effective_policy_id"),
    "agentic.backend.rule": _rbac("backend_shadow_effective_policy_id"),
    "agentic.gateway.result": _rbac("gateway_shadow_engine_result"),
    "agentic.backend.result": _rbac("backend_shadow_engine_result"),
    "agentic.gateway.extauth_rule": _rbac(delegated_key(GATEWAY)),
    "agentic.backend.extauth_rule": _rbac(delegated_key(BACKEND)),
    "agentic.limit": f"%RESP({LIMIT_HEADER})%",
    "agentic.mcp.partial": _mcp("is_exceeding_limit"),
    "agentic.response.details": "%RESPONSE_CODE_DETAILS%",
    "agentic.response.flags": "%RESPONSE_FLAGS%",
    "agentic.route": "%ROUTE_NAME%",
    "agentic.upstream": "%UPSTREAM_CLUSTER%",
    "agentic.duration_ms": "%DURATION%",
    "agentic.request_id": "%REQ(X-REQUEST-ID)%",
}


def applies(proxy: ProxyContext) -> bool:
    return proxy.otel_collector is not None and proxy.enforces_policy


def _grpc_service() -> dict:
    return {"envoyGrpc": {"clusterName": OTEL_CLUSTER}, "timeout": "1s"}


def tracing(proxy: ProxyContext) -> dict:
    """The connection manager's `tracing`: every request sampled, tagged with the MCP and decision facts."""
    provider = {"@type": TRACER_TYPE, "grpcService": _grpc_service(), "serviceName": node_id(proxy)}
    tags = [{"tag": name, "value": value} for name, value in ATTRIBUTES.items()]
    return {"provider": {"name": "envoy.tracers.opentelemetry", "typedConfig": provider},
            "randomSampling": {"value": 100}, "customTags": tags}


def otel_access_log(proxy: ProxyContext) -> dict:
    """The audit record as an OTLP log record: body `<mcp method> <tool>`, the attributes above."""
    resource = {"values": [_string("service.name", node_id(proxy)), _string("agentic.role", proxy.role)]}
    config = {"@type": OTEL_LOG_TYPE, "grpcService": _grpc_service(), "logName": proxy.role,
              "statPrefix": proxy.stat_name, "bufferFlushInterval": "1s", "resourceAttributes": resource,
              "body": {"stringValue": f"{_mcp('method')} {_mcp('params:name')}"},
              "attributes": {"values": [_string(name, value) for name, value in ATTRIBUTES.items()]}}
    return {"name": "envoy.access_loggers.open_telemetry", "typedConfig": config}


def _string(key: str, value: str) -> dict:
    return {"key": key, "value": {"stringValue": value}}


def collector_cluster(collector: OtelCollector) -> dict:
    """The collector over HTTP/2 (OTLP/gRPC): STATIC for an IP, STRICT_DNS for a name (every address)."""
    endpoint = {"endpoint": {"address": {"socketAddress": {"address": collector.host, "portValue": collector.port}}}}
    http2 = {"@type": f"type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}", "explicitHttpConfig": {"http2ProtocolOptions": {}}}
    return {"name": OTEL_CLUSTER, "type": "STATIC" if collector.is_ip else "STRICT_DNS", "connectTimeout": "5s",
            "lbPolicy": "ROUND_ROBIN", "typedExtensionProtocolOptions": {HTTP_PROTOCOL_OPTIONS: http2},
            "loadAssignment": {"clusterName": OTEL_CLUSTER, "endpoints": [{"lbEndpoints": [endpoint]}]}}


class OpenTelemetry(Feature):
    name = "otel"

    def hcm_patch(self, port: PortContext) -> dict:
        if not applies(port.proxy):
            return {}
        return {"tracing": tracing(port.proxy), "accessLog": [otel_access_log(port.proxy)]}

    def resources(self, proxy: ProxyContext) -> list[Resource]:
        if not applies(proxy):
            return []
        return [Resource(CLUSTER, OTEL_CLUSTER, collector_cluster(proxy.otel_collector))]
