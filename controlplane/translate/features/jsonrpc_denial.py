"""A denial answered as upstream answers it, for MCP SDK compatibility: HTTP 200 with a JSON-RPC error.

Every filter that denies (RBAC, ext_authz) answers 403; the connection manager's local reply mapper turns
that into a JSON-RPC error carrying the request's own id (a number stays a number). Only requests that
carry an id are rewritten: a denied GET, DELETE or notification keeps its plain 403, since answering a
notification with a JSON-RPC reply would break the protocol.

Since a denied call then leaves as HTTP 200, every local 403 (rewritten or not) is marked with the response
header `x-agentic-decision: denied`, which the access log records as its `decision` field
(features/access_log.py): dashboards count denials from that field, not from the status code.
"""

from __future__ import annotations

from controlplane.translate.context import PortContext
from controlplane.translate.features.base import Feature
from controlplane.translate.features.mcp import MCP_FILTER

DENIED_MESSAGE = "Access to this tool is forbidden."
DECISION_HEADER = "x-agentic-decision"
DENIED = "denied"


class JsonRpcDenial(Feature):
    name = "jsonrpc_denial"

    def hcm_patch(self, port: PortContext) -> dict:
        return {"localReplyConfig": {"mappers": [jsonrpc_denial(), marked_denial()]}}


def status_403() -> dict:
    return {"statusCodeFilter": {"comparison": {
        "op": "EQ", "value": {"defaultValue": 403, "runtimeKey": "agentic.denied_status"}}}}


def denied_mark() -> list[dict]:
    return [{"header": {"key": DECISION_HEADER, "value": DENIED}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}]


def marked_denial() -> dict:
    """A denial without a request id (GET, DELETE, a notification): its 403 kept, only marked."""
    return {"filter": status_403(), "headersToAdd": denied_mark()}


def jsonrpc_denial() -> dict:
    has_id = {"metadataFilter": {"matcher": {"filter": MCP_FILTER, "path": [{"key": "id"}],
                                             "value": {"presentMatch": True}},
                                 "matchIfKeyNotFound": False}}
    body = {"jsonrpc": "2.0", "id": f"%DYNAMIC_METADATA({MCP_FILTER}:id)%",
            "error": {"code": 403, "message": DENIED_MESSAGE}}
    return {"filter": {"andFilter": {"filters": [status_403(), has_id]}}, "statusCode": 200,
            "headersToAdd": denied_mark(), "bodyFormatOverride": {"jsonFormat": body}}
