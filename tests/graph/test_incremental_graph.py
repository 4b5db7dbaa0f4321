"""The graph updated edit by edit equals the graph built from scratch (property-based), and a change
recomputes only what depends on it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.graph.explain import explain_gateway
from controlplane.graph.model import AuthorizationGraph, build
from controlplane.graph.request import Request

NS = ["a", "b"]
AGENTS = ["alice", "bob", "carol"]
TOOLS = ["get-sum", "echo", "grep"]
GATEWAYS = ["gw1", "gw2"]
BACKENDS = ["be1", "be2"]


def _gateway(ns, name, port, from_):
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
            "spec": {"gatewayClassName": "ours", "listeners": [
                {"name": "l", "protocol": "HTTPS", "port": port, "allowedRoutes": {"namespaces": {"from": from_}}}]}}


def _route(ns, name, gateway, gw_ns, backend, be_ns, prefix):
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name, "namespace": ns},
            "spec": {"parentRefs": [{"name": gateway, "namespace": gw_ns}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                                "backendRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend",
                                                 "name": backend, "namespace": be_ns}]}]}}


def _backend(ns, name, svc):
    return {"apiVersion": "agentic.networking.x-k8s.io/v0alpha0", "kind": "XBackend",
            "metadata": {"name": name, "namespace": ns}, "spec": {"mcp": {"serviceName": svc, "port": 3001}}}


def _policy(ns, name, kind, target, grants, base, created):
    group = "gateway.networking.k8s.io" if kind == "Gateway" else "agentic.networking.x-k8s.io"
    rules = [{"name": f"r{i}", "source": {"type": "ServiceAccount", "serviceAccount": {"name": agent}},
              "authorization": {"type": "Inline", "mcp": {
                  "mcpBaseProtocolMethodsOption": "MATCH_BASE_PROTOCOL_METHODS" if base else "SKIP_BASE_PROTOCOL_METHODS",
                  "methods": [{"name": "tools/call", "params": tools}]}}}
             for i, (agent, tools) in enumerate(grants)]
    meta = {"name": name, "namespace": ns, "creationTimestamp": f"2026-01-01T00:00:{created:02d}Z"}
    return {"apiVersion": "agentic.networking.x-k8s.io/v1alpha1", "kind": "XAccessPolicy", "metadata": meta,
            "spec": {"targetRefs": [{"group": group, "kind": kind, "name": target}], "action": "Allow",
                     "rules": rules}}


def _grant_svc(ns):
    return {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": "grant", "namespace": ns},
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": n}
                              for n in NS], "to": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend"}]}}


CLASS = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "ours"},
         "spec": {"controllerName": "sigs.k8s.io/kube-agentic-networking-controller"}}

ns_ = st.sampled_from(NS)
resources = st.one_of(
    st.builds(_gateway, ns_, st.sampled_from(GATEWAYS), st.sampled_from([443, 8443]), st.sampled_from(["Same", "All"])),
    st.builds(_route, ns_, st.sampled_from(["r1", "r2"]), st.sampled_from(GATEWAYS), ns_, st.sampled_from(BACKENDS),
              ns_, st.sampled_from(["/mcp", "/mcp/x", "/"])),
    st.builds(_backend, ns_, st.sampled_from(BACKENDS), st.sampled_from(["s1", "s2"])),
    st.builds(_policy, ns_, st.sampled_from([f"p{i}" for i in range(7)]), st.sampled_from(["Gateway", "XBackend"]),
              st.sampled_from(GATEWAYS + BACKENDS),
              st.lists(st.tuples(st.sampled_from(AGENTS), st.lists(st.sampled_from(TOOLS), max_size=2, unique=True)),
                       min_size=1, max_size=3, unique_by=lambda g: g[0]),
              st.booleans(), st.integers(0, 59)),
    st.builds(_grant_svc, ns_),
    st.just(CLASS),
)
edits = st.lists(st.tuples(st.sampled_from(["upsert", "upsert", "delete"]), resources), min_size=1, max_size=25)


def _decisions(graph):
    out = []
    for ns in NS:
        for gw in GATEWAYS:
            for agent in AGENTS:
                for tool in TOOLS + [None]:
                    for port in (443, 8443):
                        req = Request.build(source=f"spiffe://cluster.local/ns/{ns}/sa/{agent}", port=port,
                                            path="/mcp/x", tool=tool, mcp_method=None if tool else "initialize")
                        out.append(explain_gateway(graph, ResourceKey("Gateway", ns, gw), req).decision)
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits)
def test_incremental_equals_full_rebuild(script):
    graph = AuthorizationGraph()
    state = {}
    for op, doc in script:
        obj = parse_object(doc)
        if op == "upsert":
            state[obj.key] = obj
            graph.apply(ChangeSet(upserts=[obj]))
        else:
            state.pop(obj.key, None)
            graph.apply(ChangeSet(deletes=[obj.key]))
    full = build(state.values())
    assert graph.signature() == full.signature()
    assert _decisions(graph) == _decisions(full)


def test_a_policy_edit_recomputes_only_its_target_and_its_peers():
    docs = [CLASS, _gateway("a", "gw1", 443, "Same"), _gateway("a", "gw2", 443, "Same"),
            _backend("a", "be1", "s1"), _route("a", "r1", "gw1", "a", "be1", "a", "/mcp"),
            _policy("a", "p1", "XBackend", "be1", [("alice", ["echo"])], True, 1),
            _policy("a", "p2", "Gateway", "gw2", [("bob", ["echo"])], True, 2)]
    graph = build(parse_object(d) for d in docs)
    changed = parse_object(_policy("a", "p1", "XBackend", "be1", [("alice", ["get-sum"])], True, 1))
    recomputed = graph.apply(ChangeSet(upserts=[changed]))
    assert recomputed == {changed.key}
    req = Request.build(source="spiffe://cluster.local/ns/a/sa/alice", port=443, path="/mcp", tool="get-sum")
    assert explain_gateway(graph, ResourceKey("Gateway", "a", "gw1"), req).decision == "allow"
    recomputed = graph.apply(ChangeSet(upserts=[parse_object(_gateway("a", "gw1", 8443, "Same"))]))
    assert recomputed == {ResourceKey("Gateway", "a", "gw1"), ResourceKey("HTTPRoute", "a", "r1")}
    assert graph.apply(ChangeSet(upserts=[changed])) == set()  # unchanged object: nothing recomputed
