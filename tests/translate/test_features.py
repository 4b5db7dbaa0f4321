"""Each Envoy feature module on its own: nothing where it does not apply, its own part where it does.

Views are built by hand (graph/view.py's frozen dataclasses), so each test names exactly what the feature
is given; the last tests go through the real Gateway role.
"""

from __future__ import annotations

import dataclasses

import yaml

from controlplane.api.agentic import Action
from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.graph.view import (
    ANY_SOURCE,
    AuthorizerView,
    BackendRefView,
    BackendView,
    GatewayView,
    ListenerView,
    PolicyAttachment,
    ResolvedLimit,
    ResolvedRule,
    RouteAttachment,
    RouteRuleView,
    gateway_view,
)
from controlplane.translate import listener, route_config
from controlplane.translate.context import SIDECAR_OUTBOUND, PortContext, ProxyContext
from controlplane.translate.features import FEATURES
from controlplane.translate.features.access_log import AccessLog
from controlplane.translate.features.base import Feature
from controlplane.translate.features.ext_authz import ExtAuthz
from controlplane.translate.features.jsonrpc_denial import JsonRpcDenial
from controlplane.translate.features.local_rate_limit import LocalRateLimit
from controlplane.translate.features.mcp import MCP_FILTER, Mcp
from controlplane.translate.features.rbac import DENY_ALL, Rbac
from controlplane.translate.features.router import Router
from controlplane.translate.features.tls import DownstreamTls
from controlplane.translate.roles import gateway as gateway_role
from controlplane.translate.roles.gateway import resources_for
from controlplane.xds.resources import CLUSTER, ENDPOINT, SECRET, Resource
from tests.translate.test_gateway_translation import QUICKSTART_GW, quickstart_graph

GW = ResourceKey("Gateway", "apps", "gw")
POLICY = ResourceKey("XAccessPolicy", "apps", "p")
ALICE = "spiffe://cluster.local/ns/apps/sa/alice"
SECRETS = (Resource(SECRET, "gateway-cert", {"name": "gateway-cert"}),)
EXTERNAL_AUTH = parse_object(yaml.safe_load("""
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: p, namespace: apps}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: tools}]
  action: ExternalAuth
  externalAuth: {protocol: GRPC, grpc: {}, backendRef: {name: authz, port: 50051}}
""")).spec.external_auth


def _allow(principal: str = ALICE, *, withheld: str | None = None) -> PolicyAttachment:
    rules = () if withheld else (ResolvedRule(POLICY, "r", principal, None),)
    return PolicyAttachment(POLICY, Action.ALLOW, rules, withheld=withheld)


def _external(*, withheld: str | None = None) -> PolicyAttachment:
    authorizer = AuthorizerView("GRPC", "apps", "authz", 50051, (("10.0.0.7", 9191),))
    return PolicyAttachment(POLICY, Action.EXTERNAL_AUTH, (ResolvedRule(POLICY, "*", ANY_SOURCE, None),),
                            EXTERNAL_AUTH, authorizer, withheld)


def _backend(*, mcp: bool = True, policies: tuple = ()) -> BackendRefView:
    key = ResourceKey("XBackend" if mcp else "Service", "apps", "tools")
    return BackendRefView(BackendView(key, mcp, port=3001, policies=policies), None if mcp else 80, 1)


def _rule(*backends: BackendRefView) -> RouteRuleView:
    return RouteRuleView("apps/r/0", ResourceKey("HTTPRoute", "apps", "r"), 0, None, (), (), backends)


def _proxy(*, tls: bool = False, policies: tuple = (), backends: tuple = ()) -> tuple[ProxyContext, PortContext]:
    routes = (RouteAttachment(_rule(*backends), ()),) if backends else ()
    gateway_listener = ListenerView("l", 443 if tls else 80, tls, routes, policies)
    proxy = ProxyContext("gateway", GatewayView(GW, (gateway_listener,)), SECRETS)
    return proxy, PortContext(proxy, gateway_listener.port, tls, (gateway_listener,))


def test_mcp_filter_is_first_and_passes_non_mcp_routes_through():
    proxy, port = _proxy()
    assert [f["name"] for f in Mcp().http_filters(port)] == [MCP_FILTER]
    assert Mcp().route_config(proxy, _rule(_backend(mcp=True))) == {}
    assert Mcp().route_config(proxy, _rule(_backend(mcp=False)))[MCP_FILTER]["trafficMode"] == "PASS_THROUGH"


