"""`tools/list` filtered per caller: Envoy's ext_proc asks the control plane about each tools/list response.

One ext_proc filter sits in a gateway listener's chain after the rate limits, before the router. It
reaches the control plane's ext_proc service (controlplane/toolfilter/) over the xDS cluster the
bootstrap already has (mTLS with the proxy's xDS credential, which the service checks against the hop).
What it sends, and why it costs little for everything else:
- request headers and bodies: never (`SKIP`/`NONE`); the MCP filter's metadata (method, id) is
  forwarded with the response headers (`metadataOptions`), with the caller's URI SAN, path and host;
- response headers: only for a 2xx response to `tools/list`. The filter is wrapped in Envoy's
  `ExtensionWithMatcher` (match_delegate), which skips it unless the response status starts with 2 and
  the MCP filter's metadata says `method: tools/list` (`DynamicMetadataInput` read by the `metadata`
  input matcher; the status input is what defers the decision from the request headers, where the MCP
  metadata is not there yet, to the response headers). Every other call costs no round trip at all
  (measured: 5 `tools/call`, a ping, initialize and its notification opened no ext_proc stream). The
  service then switches the response to a BUFFERED body (`allowModeOverride`, the one mode in
  `allowedOverrideModes`), which comes back filtered with its content-length fixed.
Which hop: each virtual host of a gateway names `gateway/<ns>/<name>/<port>` in the stream's gRPC initial
metadata (`ExtProcPerRoute.overrides.grpcInitialMetadata`); a tool's sidecar (inbound) names
`sidecar/<ns>/<serviceaccount>/<xbackend-ns>/<xbackend>` on the route to that XBackend; routes that
reach no XBackend are disabled. All of it
lives in the route configuration, and the decisions in the control plane's live graph, so a policy
change never touches the listener (nor, for the list, any xDS resource at all).
Failure mode: open (`failureModeAllow`). If the control plane is unreachable the list passes
unfiltered: names leak, nothing is granted (RBAC still refuses every call the list would hide), and
nothing else is touched. Failing closed would let a control-plane outage break every agent's
tools/list. Envoy counts these in `ext_proc.tools_list.failure_mode_allowed`.
"""

from __future__ import annotations

from controlplane.graph.view import ListenerView, RouteRuleView
from controlplane.translate.bootstrap import XDS_CLUSTER
from controlplane.translate.context import SIDECAR_INBOUND, PortContext, ProxyContext
from controlplane.translate.features.base import Feature
from controlplane.translate.features.mcp import MCP_FILTER

EXT_PROC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
EXT_PROC_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
TOOLS_LIST_FILTER = "envoy.filters.http.ext_proc.tools_list"
HOP_HEADER = "x-agentic-hop"  # read by controlplane/toolfilter/decide.py
# the caller, and where it sent the request (the path before a URL rewrite): what explain decides on
RESPONSE_ATTRIBUTES = ("connection.uri_san_peer_certificate", "request.path", "request.host",
                       "request.headers['x-envoy-original-path']")
TIMEOUT = "1s"  # per message; a tools/list body is filtered in well under it
HEADERS_ONLY = {"requestHeaderMode": "SKIP", "responseHeaderMode": "SEND", "requestBodyMode": "NONE",
                "responseBodyMode": "NONE", "requestTrailerMode": "SKIP", "responseTrailerMode": "SKIP"}
BUFFER_BODY = {**HEADERS_ONLY, "responseBodyMode": "BUFFERED"}  # what the service switches a tools/list to


MATCH_DELEGATE_TYPE = "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher"
SKIP_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter"
STATUS_INPUT_TYPE = "type.googleapis.com/envoy.type.matcher.v3.HttpResponseStatusCodeMatchInput"
METADATA_INPUT_TYPE = "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DynamicMetadataInput"
METADATA_MATCHER_TYPE = "type.googleapis.com/envoy.extensions.matching.input_matchers.metadata.v3.Metadata"

GATEWAY_ROLE = "gateway"
ROLES = (GATEWAY_ROLE, SIDECAR_INBOUND)


