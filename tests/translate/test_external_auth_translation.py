"""ExternalAuth policies -> Envoy config: the shapes, the clusters of the authorizers, and the Listener left alone.

The quickstart plus an authorizer Service and two ExternalAuth policies: one on the XBackend (gRPC, for
math-agent only, body forwarded) and one on the Gateway (HTTP, no rules, its Service missing). The whole
translation is the golden case testdata/in/external-auth.yaml (test_golden.py), also checked by
`envoy --mode validate`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.graph import fragments
from controlplane.graph.model import AuthorizationGraph, build
from controlplane.sources.directory import DirectorySource
from controlplane.translate.features.rbac import fully_parsed
from controlplane.translate.roles.gateway import gateway_resources
from controlplane.xds import resources as types

ROOT = Path(__file__).resolve().parents[2]
GW = ResourceKey("Gateway", "quickstart", "agent-gateway")
GRPC_CLUSTER = "ext-authz/grpc/quickstart/authz/50051"
HTTP_CLUSTER = "ext-authz/http/quickstart/authz-http/8080"
MATH = "spiffe://cluster.local/ns/quickstart/sa/math-agent"

AUTHZ_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: authz, namespace: quickstart}
spec: {ports: [{name: grpc, port: 50051}]}
"""
AUTHZ_SLICE = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: authz-1, namespace: quickstart, labels: {kubernetes.io/service-name: authz}}
addressType: IPv4
endpoints: [{addresses: ["10.0.0.7"], conditions: {ready: true}}]
ports: [{name: grpc, port: 9191}]
"""
BACKEND_EXTAUTH = """
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: backend-extauth, namespace: quickstart}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}]
  action: ExternalAuth
  externalAuth:
    protocol: GRPC
    grpc: {}
    backendRef: {name: authz, port: 50051}
    forwardBody: {maxSize: 4096}
  rules:
    - name: math-only
      source: {type: ServiceAccount, serviceAccount: {name: math-agent}}
"""
GATEWAY_EXTAUTH = """
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: gateway-extauth, namespace: quickstart}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agent-gateway}]
  action: ExternalAuth
  externalAuth:
    protocol: HTTP
    http: {path: /check, allowedResponseHeaders: [x-user]}
    backendRef: {name: authz-http, port: 8080}
