"""A denial answered as upstream answers it, for MCP SDK compatibility: HTTP 200 with a JSON-RPC error.

Every filter that denies (RBAC, ext_authz) answers 403; the connection manager's local reply mapper turns
that into a JSON-RPC error carrying the request's own id (a number stays a number). Only requests that
carry an id are rewritten: a denied GET, DELETE or notification keeps its plain 403, since answering a
notification with a JSON-RPC reply would break the protocol.
"""

from __future__ import annotations

from controlplane.translate.context import PortContext
from controlplane.translate.features.base import Feature
from controlplane.translate.features.mcp import MCP_FILTER

DENIED_MESSAGE = "Access to this tool is forbidden."


class JsonRpcDenial(Feature):
    name = "jsonrpc_denial"

    def hcm_patch(self, port: PortContext) -> dict:
        return {"localReplyConfig": {"mappers": [jsonrpc_denial()]}}


def jsonrpc_denial() -> dict:
    status_403 = {"statusCodeFilter": {"comparison": {
        "op": "EQ", "value": {"defaultValue": 403, "runtimeKey": "agentic.denied_status"}}}}
    has_id = {"metadataFilter": {"matcher": {"filter": MCP_FILTER, "path": [{"key": "id"}],
                                             "value": {"presentMatch": True}},
                                 "matchIfKeyNotFound": False}}
    body = {"jsonrpc": "2.0", "id": f"%DYNAMIC_METADATA({MCP_FILTER}:id)%",
            "error": {"code": 403, "message": DENIED_MESSAGE}}
    return {"filter": {"andFilter": {"filters": [status_403, has_id]}}, "statusCode": 200,
            "bodyFormatOverride": {"jsonFormat": body}}