def gateway_hop(proxy: ProxyContext, port: int) -> str:
    key = proxy.gateway.key
    return f"gateway/{key.namespace}/{key.name}/{port}"


def sidecar_hop(proxy: ProxyContext, backend) -> str:
    """A tool's sidecar (its ServiceAccount) in front of one XBackend: only that XBackend's level decides."""
    key = proxy.gateway.key
    return f"sidecar/{key.namespace}/{key.name}/{backend.namespace}/{backend.name}"


def _with_hop(value: str) -> dict:
    return {TOOLS_LIST_FILTER: {"@type": EXT_PROC_PER_ROUTE_TYPE,
                                "overrides": {"grpcInitialMetadata": [{"key": HOP_HEADER, "value": value}]}}}


def only_for_listed_tools(ext_proc: dict) -> dict:
    """The ext_proc filter, skipped for every response but a 2xx to `tools/list` (verified with Envoy 1.40).

    A plain `valueMatch` on `DynamicMetadataInput` never matches (the input yields a protobuf Value, not
    a string); the `metadata` input matcher does. The status predicate comes first so that, at the
    request headers, the AND is undecided (no response yet) rather than a miss that would skip the filter
    for the whole stream before the MCP filter has parsed the body.
    """
    status = {"singlePredicate": {"input": {"name": "status", "typedConfig": {"@type": STATUS_INPUT_TYPE}},
                                  "valueMatch": {"prefix": "2"}}}
    method = {"singlePredicate": {
        "input": {"name": "mcp-method", "typedConfig": {"@type": METADATA_INPUT_TYPE, "filter": MCP_FILTER,
                                                        "path": [{"key": "method"}]}},
        "customMatch": {"name": "tools-list", "typedConfig": {
            "@type": METADATA_MATCHER_TYPE, "value": {"stringMatch": {"exact": "tools/list"}}}}}}
    skip = {"name": "skip", "typedConfig": {"@type": SKIP_FILTER_TYPE}}
    return {"@type": MATCH_DELEGATE_TYPE,
            "extensionConfig": {"name": TOOLS_LIST_FILTER, "typedConfig": ext_proc},
            "xdsMatcher": {"matcherList": {"matchers": [{
                "predicate": {"notMatcher": {"andMatcher": {"predicate": [status, method]}}},
                "onMatch": {"action": skip}}]}}}


class ToolsList(Feature):
    """The ext_proc filter per listener; a gateway's hop per virtual host, a sidecar's per route to its
    XBackend; off on routes that reach no XBackend."""

    name = "tools_list"

    def http_filters(self, port: PortContext) -> list[dict]:
        if port.proxy.role not in ROLES:
            return []
        return [{"name": TOOLS_LIST_FILTER, "typedConfig": only_for_listed_tools({
            "@type": EXT_PROC_TYPE,
            "grpcService": {"envoyGrpc": {"clusterName": XDS_CLUSTER}, "timeout": TIMEOUT},
            "failureModeAllow": True,
            "processingMode": HEADERS_ONLY,
            "allowModeOverride": True,
            "allowedOverrideModes": [BUFFER_BODY],
            "metadataOptions": {"forwardingNamespaces": {"untyped": [MCP_FILTER]}},
            "responseAttributes": list(RESPONSE_ATTRIBUTES),
            "messageTimeout": TIMEOUT,
            "statPrefix": "tools_list"})}]

    def virtual_host_config(self, proxy: ProxyContext, listener: ListenerView) -> dict:
        return _with_hop(gateway_hop(proxy, listener.port)) if proxy.role == GATEWAY_ROLE else {}

    def route_config(self, proxy: ProxyContext, rule: RouteRuleView) -> dict:
        if proxy.role not in ROLES:
            return {}
        mcp = [ref.backend.key for ref in rule.backends if ref.backend.is_mcp]
        if not mcp:
            return {TOOLS_LIST_FILTER: {"@type": EXT_PROC_PER_ROUTE_TYPE, "disabled": True}}
        return _with_hop(sidecar_hop(proxy, mcp[0])) if proxy.role == SIDECAR_INBOUND else {}
