"""The audit record: one schema for both ways a proxy reports a request.

Envoy reports each request twice: as a JSON line on its stdout (features/access_log.py: the fields below,
by the same names, from Envoy's format operators) and as an `HTTPAccessLogEntry` on the gRPC access log
stream (service.py). `from_entry` turns the second into the first's raw fields; `normalize` then makes
the same record of either, so the sink's file and a proxy's own log are read by one `agentic-cp audit`.
Every value is clipped (`MAX_VALUE_CHARS`): a record is evidence, never a way to flood the file.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

MAX_VALUE_CHARS = 1024
MCP_NAMESPACE = "envoy.filters.http.mcp"
RBAC_NAMESPACE = "envoy.filters.http.rbac"
DECISION_HEADER = "x-agentic-decision"  # every local refusal carries it (features/jsonrpc_denial.py)
LIMIT_HEADER = "x-agentic-limit"  # the limits of the level that limited (features/local_rate_limit.py)
GUARDRAIL_HEADER = "x-agentic-guardrail"  # NS/POLICY#REASON of a guardrail's block (controlplane/guardrail/server.py)
SESSION_HEADER = "mcp-session-id"
ALLOW = "allow"
DECISIONS = (ALLOW, "denied", "limited", "blocked")
XBACKEND_CLUSTER_PREFIX = "xbackend/"

# raw field -> (metadata namespace, key path) for the fields read from dynamic metadata
METADATA_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mcp_method": (MCP_NAMESPACE, ("method",)),
    "tool": (MCP_NAMESPACE, ("params", "name")),
    "resource": (MCP_NAMESPACE, ("params", "uri")),
    "jsonrpc_id": (MCP_NAMESPACE, ("id",)),
    "mcp_partial": (MCP_NAMESPACE, ("is_exceeding_limit",)),
    "gateway_rule": (RBAC_NAMESPACE, ("gateway_shadow_effective_policy_id",)),
    "backend_rule": (RBAC_NAMESPACE, ("backend_shadow_effective_policy_id",)),
    "gateway_result": (RBAC_NAMESPACE, ("gateway_shadow_engine_result",)),
    "backend_result": (RBAC_NAMESPACE, ("backend_shadow_engine_result",)),
    "gateway_extauth_rule": (RBAC_NAMESPACE, ("gateway_extauth_shadow_effective_policy_id",)),
    "backend_extauth_rule": (RBAC_NAMESPACE, ("backend_extauth_shadow_effective_policy_id",)),
}

# The record, in this order: what the sink writes and `agentic-cp audit -o json` prints.
FIELDS = ("time", "proxy", "role", "caller", "backend", "http_method", "path", "mcp_method", "tool", "resource",
          "jsonrpc_id", "decision", "gateway_rule", "backend_rule", "gateway_result", "backend_result",
          "gateway_extauth_rule", "backend_extauth_rule", "limit", "guardrail", "status", "details", "flags", "duration_ms",
          "request_id", "session_id", "mcp_partial", "upstream", "route")

# ResponseFlags fields -> Envoy's short codes (%RESPONSE_FLAGS%), so both sources say "RL", "UAEX", ...
FLAG_CODES = {
    "failed_local_healthcheck": "LH", "no_healthy_upstream": "UH", "upstream_request_timeout": "UT",
    "local_reset": "LR", "upstream_remote_reset": "UR", "upstream_connection_failure": "UF",
    "upstream_connection_termination": "UC", "upstream_overflow": "UO", "no_route_found": "NR",
    "delay_injected": "DI", "fault_injected": "FI", "rate_limited": "RL", "rate_limit_service_error": "RLSE",
    "downstream_connection_termination": "DC", "upstream_retry_limit_exceeded": "URX",
    "stream_idle_timeout": "SI", "invalid_envoy_request_headers": "IH", "downstream_protocol_error": "DPE",
    "upstream_max_stream_duration_reached": "UMSDR", "response_from_cache_filter": "RFCF",
    "no_filter_config_found": "NFCF", "duration_timeout": "DT", "upstream_protocol_error": "UPE",
    "no_cluster_found": "NC", "overload_manager": "OM", "dns_resolution_failure": "DF",
    "downstream_remote_reset": "DR",
}


def normalize(raw: dict[str, Any]) -> dict[str, Any]:
    """The record of a raw line (stdout access log) or of `from_entry`'s fields; idempotent.

    Envoy writes `-`/null for what a request lacks; a missing decision means no policy refused it."""
    record = {name: _clean(raw.get(name)) for name in FIELDS}
    record["decision"] = record["decision"] or ALLOW
    record["backend"] = record["backend"] or backend_of(record["upstream"])
    record["jsonrpc_id"] = _integral(record["jsonrpc_id"])
    for name in ("status", "duration_ms"):
        record[name] = _int_or_none(record[name])
    return record


def backend_of(cluster: Any) -> str | None:
    """The XBackend (NS/NAME) a request was routed to, from its upstream cluster; else the cluster.

    A request refused before the router (denied, limited) has no upstream cluster in Envoy's report:
    its `route` (the HTTPRoute rule, `NS/NAME/INDEX`) says where it was going."""
    if not isinstance(cluster, str) or not cluster:
        return None
    return cluster.removeprefix(XBACKEND_CLUSTER_PREFIX)


def record_time(record: dict[str, Any]) -> datetime | None:
    """The record's start time (RFC3339, as Envoy's %START_TIME% and the sink write it), or None."""
    value = record.get("time")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def from_entry(entry: Any, *, proxy: str, role: str) -> dict[str, Any]:
    """The raw fields of one `HTTPAccessLogEntry` (betterproto2), by the stdout access log's names."""
    common, request, response = entry.common_properties, entry.request, entry.response
    raw: dict[str, Any] = {"proxy": proxy, "role": role}
    if common is not None:
        raw.update(_common_fields(common))
    if request is not None:
        raw.update({"http_method": _method_name(request.request_method),
                    "path": request.original_path or request.path, "request_id": request.request_id,
                    "session_id": (request.request_headers or {}).get(SESSION_HEADER)})
    if response is not None:
        headers = response.response_headers or {}
        raw.update({"status": response.response_code, "details": response.response_code_details,
                    "decision": headers.get(DECISION_HEADER), "limit": headers.get(LIMIT_HEADER),
                    "guardrail": headers.get(GUARDRAIL_HEADER)})
    return raw


