"""Gateway ports -> Envoy listeners (proto3 JSON). A listener carries no policy at all.

Every HTTP connection manager has the same fixed filter chain, so that no policy change ever touches
a Listener (which would drain it and cut long MCP streams):

1. `envoy.filters.http.mcp` parses JSON-RPC into dynamic metadata, fail closed (translate/mcp.py): what it
   cannot parse whole and unambiguously never reaches an MCP backend;
2. `rbac.gateway_extauth`, `rbac.backend_extauth`: empty RBAC (allow all); an ExternalAuth policy's
   rules arrive per virtual host / weighted cluster as shadow rules that mark the request delegated;
3. `ext_authz.gateway`, `ext_authz.backend`: enabled only for a request so marked (filter_enabled_metadata),
   fail closed, with a placeholder service that the route configuration replaces by the policy's
   authorizer; the authorizer receives the MCP metadata (method, params.name) and the peer certificate;
4. `rbac.gateway`, `rbac.backend`: empty RBAC, overridden per virtual host / weighted cluster by the
   Allow policies;
5. the router.

ExternalAuth runs before the Allow policies (upstream's evaluation order); each filter that denies
ends the request, so a request passes only if every level's authorizer and Allow policies allow it. A denial is answered as upstream answers it, for MCP SDK compatibility: HTTP 200 with a
JSON-RPC error carrying the request's id. HTTPS listeners are mTLS: the client certificate is required
and validated against the mesh trust bundle, both delivered over SDS.
"""

from __future__ import annotations

from controlplane.identity.sds import SERVER_CERT_SECRET, TRUST_BUNDLE_SECRET
from controlplane.translate.mcp import MCP_FILTER, mcp_filter_config
from controlplane.translate.rbac import MCP_METADATA, RBAC_TYPE
from controlplane.translate.routes import BACKEND, GATEWAY, Level, route_config_name

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
EXT_AUTHZ_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
EXT_AUTHZ_UNSET_CLUSTER = "ext-authz-unset"  # never defined: reached only if a route forgot its override
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
    "mcp_partial": "%DYNAMIC_METADATA(envoy.filters.http.mcp:is_exceeding_limit)%",  # parsed in part only
    "status": "%RESPONSE_CODE%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "flags": "%RESPONSE_FLAGS%",  # e.g. UAEX: the external authorizer denied; UF: the backend was unreachable
    "gateway_rule": "%DYNAMIC_METADATA(envoy.filters.http.rbac:gateway_shadow_effective_policy_id)%",
    "backend_rule": "%DYNAMIC_METADATA(envoy.filters.http.rbac:backend_shadow_effective_policy_id)%",
    "gateway_extauth_rule": f"%DYNAMIC_METADATA(envoy.filters.http.rbac:{GATEWAY.delegated_key})%",
    "backend_extauth_rule": f"%DYNAMIC_METADATA(envoy.filters.http.rbac:{BACKEND.delegated_key})%",
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
            {"name": MCP_FILTER, "typedConfig": mcp_filter_config()},
            {"name": GATEWAY.extauth_rbac_filter, "typedConfig": {"@type": RBAC_TYPE}},
            {"name": BACKEND.extauth_rbac_filter, "typedConfig": {"@type": RBAC_TYPE}},
            {"name": GATEWAY.ext_authz_filter, "typedConfig": _ext_authz(GATEWAY)},
            {"name": BACKEND.ext_authz_filter, "typedConfig": _ext_authz(BACKEND)},
            {"name": GATEWAY.rbac_filter, "typedConfig": {"@type": RBAC_TYPE}},
            {"name": BACKEND.rbac_filter, "typedConfig": {"@type": RBAC_TYPE}},
            {"name": "envoy.filters.http.router", "typedConfig": {"@type": ROUTER_TYPE}},
        ],
        "localReplyConfig": {"mappers": [_jsonrpc_denial()]},
        "forwardClientCertDetails": "SANITIZE_SET",
        "setCurrentClientCertDetails": {"uri": True},
        "useRemoteAddress": True,
        "stripAnyHostPort": True,  # hosts match (routes and RBAC) without the port, and without regexes
        "accessLog": [{"name": "envoy.access_loggers.stdout",
                       "typedConfig": {"@type": STDOUT_LOG_TYPE,
                                       "logFormat": {"jsonFormat": ACCESS_LOG_FORMAT}}}],
    }


def _ext_authz(level: Level) -> dict:
    """A level's ext_authz filter: off unless the level's `*_extauth` shadow rules delegated the request.

    Its service is a placeholder (Envoy 1.40 accepts a cluster that does not exist and only resolves it
    per request); the per-route `check_settings` names the real authorizer. A failed or unreachable
    authorizer denies (403, answered as the JSON-RPC denial)."""
    return {
        "@type": EXT_AUTHZ_TYPE,
        "grpcService": {"envoyGrpc": {"clusterName": EXT_AUTHZ_UNSET_CLUSTER}},
        "transportApiVersion": "V3",
        "failureModeAllow": False,
        "metadataContextNamespaces": [MCP_METADATA],
        "includePeerCertificate": True,
        "statPrefix": level.name,
        "filterEnabledMetadata": {"filter": "envoy.filters.http.rbac", "path": [{"key": level.delegated_key}],
                                  "value": {"presentMatch": True}},
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