def test_rbac_places_allow_policies_per_level_and_nothing_without_them():
    proxy, _ = _proxy()
    rbac = Rbac()
    assert rbac.virtual_host_config(proxy, ListenerView("l", 80, False, (), ())) == {}
    assert rbac.weighted_cluster_config(proxy, _backend()) == {}
    config = rbac.virtual_host_config(proxy, ListenerView("l", 80, False, (), (_allow(),)))
    assert list(config) == ["envoy.filters.http.rbac.gateway"]
    assert list(config["envoy.filters.http.rbac.gateway"]["rbac"]["rules"]["policies"]) == ["apps/p#r"]
    backend_config = rbac.weighted_cluster_config(proxy, _backend(policies=(_allow(),)))
    assert list(backend_config) == ["envoy.filters.http.rbac.backend"]
    withheld = rbac.weighted_cluster_config(proxy, _backend(policies=(_external(withheld="NACK"),)))
    assert withheld == {"envoy.filters.http.rbac.backend": DENY_ALL}


def test_ext_authz_delegates_only_where_an_external_auth_policy_is_in_force():
    proxy, _ = _proxy(backends=(_backend(),))
    feature = ExtAuthz()
    assert feature.weighted_cluster_config(proxy, _backend(policies=(_allow(),))) == {}
    assert feature.weighted_cluster_config(proxy, _backend(policies=(_external(withheld="NACK"),))) == {}
    assert feature.resources(proxy) == []
    config = feature.weighted_cluster_config(proxy, _backend(policies=(_external(),)))
    assert set(config) == {"envoy.filters.http.rbac.backend_extauth", "envoy.filters.http.ext_authz.backend"}
    cluster = config["envoy.filters.http.ext_authz.backend"]["checkSettings"]["grpcService"]["envoyGrpc"]
    assert cluster["clusterName"] == "ext-authz/grpc/apps/authz/50051"

    proxy, _ = _proxy(backends=(_backend(policies=(_external(),)),))
    assert [(r.type_url, r.name) for r in feature.resources(proxy)] == [
        (CLUSTER, "ext-authz/grpc/apps/authz/50051"), (ENDPOINT, "ext-authz/grpc/apps/authz/50051")]


def test_tls_only_on_https_ports_and_secrets_only_then():
    proxy, port = _proxy(tls=False)
    assert DownstreamTls().filter_chain_patch(port) == {}
    assert DownstreamTls().resources(proxy) == []
    proxy, port = _proxy(tls=True)
    assert DownstreamTls().filter_chain_patch(port)["transportSocket"]["name"] == "envoy.transport_sockets.tls"
    assert DownstreamTls().resources(proxy) == list(SECRETS)


def test_connection_manager_features_and_the_router():
    _, port = _proxy()
    mapper = JsonRpcDenial().hcm_patch(port)["localReplyConfig"]["mappers"][0]
    assert mapper["statusCode"] == 200 and mapper["bodyFormatOverride"]["jsonFormat"]["jsonrpc"] == "2.0"
    log = AccessLog().hcm_patch(port)["accessLog"][0]["typedConfig"]["logFormat"]["jsonFormat"]
    assert log["tool"] == "%DYNAMIC_METADATA(envoy.filters.http.mcp:params:name)%"
    assert [f["name"] for f in Router().http_filters(port)] == ["envoy.filters.http.router"]
    for feature in (JsonRpcDenial(), AccessLog(), Router()):
        assert feature.resources(port.proxy) == [] and feature.route_config(port.proxy, _rule()) == {}


def test_the_filter_chain_is_the_features_in_list_order():
    _, port = _proxy()
    hcm = listener.http_connection_manager(port, FEATURES)
    assert [f["name"] for f in hcm["httpFilters"]] == [
        "envoy.filters.http.mcp",
        "envoy.filters.http.rbac.gateway_extauth", "envoy.filters.http.rbac.backend_extauth",
        "envoy.filters.http.ext_authz.gateway", "envoy.filters.http.ext_authz.backend",
        "envoy.filters.http.rbac.gateway", "envoy.filters.http.rbac.backend",
        "envoy.filters.http.local_ratelimit.gateway", "envoy.filters.http.local_ratelimit.backend",
        "envoy.filters.http.ext_proc.guardrail_gateway", "envoy.filters.http.ext_proc.guardrail_backend",
        "envoy.filters.http.ext_proc.tools_list", "envoy.filters.http.router",
    ]