def _common_fields(common: Any) -> dict[str, Any]:
    duration = common.time_to_last_downstream_tx_byte
    fields: dict[str, Any] = {
        "time": _rfc3339(common.start_time), "caller": _peer_uri(common.tls_properties),
        "upstream": common.upstream_cluster, "route": common.route_name, "flags": _flags(common.response_flags),
        "duration_ms": None if duration is None else int(duration.total_seconds() * 1000)}
    metadata = common.metadata.filter_metadata if common.metadata is not None else {}
    namespaces = {name: _struct(metadata.get(name)) for name in (MCP_NAMESPACE, RBAC_NAMESPACE)}
    for name, (namespace, path) in METADATA_FIELDS.items():
        fields[name] = _dig(namespaces[namespace], path)
    return fields


def _struct(value: Any) -> dict:
    if value is None:
        return {}
    data = value.to_dict()
    return data if isinstance(data, dict) else {}


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data if isinstance(data, (str, int, float, bool)) else None  # a list or struct is not a value here


def _peer_uri(tls: Any) -> str | None:
    peer = tls.peer_certificate_properties if tls is not None else None
    for san in (peer.subject_alt_name if peer is not None else []):
        if san.uri:
            return san.uri
    return None


def _flags(flags: Any) -> str | None:
    if flags is None:
        return None
    codes = [code for name, code in FLAG_CODES.items() if getattr(flags, name, False)]
    if flags.unauthorized_details is not None:
        codes.insert(0, "UAEX")
    return ",".join(codes) or None


def _method_name(method: Any) -> str | None:
    name = getattr(method, "name", None)
    return None if name in (None, "METHOD_UNSPECIFIED") else name


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean(value: Any) -> Any:
    """A JSON scalar, clipped; Envoy's `-` placeholder and empty strings are None."""
    if value is None or value == "-" or value == "":
        return None
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


def _integral(value: Any) -> Any:
    """A JSON-RPC id: metadata carries numbers as doubles, and 3.0 was the caller's 3."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
