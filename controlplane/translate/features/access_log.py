"""One JSON access log line per request on stdout: who called which tool, and which rule decided.

The rule names come from the RBAC filters' shadow rules (features/rbac.py, features/ext_authz.py), the MCP
fields from the MCP filter's dynamic metadata (features/mcp.py), the response flags from Envoy (e.g. UAEX:
the external authorizer denied; UF: the backend was unreachable), the decision from the mark every local
denial carries (features/jsonrpc_denial.py). Per identity x tool x decision counts are taken from this
stream (Envoy's stats cannot carry an identity as a tag); docs/metrics.md has the queries.
"""

from __future__ import annotations

from controlplane.translate.context import BACKEND, GATEWAY, PortContext
from controlplane.translate.features.base import Feature
from controlplane.translate.features.ext_authz import delegated_key
from controlplane.translate.features.jsonrpc_denial import DECISION_HEADER

STDOUT_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"

ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "caller": "%DOWNSTREAM_PEER_URI_SAN%",
    "http_method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "mcp_method": "%DYNAMIC_METADATA(envoy.filters.http.mcp:method)%",
    "tool": "%DYNAMIC_METADATA(envoy.filters.http.mcp:params:name)%",
    "mcp_partial": "%DYNAMIC_METADATA(envoy.filters.http.mcp:is_exceeding_limit)%",  # parsed in part only
    "status": "%RESPONSE_CODE%",  # a denied MCP call is 200 (a JSON-RPC error): count `decision` instead
    "decision": f"%RESP({DECISION_HEADER})%",  # "denied" where a policy refused the request, else null
    "details": "%RESPONSE_CODE_DETAILS%",
    "flags": "%RESPONSE_FLAGS%",
    "gateway_rule": "%DYNAMIC_METADATA(envoy.filters.http.rbac:gateway_shadow_effective_policy_id)%",
    "backend_rule": "%DYNAMIC_METADATA(envoy.filters.http.rbac:backend_shadow_effective_policy_id)%",
    "gateway_extauth_rule": f"%DYNAMIC_METADATA(envoy.filters.http.rbac:{delegated_key(GATEWAY)})%",
    "backend_extauth_rule": f"%DYNAMIC_METADATA(envoy.filters.http.rbac:{delegated_key(BACKEND)})%",
    "upstream": "%UPSTREAM_CLUSTER%",
}


class AccessLog(Feature):
    name = "access_log"

    def hcm_patch(self, port: PortContext) -> dict:
        return {"accessLog": [{"name": "envoy.access_loggers.stdout",
                               "typedConfig": {"@type": STDOUT_LOG_TYPE,
                                               "logFormat": {"jsonFormat": ACCESS_LOG_FORMAT}}}]}
