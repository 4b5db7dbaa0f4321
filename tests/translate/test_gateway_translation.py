"""Translation of Gateways to Envoy resources: what changes when a policy changes, and serializing once.

The whole translation of the quickstart (and of the Gateway API scenario) is a golden case in
test_golden.py (testdata/in/quickstart.yaml, gateway-api.yaml), also checked by `envoy --mode validate`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.graph.model import AuthorizationGraph, build
from controlplane.identity import sds
from controlplane.identity.ca import CertificateAuthority
from controlplane.sources.directory import DirectorySource
from controlplane.translate.roles.gateway import gateway_resources
from controlplane.xds import resources as types
from controlplane.xds.resources import Resource
from controlplane.xds.serialize import SerializingCache

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART_GW = ResourceKey("Gateway", "quickstart", "agent-gateway")


def quickstart_graph() -> AuthorizationGraph:
    graph = AuthorizationGraph()
    graph.apply(DirectorySource(ROOT / "examples" / "quickstart").load())
    return graph


def test_policy_lives_in_routes_never_in_listeners():
    graph = quickstart_graph()
    before = {(r.type_url, r.name): r.payload for r in gateway_resources(graph, QUICKSTART_GW, secrets=[])}
    policy = next(o for o in graph.of_kind("XAccessPolicy") if o.name == "everything-tool-grants")
    doc = policy.model_dump(by_alias=True, exclude_none=True, mode="json")
    doc["spec"]["rules"][1]["authorization"]["mcp"]["methods"][0]["params"] = ["echo"]
    graph.apply(ChangeSet(upserts=[parse_object(doc)]))
    after = {(r.type_url, r.name): r.payload for r in gateway_resources(graph, QUICKSTART_GW, secrets=[])}
    changed = sorted(key for key in before if before[key] != after[key])
    assert changed == [(types.ROUTE, "route-10443")]


def test_serializing_cache_reuses_unchanged_resources():
    graph = quickstart_graph()
    cache = SerializingCache()
    cache.begin()
    first = [cache.get(r) for r in gateway_resources(graph, QUICKSTART_GW, secrets=[])]
    cache.end()
    cache.begin()
    second = [cache.get(r) for r in gateway_resources(graph, QUICKSTART_GW, secrets=[])]
    cache.end()
    assert [x.version for x in first] == [x.version for x in second]
    assert all(a is b for a, b in zip(first, second)) and cache.misses == len(first)


def _secrets() -> list[Resource]:
    ca = CertificateAuthority.create(trust_domain="cluster.local")
    ident = ca.issue("spiffe://cluster.local/ns/quickstart/sa/agent-gateway")
    return [Resource(types.SECRET, sds.SERVER_CERT_SECRET, sds.tls_certificate_secret(sds.SERVER_CERT_SECRET, ident)),
            Resource(types.SECRET, sds.TRUST_BUNDLE_SECRET,
                     sds.validation_context_secret(sds.TRUST_BUNDLE_SECRET, ca.bundle_pem))]


def _gateway_api_graph() -> tuple[AuthorizationGraph, ResourceKey]:
    docs = list(yaml.safe_load_all((ROOT / "tests" / "manifests" / "valid" / "backends-and-gateway-api.yaml")
                                   .read_text()))
    docs.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                 "metadata": {"name": "kube-agentic-networking"},
                 "spec": {"controllerName": "sigs.k8s.io/kube-agentic-networking-controller"}})
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mcp-svc", "namespace": "team-a"},
                 "spec": {"ports": [{"port": 3001}]}})
    docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"team": "a"}}})
    policies = yaml.safe_load_all((ROOT / "tests" / "manifests" / "valid" / "policies-v1alpha1.yaml").read_text())
    docs += [p for p in policies if p["metadata"]["name"] == "no-rules"]
    return build(parse_object(d) for d in docs), ResourceKey("Gateway", "team-a", "gw")


def test_route_configuration_assembled_from_parts_equals_whole_serialization():
    from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

    from controlplane.xds.serialize import to_xds_resource

    graph, key = _gateway_api_graph()
    for resources in (gateway_resources(quickstart_graph(), QUICKSTART_GW, secrets=[]),
                      gateway_resources(graph, key, secrets=[])):
        for resource in (r for r in resources if r.type_url == types.ROUTE):
            assembled = SerializingCache().get(resource)
            whole = to_xds_resource(resource)
            assert RouteConfiguration.parse(assembled.body) == RouteConfiguration.parse(whole.body)