def test_the_upstreams_decision_mark_is_removed_only_where_this_proxy_decides():
    proxy, port = _proxy()
    marks = ["x-agentic-decision", "x-agentic-guardrail"]  # an upstream must not forge a refusal or its policy
    assert JsonRpcDenial().route_configuration_patch(proxy) == {"responseHeadersToRemove": marks}
    assert route_config.route_configuration(port, FEATURES)["responseHeadersToRemove"] == marks
    outbound = dataclasses.replace(proxy, role=SIDECAR_OUTBOUND)
    assert JsonRpcDenial().route_configuration_patch(outbound) == {}


def test_a_feature_that_does_not_apply_changes_nothing_in_the_role(monkeypatch):
    view = gateway_view(quickstart_graph(), QUICKSTART_GW)

    class Inert(Feature):
        name = "inert"

    baseline = resources_for(view, secrets=SECRETS)
    assert any(r.type_url == SECRET for r in baseline)  # the quickstart has an HTTPS listener
    monkeypatch.setattr(gateway_role, "FEATURES", (*FEATURES, Inert()))
    assert resources_for(view, secrets=SECRETS) == baseline


def test_one_stat_scheme_per_role_and_each_level_counts_apart():
    _, port = _proxy()
    hcm = listener.http_connection_manager(port, FEATURES)
    assert hcm["statPrefix"] == "gateway_80"  # no namespace/name: the same names on every gateway
    prefixes = {f["name"]: f["typedConfig"].get("rulesStatPrefix") for f in hcm["httpFilters"] if "rbac" in f["name"]}
    assert prefixes == {"envoy.filters.http.rbac.gateway_extauth": "gateway_extauth.",
                        "envoy.filters.http.rbac.backend_extauth": "backend_extauth.",
                        "envoy.filters.http.rbac.gateway": "gateway.", "envoy.filters.http.rbac.backend": "backend."}
    shadow = {f["name"]: f["typedConfig"].get("shadowRulesStatPrefix") for f in hcm["httpFilters"] if "rbac" in f["name"]}
    assert shadow == prefixes  # shadow_allowed|shadow_denied count per level too


def test_every_local_denial_is_marked_and_the_access_log_records_the_mark():
    _, port = _proxy()
    mappers = JsonRpcDenial().hcm_patch(port)["localReplyConfig"]["mappers"]
    # with an id: a JSON-RPC error (HTTP 200); without: the plain 403 or 429
    assert [m.get("statusCode") for m in mappers] == [200, 200, 200, None, None, None]
    assert [m["headersToAdd"][0]["header"]["value"] for m in mappers] == [
        "denied", "limited", "blocked", "denied", "limited", "blocked"]
    assert {m["headersToAdd"][0]["header"]["key"] for m in mappers} == {"x-agentic-decision"}
    log_format = AccessLog().hcm_patch(port)["accessLog"][0]["typedConfig"]["logFormat"]["jsonFormat"]
    assert log_format["decision"] == "%RESP(x-agentic-decision)%"


# --- local rate limit (RateLimitPolicy) -----------------------------------------------------------------

LIMITS = ResourceKey("RateLimitPolicy", "apps", "limits")


def _limit(name: str, principal: str = ALICE, tools: tuple[str, ...] = (), requests: int = 3,
           seconds: int = 60) -> ResolvedLimit:
    return ResolvedLimit(LIMITS, name, principal, tools, requests, seconds)


def test_local_rate_limit_is_a_disabled_placeholder_in_the_listener_and_nothing_without_limits():
    proxy, port = _proxy()
    filters = LocalRateLimit().http_filters(port)
    assert [f["name"] for f in filters] == ["envoy.filters.http.local_ratelimit.gateway",
                                            "envoy.filters.http.local_ratelimit.backend"]
    assert all(set(f["typedConfig"]) == {"@type", "statPrefix"} for f in filters)  # no bucket: never limits
    assert LocalRateLimit().virtual_host_config(proxy, port.listeners[0]) == {}
    assert LocalRateLimit().weighted_cluster_config(proxy, _backend()) == {}
    outbound = PortContext(ProxyContext("sidecar-outbound", proxy.gateway), 80, False, port.listeners)
    assert LocalRateLimit().http_filters(outbound) == []


