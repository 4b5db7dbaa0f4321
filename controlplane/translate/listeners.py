"""Gateway ports -> Envoy listeners (proto3 JSON). A listener carries no policy at all.

Every HTTP connection manager has the same fixed filter chain: the MCP filter (parses JSON-RPC into
dynamic metadata), a gateway-level and a backend-level RBAC filter whose own config is empty (allow
all) and which route configuration overrides per virtual host and per weighted cluster, then the
router. A denial is answered as upstream answers it, for MCP SDK compatibility: HTTP 200 with a
JSON-RPC error carrying the request's id. HTTPS listeners are mTLS: the client certificate is required
and validated against the mesh trust bundle, both delivered over SDS.
"""

from __future__ import annotations

from controlplane.identity.sds import SERVER_CERT_SECRET, TRUST_BUNDLE_SECRET
from controlplane.translate.routes import BACKEND_RBAC_FILTER, GATEWAY_RBAC_FILTER, route_config_name
from controlplane.translate.rbac import RBAC_TYPE

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
MCP_TYPE = "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
DOWNSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
STDOUT_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
ADS = {"ads": {}, "resourceApiVersion": "V3"}
DENIED_MESSAGE = "Access to this tool is forbidden."

ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "caller": "%DOWNSTREAM_PEER_URI_SAN%",
    "http_method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "mcp_method": "%DYNAMIC_METADATA(envoy.filters.http.mcp:method)%",
    "tool": "%DYNAMIC_METADATA(envoy.filters.http.mcp:params:name)%",
    "status": "%RESPONSE_CODE%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "gateway_rule": "%DYNAMIC_METADATA(envoy.filters.http.rbac:gateway_shadow_effective_policy_id)%",
    "backend_rule": "%DYNAMIC_METADATA(envoy.filters.http.rbac:backend_shadow_effective_policy_id)%",
    "upstream": "%UPSTREAM_CLUSTER%",
}


def listener_name(port: int) -> str:
    return f"listener-{port}"


def listener(*, port: int, tls: bool, stat_prefix: str) -> dict:
    chain: dict = {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                "typedConfig": http_connection_manager(port=port, stat_prefix=stat_prefix)}]}
    if tls:
        chain["transportSocket"] = {"name": "envoy.transport_sockets.tls", "typedConfig": _downstream_tls()}
    return {"name": listener_name(port),
            "address": {"socketAddress": {"address": "0.0.0.0", "portValue": port}},
            "filterChains": [chain]}


def http_connection_manager(*, port: int, stat_prefix: str) -> dict:
    return {
        "@type": HCM_TYPE,
        "statPrefix": stat_prefix,
        "rds": {"routeConfigName": route_config_name(port), "configSource": ADS},
        "httpFilters": [
            {"name": "envoy.filters.http.mcp", "typedConfig": {"@type": MCP_TYPE}},
            {"name": GATEWAY_RBAC_FILTER, "typedConfig": {"@type": RBAC_TYPE}},
            {"name": BACKEND_RBAC_FILTER, "typedConfig": {"@type": RBAC_TYPE}},
            {"name": "envoy.filters.http.router", "typedConfig": {"@type": ROUTER_TYPE}},
        ],
        "localReplyConfig": {"mappers": [_jsonrpc_denial()]},
        "forwardClientCertDetails": "SANITIZE_SET",
        "setCurrentClientCertDetails": {"uri": True},
        "useRemoteAddress": True,
        "accessLog": [{"name": "envoy.access_loggers.stdout",
                       "typedConfig": {"@type": STDOUT_LOG_TYPE,
                                       "logFormat": {"jsonFormat": ACCESS_LOG_FORMAT}}}],
    }


def _jsonrpc_denial() -> dict:
    """A denied JSON-RPC request gets a JSON-RPC error with its own id (a number stays a number).

    Only requests that carry an id are rewritten: a denied GET, DELETE or notification keeps its plain
    403, since answering a notification with a JSON-RPC reply would break the protocol.
    """
    status_403 = {"statusCodeFilter": {"comparison": {
        "op": "EQ", "value": {"defaultValue": 403, "runtimeKey": "agentic.denied_status"}}}}
    has_id = {"metadataFilter": {"matcher": {"filter": "envoy.filters.http.mcp", "path": [{"key": "id"}],
                                             "value": {"presentMatch": True}},
                                 "matchIfKeyNotFound": False}}
    body = {"jsonrpc": "2.0", "id": "%DYNAMIC_METADATA(envoy.filters.http.mcp:id)%",
            "error": {"code": 403, "message": DENIED_MESSAGE}}
    return {"filter": {"andFilter": {"filters": [status_403, has_id]}}, "statusCode": 200,
            "bodyFormatOverride": {"jsonFormat": body}}


def _downstream_tls() -> dict:
    return {
        "@type": DOWNSTREAM_TLS_TYPE,
        "requireClientCertificate": True,
        "commonTlsContext": {
            "tlsCertificateSdsSecretConfigs": [{"name": SERVER_CERT_SECRET, "sdsConfig": ADS}],
            "validationContextSdsSecretConfig": {"name": TRUST_BUNDLE_SECRET, "sdsConfig": ADS},
            "alpnProtocols": ["h2", "http/1.1"],
        },
    }