"""


def _objects(*texts: str) -> list:
    return [parse_object(yaml.safe_load(t)) for t in texts]


def _graph(*texts: str) -> AuthorizationGraph:
    graph = AuthorizationGraph()
    graph.apply(DirectorySource(ROOT / "examples" / "quickstart").load())
    graph.apply(ChangeSet(upserts=_objects(*texts)))
    return graph


def _full() -> AuthorizationGraph:
    return _graph(AUTHZ_SERVICE, AUTHZ_SLICE, BACKEND_EXTAUTH, GATEWAY_EXTAUTH)


def _by_name(graph: AuthorizationGraph) -> dict:
    return {(r.type_url, r.name): r.payload for r in gateway_resources(graph, GW, secrets=[])}


def _route(resources: dict) -> dict:
    return resources[(types.ROUTE, "route-10443")]


def test_backend_level_external_auth_sits_on_the_weighted_cluster():
    cluster = _route(_by_name(_full()))["virtualHosts"][0]["routes"][0]["route"]["weightedClusters"]["clusters"][0]
    configs = cluster["typedPerFilterConfig"]
    assert set(configs) == {"envoy.filters.http.rbac.backend", "envoy.filters.http.rbac.backend_extauth",
                            "envoy.filters.http.ext_authz.backend"}
    rbac = configs["envoy.filters.http.rbac.backend_extauth"]["rbac"]
    assert rbac["rules"] == {"action": "ALLOW", "policies": {"allow-all": {"permissions": [fully_parsed()],
                                                                           "principals": [{"any": True}]}}}
    assert rbac["shadowRulesStatPrefix"] == "backend_extauth_"
    assert rbac["shadowRules"]["policies"] == {"quickstart/backend-extauth#math-only": {
        "permissions": [fully_parsed()], "principals": [{"authenticated": {"principalName": {"exact": MATH}}}]}}
    settings = configs["envoy.filters.http.ext_authz.backend"]["checkSettings"]
    assert settings == {"grpcService": {"envoyGrpc": {"clusterName": GRPC_CLUSTER,
                                                      "authority": "authz.quickstart.svc.cluster.local"},
                                        "timeout": "2s"},
                        "withRequestBody": {"maxRequestBytes": 4096, "allowPartialMessage": False}}


def test_gateway_level_external_auth_sits_on_the_virtual_host():
    configs = _route(_by_name(_full()))["virtualHosts"][0]["typedPerFilterConfig"]
    assert set(configs) == {"envoy.filters.http.rbac.gateway", "envoy.filters.http.rbac.gateway_extauth",
                            "envoy.filters.http.ext_authz.gateway",
                            "envoy.filters.http.ext_proc.tools_list"}  # the hop, for the tools/list filter
    shadow = configs["envoy.filters.http.rbac.gateway_extauth"]["rbac"]["shadowRules"]
    assert shadow["policies"] == {"quickstart/gateway-extauth#*": {"permissions": [fully_parsed()],
                                                                  "principals": [{"any": True}]}}
    service = configs["envoy.filters.http.ext_authz.gateway"]["checkSettings"]["httpService"]
    assert service["serverUri"]["cluster"] == HTTP_CLUSTER and service["pathPrefix"] == "/check"
    assert service["authorizationResponse"]["allowedUpstreamHeaders"]["patterns"] == [
        {"exact": "x-user", "ignoreCase": True}]


def test_listener_filters_run_external_auth_before_allow_and_only_when_delegated():
    listener = _by_name(_full())[(types.LISTENER, "listener-10443")]
    hcm = listener["filterChains"][0]["filters"][0]["typedConfig"]
    assert [f["name"] for f in hcm["httpFilters"]] == [
        "envoy.filters.http.mcp", "envoy.filters.http.rbac.gateway_extauth", "envoy.filters.http.rbac.backend_extauth",
        "envoy.filters.http.ext_authz.gateway", "envoy.filters.http.ext_authz.backend",
        "envoy.filters.http.rbac.gateway", "envoy.filters.http.rbac.backend",
        "envoy.filters.http.local_ratelimit.gateway", "envoy.filters.http.local_ratelimit.backend",
        "envoy.filters.http.ext_proc.guardrail_gateway", "envoy.filters.http.ext_proc.guardrail_backend",
        "envoy.filters.http.ext_proc.tools_list", "envoy.filters.http.router"]
    ext_authz = {f["name"]: f["typedConfig"] for f in hcm["httpFilters"] if "ext_authz" in f["name"]}
    for level, config in (("gateway", ext_authz["envoy.filters.http.ext_authz.gateway"]),
                          ("backend", ext_authz["envoy.filters.http.ext_authz.backend"])):
        assert config["filterEnabledMetadata"]["path"] == [{"key": f"{level}_extauth_shadow_effective_policy_id"}]
        assert config["failureModeAllow"] is False
        assert config["metadataContextNamespaces"] == ["envoy.filters.http.mcp"]


def test_authorizer_clusters_grpc_over_http2_and_a_missing_service_has_no_endpoints():
    resources = _by_name(_full())
    grpc = resources[(types.CLUSTER, GRPC_CLUSTER)]
    options = grpc["typedExtensionProtocolOptions"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["explicitHttpConfig"] == {"http2ProtocolOptions": {}}
    assert "typedExtensionProtocolOptions" not in resources[(types.CLUSTER, HTTP_CLUSTER)]
    endpoints = resources[(types.ENDPOINT, GRPC_CLUSTER)]["endpoints"][0]["lbEndpoints"]
    assert [e["endpoint"]["address"]["socketAddress"] for e in endpoints] == [{"address": "10.0.0.7",
                                                                              "portValue": 9191}]
    assert resources[(types.ENDPOINT, HTTP_CLUSTER)] == {"clusterName": HTTP_CLUSTER, "endpoints": []}


def test_a_policy_naming_a_missing_service_is_still_accepted():
    graph = _full()
    node = graph.node(fragments.policy_node(ResourceKey("XAccessPolicy", "quickstart", "gateway-extauth")))
    assert node["effective"] and all(cond.accepted for *_, cond in node["conditions"])


def test_switching_external_auth_on_never_touches_the_listener():
    graph = _graph(AUTHZ_SERVICE, AUTHZ_SLICE)
    before = _by_name(graph)
    graph.apply(ChangeSet(upserts=_objects(BACKEND_EXTAUTH, GATEWAY_EXTAUTH)))
    after = _by_name(graph)
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert changed == [(types.CLUSTER, GRPC_CLUSTER), (types.CLUSTER, HTTP_CLUSTER), (types.ENDPOINT, GRPC_CLUSTER),
                       (types.ENDPOINT, HTTP_CLUSTER), (types.ROUTE, "route-10443")]


def test_authorizer_endpoints_follow_endpoint_slices_incrementally():
    graph = _graph(AUTHZ_SERVICE, BACKEND_EXTAUTH)
    assert _by_name(graph)[(types.ENDPOINT, GRPC_CLUSTER)]["endpoints"] == []
    graph.apply(ChangeSet(upserts=_objects(AUTHZ_SLICE)))
    assert _by_name(graph)[(types.ENDPOINT, GRPC_CLUSTER)]["endpoints"] != []
    rebuilt = build([*graph.objects.values()])
    assert graph.signature() == rebuilt.signature()
    graph.apply(ChangeSet(deletes=[ResourceKey("Service", "quickstart", "authz")]))
    assert _by_name(graph)[(types.ENDPOINT, GRPC_CLUSTER)]["endpoints"] == []  # fail closed
