"""Bad input never crashes the control plane: parsing raises only InvalidResource, and any valid set of
resources translates and serializes (property-based, the analogue of Istio's and Envoy Gateway's fuzzers)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.api.base import ResourceKey
from controlplane.api.registry import InvalidResource, parse_object
from controlplane.graph.model import build
from controlplane.translate.roles.gateway import gateway_resources
from controlplane.xds.serialize import SerializingCache
from tests.graph.test_incremental_graph import GATEWAYS, NS, resources

KINDS = [("agentic.networking.x-k8s.io/v1alpha1", "XAccessPolicy"), ("agentic.networking.x-k8s.io/v0alpha0",
         "XAccessPolicy"), ("agentic.networking.x-k8s.io/v0alpha0", "XBackend"),
         ("gateway.networking.k8s.io/v1", "Gateway"), ("gateway.networking.k8s.io/v1", "HTTPRoute"),
         ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"), ("v1", "Service"),
         ("discovery.k8s.io/v1", "EndpointSlice")]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 70000), st.text(max_size=12),
                    st.sampled_from(["Allow", "ExternalAuth", "tools/call", "Inline", "CEL", "/mcp", "SPIFFE"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["targetRefs", "rules", "name", "kind", "group", "spec", "mcp", "port",
                                     "authorization", "source", "type", "methods", "params", "listeners",
                                     "parentRefs", "backendRefs", "matches", "path", "value", "cel",
                                     "expression", "serviceName", "hostname", "action", "externalAuth"]),
                    inner, max_size=5)), max_leaves=25)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KINDS), json_values)
def test_parsing_arbitrary_documents_raises_only_invalid_resource(kind, spec):
    api_version, kind_name = kind
    doc = {"apiVersion": api_version, "kind": kind_name, "metadata": {"name": "x", "namespace": "ns"}, "spec": spec}
    try:
        parse_object(doc)
    except InvalidResource as err:
        assert err.problems and all(p.kind == kind_name for p in err.problems)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(resources, min_size=1, max_size=20))
def test_any_valid_resource_set_translates_and_serializes(docs):
    objects = {}
    for doc in docs:
        obj = parse_object(doc)
        objects[obj.key] = obj
    graph = build(objects.values())
    cache = SerializingCache()
    cache.begin()
    for ns in NS:
        for name in GATEWAYS:
            for resource in gateway_resources(graph, ResourceKey("Gateway", ns, name), secrets=[]):
                assert cache.get(resource).body is not None
    cache.end()
