"""One access log record per request, twice: a JSON line on stdout, and the gRPC access log stream.

The stdout line: who called which tool, and which rule decided. The rule names come from the RBAC
filters' shadow rules (features/rbac.py, features/ext_authz.py), the MCP fields from the MCP filter's
dynamic metadata (features/mcp.py), the response flags from Envoy (e.g. UAEX: the external authorizer
denied; UF: the backend was unreachable), the decision from the mark every local refusal carries
(features/jsonrpc_denial.py), the limit from the rate limit's mark (features/local_rate_limit.py).

The stream: on every proxy that enforces policy (gateway, sidecar inbound), Envoy's gRPC access logger
(`envoy.access_loggers.http_grpc`) sends each request's entry to the control plane's audit sink over the
bootstrap's `xds_cluster` (the same mTLS as ADS; controlplane/audit/). Its log name is the proxy's role,
its node the proxy's node id. The entry is structured, not formatted: it carries the same facts, and
controlplane/audit/record.py maps it to these fields by these names, so when the sink is down (Envoy
drops what it cannot send) the stdout line still holds the same record, and `agentic-cp audit` reads both.
"""

from __future__ import annotations

from controlplane.identity.xds_auth import node_id_for_egress, node_id_for_gateway, node_id_for_workload
from controlplane.translate.bootstrap import XDS_CLUSTER
from controlplane.translate.context import (
    BACKEND,
    EGRESS,
    GATEWAY,
    SIDECAR_INBOUND,
    SIDECAR_OUTBOUND,
    PortContext,
    ProxyContext,
)
from controlplane.translate.features.base import Feature
from controlplane.translate.features.ext_authz import delegated_key
from controlplane.translate.features.jsonrpc_denial import DECISION_HEADER, GUARDRAIL_HEADER
from controlplane.translate.features.local_rate_limit import LIMIT_HEADER
from controlplane.translate.features.mcp import MCP_FILTER

STDOUT_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
GRPC_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig"
SESSION_HEADER = "mcp-session-id"
RBAC_METADATA = "envoy.filters.http.rbac"


def _rbac(key: str) -> str:
    return f"%DYNAMIC_METADATA({RBAC_METADATA}:{key})%"


ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "caller": "%DOWNSTREAM_PEER_URI_SAN%",
    "http_method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "mcp_method": f"%DYNAMIC_METADATA({MCP_FILTER}:method)%",
    "tool": f"%DYNAMIC_METADATA({MCP_FILTER}:params:name)%",
    "resource": f"%DYNAMIC_METADATA({MCP_FILTER}:params:uri)%",  # resources/read, resources/subscribe
    "jsonrpc_id": f"%DYNAMIC_METADATA({MCP_FILTER}:id)%",
    "mcp_partial": f"%DYNAMIC_METADATA({MCP_FILTER}:is_exceeding_limit)%",  # parsed in part only
    "status": "%RESPONSE_CODE%",  # a denied MCP call is 200 (a JSON-RPC error): count `decision` instead
    "decision": f"%RESP({DECISION_HEADER})%",  # denied, limited, blocked where refused here; else null (allow)
    "limit": f"%RESP({LIMIT_HEADER})%",  # the limits of the level that refused a `limited` call
    "guardrail": f"%RESP({GUARDRAIL_HEADER})%",  # NS/POLICY#REASON of a `blocked` call (the guardrail service's)
    "details": "%RESPONSE_CODE_DETAILS%",
    "flags": "%RESPONSE_FLAGS%",
    "gateway_rule": _rbac("gateway_shadow_effective_policy_id"),
    "backend_rule": _rbac("backend_shadow_effective_policy_id"),
    "gateway_result": _rbac("gateway_shadow_engine_result"),  # "denied": no rule of this level matched
    "backend_result": _rbac("backend_shadow_engine_result"),
    "gateway_extauth_rule": _rbac(delegated_key(GATEWAY)),
    "backend_extauth_rule": _rbac(delegated_key(BACKEND)),
    "upstream": "%UPSTREAM_CLUSTER%",  # unset where the request was refused before the router
    "route": "%ROUTE_NAME%",  # the HTTPRoute rule (NS/NAME/INDEX)
    "duration_ms": "%DURATION%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "session_id": f"%REQ({SESSION_HEADER.upper()})%",
}


def node_id(proxy: ProxyContext) -> str:
    """The node id the proxy is served under (controller.py), which its audit stream also carries."""
    key = proxy.gateway.key
    if proxy.role in (SIDECAR_INBOUND, SIDECAR_OUTBOUND):  # a sidecar's view is keyed by its ServiceAccount
        return node_id_for_workload(key.namespace, key.name)
    if proxy.role == EGRESS:
        return node_id_for_egress(key.namespace, key.name)
    return node_id_for_gateway(key.namespace, key.name)


def log_format(proxy: ProxyContext) -> dict:
    return {"proxy": node_id(proxy), "role": proxy.role, **ACCESS_LOG_FORMAT}


def grpc_access_log(proxy: ProxyContext) -> dict:
    """The audit stream to the control plane: the headers the entry does not carry by itself are named."""
    common = {"logName": proxy.role, "transportApiVersion": "V3",
              "grpcService": {"envoyGrpc": {"clusterName": XDS_CLUSTER}}, "bufferFlushInterval": "1s"}
    return {"name": "envoy.access_loggers.http_grpc",
            "typedConfig": {"@type": GRPC_LOG_TYPE, "commonConfig": common,
                            "additionalRequestHeadersToLog": [SESSION_HEADER],
                            "additionalResponseHeadersToLog": [DECISION_HEADER, LIMIT_HEADER,
                                                                              GUARDRAIL_HEADER]}}


class AccessLog(Feature):
    name = "access_log"

    def hcm_patch(self, port: PortContext) -> dict:
        stdout = {"name": "envoy.access_loggers.stdout",
                  "typedConfig": {"@type": STDOUT_LOG_TYPE, "logFormat": {"jsonFormat": log_format(port.proxy)}}}
        loggers = [stdout, grpc_access_log(port.proxy)] if port.proxy.enforces_policy else [stdout]
        return {"accessLog": loggers}
