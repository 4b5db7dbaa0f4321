"""A denial answered as upstream answers it, for MCP SDK compatibility: HTTP 200 with a JSON-RPC error.

Every filter that denies (RBAC, ext_authz) answers 403; the connection manager's local reply mapper turns
that into a JSON-RPC error carrying the request's own id (a number stays a number). A call the local rate
limit refuses (features/local_rate_limit.py) answers 429; it becomes a JSON-RPC error too, whose message
and `data.retryWithinSeconds` carry the seconds within which its buckets refill (the exact wait is in the
`x-ratelimit-reset` header, which Envoy adds only after the body is formatted).
Only requests that carry an id are rewritten: a denied GET, DELETE or notification keeps its plain status,
since answering a notification with a JSON-RPC reply would break the protocol.

A call refused because its guardrail failed (features/guardrail.py, fail closed) answers a local 500; it
becomes a JSON-RPC error too (`data.reason: guardrail-unavailable`).
Since a denied, limited or blocked call then leaves as HTTP 200, every local 403, 429 and 500 (rewritten or
not) is marked with the response header `x-agentic-decision: denied` (or `limited`, `blocked`), which the access log records as its
`decision` field (features/access_log.py): dashboards count denials from that field, not from the status code.

The mark means "Envoy decided", so it must not be forgeable: the RouteConfiguration's
`responseHeadersToRemove` removes it from every upstream response (an MCP server that sends
`x-agentic-decision: denied` does not make its own answer count as a denial), and with it the guardrail's
`x-agentic-guardrail` (which policy blocked, for the audit record). A local reply keeps them:
Envoy applies the route's header changes to a local reply before the local reply mapper adds the mark
(an HTTP filter removing it would run after the mapper and strip Envoy's own mark too; seen in
tests/integration/test_metrics_e2e.py). Only where this proxy decides (a gateway, a tool's inbound
side): an agent's outbound sidecar passes on the mark its tool's sidecar set.
"""

from __future__ import annotations

from controlplane.translate.context import PortContext, ProxyContext
from controlplane.translate.features.base import Feature
from controlplane.translate.features.local_rate_limit import RETRY_WITHIN_HEADER
from controlplane.translate.features.mcp import MCP_FILTER

DENIED_MESSAGE = "Access to this tool is forbidden."
DECISION_HEADER = "x-agentic-decision"
GUARDRAIL_HEADER = "x-agentic-guardrail"  # set by the guardrail service on a block: policy#reason, for the audit
DENIED, LIMITED, BLOCKED = "denied", "limited", "blocked"
GUARDRAIL_FAILED_MESSAGE = "The guardrail could not inspect this call, so it was refused (fail closed)."
RETRY_WITHIN = f"%RESP({RETRY_WITHIN_HEADER})%"
LIMITED_MESSAGE = f"Rate limit exceeded: retry within {RETRY_WITHIN} seconds."


class JsonRpcDenial(Feature):
    name = "jsonrpc_denial"

    def route_configuration_patch(self, proxy: ProxyContext) -> dict:
        """The upstream's mark removed, where this proxy decides."""
        return {"responseHeadersToRemove": [DECISION_HEADER, GUARDRAIL_HEADER]} if proxy.enforces_policy else {}

    def hcm_patch(self, port: PortContext) -> dict:
        return {"localReplyConfig": {"mappers": [jsonrpc_denial(), jsonrpc_rate_limited(), jsonrpc_guardrail_failed(),
                                                 marked(403, "agentic.denied_status", DENIED),
                                                 marked(429, "agentic.limited_status", LIMITED),
                                                 marked(500, "agentic.guardrail_failed_status", BLOCKED)]}}


def jsonrpc_denial() -> dict:
    return _jsonrpc_error(403, "agentic.denied_status", DENIED, {"code": 403, "message": DENIED_MESSAGE})


def jsonrpc_rate_limited() -> dict:
    return _jsonrpc_error(429, "agentic.limited_status", LIMITED,
                          {"code": 429, "message": LIMITED_MESSAGE, "data": {"retryWithinSeconds": RETRY_WITHIN}})


def jsonrpc_guardrail_failed() -> dict:
    """A guardrail that failed (unreachable, too slow, broken) refuses with a local 500 (fail closed); the
    only filter of the chain that answers 500 locally is the guardrail's ext_proc (features/guardrail.py)."""
    return _jsonrpc_error(500, "agentic.guardrail_failed_status", BLOCKED,
                          {"code": -32603, "message": GUARDRAIL_FAILED_MESSAGE, "data": {"reason": "guardrail-unavailable"}})


def marked(status: int, runtime_key: str, decision: str) -> dict:
    """A refusal without a request id (GET, DELETE, a notification): its status kept, only marked."""
    return {"filter": _status_is(status, runtime_key), "headersToAdd": _mark(decision)}


def _status_is(status: int, runtime_key: str) -> dict:
    return {"statusCodeFilter": {"comparison": {
        "op": "EQ", "value": {"defaultValue": status, "runtimeKey": runtime_key}}}}


def _mark(decision: str) -> list[dict]:
    return [{"header": {"key": DECISION_HEADER, "value": decision}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}]


def _jsonrpc_error(status: int, runtime_key: str, decision: str, error: dict) -> dict:
    has_id = {"metadataFilter": {"matcher": {"filter": MCP_FILTER, "path": [{"key": "id"}],
                                             "value": {"presentMatch": True}},
                                 "matchIfKeyNotFound": False}}
    body = {"jsonrpc": "2.0", "id": f"%DYNAMIC_METADATA({MCP_FILTER}:id)%", "error": error}
    return {"filter": {"andFilter": {"filters": [_status_is(status, runtime_key), has_id]}}, "statusCode": 200,
            "headersToAdd": _mark(decision), "bodyFormatOverride": {"jsonFormat": body}}