def test_each_limit_is_one_bucket_per_caller_and_tool_it_names_blank_for_each_value():
    named = _limit("sum", tools=("get-sum", "echo"), requests=3, seconds=60)
    anyone = _limit("anyone", principal=ANY_SOURCE, requests=100, seconds=3600)
    nobody = _limit("nobody", principal="!")  # a half-written source: it names no caller, never applies
    backend = BackendRefView(BackendView(ResourceKey("XBackend", "apps", "tools"), True, port=3001,
                                         rate_limits=(named, anyone, nobody)), None, 1)
    proxy, _ = _proxy()
    config = LocalRateLimit().weighted_cluster_config(proxy, backend)["envoy.filters.http.local_ratelimit.backend"]
    buckets = [({e["key"]: e.get("value") for e in d["entries"]}, d["tokenBucket"]) for d in config["descriptors"]]
    assert buckets == [
        ({"limit": "apps/limits#sum", "mcp_method": "tools/call", "caller": ALICE, "tool": "get-sum"},
         {"maxTokens": 3, "tokensPerFill": 3, "fillInterval": "60s"}),
        ({"limit": "apps/limits#sum", "mcp_method": "tools/call", "caller": ALICE, "tool": "echo"},
         {"maxTokens": 3, "tokensPerFill": 3, "fillInterval": "60s"}),
        ({"limit": "apps/limits#anyone", "mcp_method": "tools/call", "caller": None, "tool": None},
         {"maxTokens": 100, "tokensPerFill": 100, "fillInterval": "3600s"})]
    assert [a["actions"][0]["genericKey"]["descriptorValue"] for a in config["rateLimits"]] == [
        "apps/limits#sum", "apps/limits#anyone"]
    caller = config["rateLimits"][0]["actions"][2]["extension"]["typedConfig"]
    assert (caller["descriptorKey"], caller["text"]) == ("caller", "connection.uri_san_peer_certificate")
    assert config["alwaysConsumeDefaultTokenBucket"] is False
    assert config["filterEnforced"]["defaultValue"]["numerator"] == 100
    assert config["responseHeadersToAdd"][0]["header"] == {"key": "x-agentic-retry-within", "value": "3600"}


def test_a_gateway_limit_sits_in_the_virtual_host_and_the_429_becomes_a_jsonrpc_error():
    proxy, port = _proxy()
    gated = ListenerView("l", 80, False, (), (), (_limit("burst", principal=ANY_SOURCE, requests=20, seconds=1),))
    config = LocalRateLimit().virtual_host_config(proxy, gated)
    assert list(config) == ["envoy.filters.http.local_ratelimit.gateway"]
    mappers = JsonRpcDenial().hcm_patch(port)["localReplyConfig"]["mappers"]
    limited = next(m for m in mappers
                   if m["filter"]["andFilter"]["filters"][0]["statusCodeFilter"]["comparison"]["value"][
                       "defaultValue"] == 429)
    error = limited["bodyFormatOverride"]["jsonFormat"]["error"]
    assert limited["statusCode"] == 200 and error["code"] == 429
    assert error["data"] == {"retryWithinSeconds": "%RESP(x-agentic-retry-within)%"}


def test_a_rate_limit_policy_reaches_the_gateway_role_through_the_graph():
    graph = quickstart_graph()
    graph.apply(ChangeSet(upserts=[parse_object(yaml.safe_load("""
apiVersion: governance.agentic-cp.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: calc-sum-limit, namespace: quickstart}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}]
  limits: [{name: calc-sum, source: {type: ServiceAccount, serviceAccount: {name: math-agent}},
            tools: [get-sum], requests: 3, per: Minute}]
"""))]))
    view = gateway_view(graph, QUICKSTART_GW)
    backend = view.listeners[0].routes[0].rule.backends[0].backend
    assert [(lim.ref, lim.principal, lim.tools, lim.requests, lim.seconds) for lim in backend.rate_limits] == [
        ("quickstart/calc-sum-limit#calc-sum", "spiffe://cluster.local/ns/quickstart/sa/math-agent", ("get-sum",),
         3, 60)]
    assert ResourceKey("RateLimitPolicy", "quickstart", "calc-sum-limit") in view.reads
