"""RateLimitPolicy limits -> Envoy's local rate limit, one token bucket per limit x caller x tool.

How Envoy is asked: every chain carries one local rate limit filter per level (`local_ratelimit.gateway`,
`local_ratelimit.backend`), after the RBAC filters (a refused call takes no token) and disabled (no
bucket, not enabled): a placeholder, so that a limit change is a route update and never drains a
listener. A Gateway's limits arrive in each virtual host's `typed_per_filter_config`, an XBackend's in
each weighted cluster's, as a `LocalRateLimit` with its own `rate_limits` (the descriptor each request
produces) and `descriptors` (the buckets):

- each limit produces the descriptor `(limit, <ns>/<policy>#<limit>) (mcp_method, ...) (caller, ...)
  (tool, ...)`: the caller is the peer certificate's URI SAN (a CEL descriptor), the method and tool come
  from the MCP filter's dynamic metadata. A request without one of them (no client certificate, not a
  JSON-RPC call) produces no descriptor and takes no token;
- each limit has one bucket descriptor whose `mcp_method` is `tools/call`, whose `caller` is the limit's
  SPIFFE ID or blank, and whose `tool` is one of its tools or blank. A blank value is Envoy's wildcard:
  each distinct caller (tool) gets a bucket of its own, kept in an LRU of `MAX_DYNAMIC_BUCKETS`;
- the route-level default bucket, which Envoy requires per route, is never consumed
  (`alwaysConsumeDefaultTokenBucket: false`) and so large it never limits.

A limited call is answered 429 with `x-ratelimit-*` headers (draft 03: `x-ratelimit-reset` is the
seconds until the emptied bucket refills), `x-agentic-retry-within`, the longest interval of the
limits at that level: every bucket there is full again within it, and `x-agentic-limit`, the limits of
that level (`<ns>/<policy>#<limit>`, comma-separated), which the audit record names as the decider. Envoy adds the `x-ratelimit-*` headers
after the local reply's body is formatted, so only the latter can reach the body:
features/jsonrpc_denial.py turns the 429 into a JSON-RPC error carrying it as the retry hint. Each replica of a proxy keeps its own buckets (see the README on N replicas).
"""

from __future__ import annotations

from controlplane.graph.view import ANY_SOURCE, NO_SOURCE, BackendRefView, ListenerView, ResolvedLimit
from controlplane.translate.context import BACKEND, GATEWAY, PortContext, ProxyContext
from controlplane.translate.features.base import Feature
from controlplane.translate.features.mcp import MCP_FILTER

LOCAL_RATE_LIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
EXPR_DESCRIPTOR_TYPE = "type.googleapis.com/envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor"
PEER_URI_SAN = "connection.uri_san_peer_certificate"
UNLIMITED = 4_000_000_000  # a default bucket that never empties (uint32 range)
RETRY_WITHIN_HEADER = "x-agentic-retry-within"  # seconds within which every bucket here refills
LIMIT_HEADER = "x-agentic-limit"  # the limits of the level that limited, for the audit record
MAX_DYNAMIC_BUCKETS = 10_000  # per wildcard descriptor: distinct callers x tools kept at once
ENFORCED = {"defaultValue": {"numerator": 100, "denominator": "HUNDRED"}}


def rate_limit_filter(level: str) -> str:
    return f"envoy.filters.http.local_ratelimit.{level}"


class LocalRateLimit(Feature):
    """The limits of each level, per virtual host (Gateway) and per weighted cluster (XBackend)."""

    name = "local_rate_limit"

    def http_filters(self, port: PortContext) -> list[dict]:
        if not port.proxy.enforces_policy:
            return []
        return [{"name": rate_limit_filter(level),
                 "typedConfig": {"@type": LOCAL_RATE_LIMIT_TYPE, "statPrefix": f"{level}_rate_limit"}}
                for level in (GATEWAY, BACKEND)]

    def virtual_host_config(self, proxy: ProxyContext, listener: ListenerView) -> dict:
        return level_config(listener.rate_limits, GATEWAY) if proxy.enforces_policy else {}

    def weighted_cluster_config(self, proxy: ProxyContext, backend: BackendRefView) -> dict:
        return level_config(backend.backend.rate_limits, BACKEND) if proxy.enforces_policy else {}


def level_config(limits: tuple[ResolvedLimit, ...], level: str) -> dict:
    """The level's LocalRateLimit for one target's limits; {} where none applies."""
    limits = tuple(limit for limit in limits if limit.principal != NO_SOURCE)  # names no caller: never applies
    if not limits:
        return {}
    config = {"@type": LOCAL_RATE_LIMIT_TYPE, "statPrefix": f"{level}_rate_limit",
              "filterEnabled": {**ENFORCED, "runtimeKey": f"agentic.{level}_rate_limit_enabled"},
              "filterEnforced": {**ENFORCED, "runtimeKey": f"agentic.{level}_rate_limit_enforced"},
              "tokenBucket": bucket(UNLIMITED, 1), "alwaysConsumeDefaultTokenBucket": False,
              "enableXRatelimitHeaders": "DRAFT_VERSION_03", "maxDynamicDescriptors": MAX_DYNAMIC_BUCKETS,
              "rateLimits": [{"actions": descriptor_actions(limit)} for limit in limits],
              "descriptors": [d for limit in limits for d in bucket_descriptors(limit)],
              "responseHeadersToAdd": [_header(RETRY_WITHIN_HEADER, str(max(limit.seconds for limit in limits))),
                                       _header(LIMIT_HEADER, ",".join(limit.ref for limit in limits))]}
    return {rate_limit_filter(level): config}


def descriptor_actions(limit: ResolvedLimit) -> list[dict]:
    """What a request contributes to this limit's descriptor: the limit, its MCP method, caller, tool."""
    return [{"genericKey": {"descriptorKey": "limit", "descriptorValue": limit.ref}},
            _mcp_metadata("mcp_method", "method"),
            {"extension": {"name": "envoy.rate_limit_descriptors.expr",
                           "typedConfig": {"@type": EXPR_DESCRIPTOR_TYPE, "descriptorKey": "caller",
                                           "text": PEER_URI_SAN}}},
            _mcp_metadata("tool", "params", "name")]


def bucket_descriptors(limit: ResolvedLimit) -> list[dict]:
    """One bucket descriptor per named tool (or one wildcard); a blank caller or tool is per value."""
    caller = {"key": "caller"} if limit.principal == ANY_SOURCE else {"key": "caller", "value": limit.principal}
    tools = [{"key": "tool", "value": tool} for tool in limit.tools] or [{"key": "tool"}]
    head = [{"key": "limit", "value": limit.ref}, {"key": "mcp_method", "value": "tools/call"}, caller]
    return [{"entries": [*head, tool], "tokenBucket": bucket(limit.requests, limit.seconds)} for tool in tools]


def _header(key: str, value: str) -> dict:
    return {"header": {"key": key, "value": value}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}


def bucket(requests: int, seconds: int) -> dict:
    return {"maxTokens": requests, "tokensPerFill": requests, "fillInterval": f"{seconds}s"}


def _mcp_metadata(descriptor_key: str, *path: str) -> dict:
    return {"metadata": {"descriptorKey": descriptor_key, "source": "DYNAMIC",
                         "metadataKey": {"key": MCP_FILTER, "path": [{"key": k} for k in path]}}}
