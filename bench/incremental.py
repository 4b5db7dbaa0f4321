"""Graph and translation incrementality: a one-policy edit against a full rebuild, side by side in one run.

Figures are reported as ratios of runs made in the same process moments apart, because these
machines are shared and noisy; absolute seconds are printed too, for orientation only.
"""

from __future__ import annotations

import tracemalloc

from bench.hot_spots import timed
from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.graph.model import build
from controlplane.translate.roles.gateway import gateway_resources
from controlplane.xds.serialize import SerializingCache

CLASS = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "c"},
         "spec": {"controllerName": "sigs.k8s.io/kube-agentic-networking-controller"}}


def mesh(backends: int, tools_per_rule: int, *, tag: str = "") -> list:
    """One Gateway; `backends` XBackends, each behind its own route and with one 3-rule policy."""
    docs = [CLASS, {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                    "metadata": {"name": "gw", "namespace": "ns"},
                    "spec": {"gatewayClassName": "c", "listeners": [{"name": "l", "protocol": "HTTPS", "port": 443}]}}]
    for i in range(backends):
        docs.append({"apiVersion": "agentic.networking.x-k8s.io/v0alpha0", "kind": "XBackend",
                     "metadata": {"name": f"be{i}", "namespace": "ns"},
                     "spec": {"mcp": {"serviceName": f"svc{i}", "port": 3001}}})
        docs.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                     "metadata": {"name": f"r{i}", "namespace": "ns"},
                     "spec": {"parentRefs": [{"name": "gw"}], "rules": [{
                         "matches": [{"path": {"type": "PathPrefix", "value": f"/mcp/{i}"}}],
                         "backendRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend",
                                          "name": f"be{i}"}]}]}})
        docs.append(policy(i, tools_per_rule, tag=tag if i == 0 else ""))
    return [parse_object(d) for d in docs]


def policy(i: int, tools: int, *, tag: str = "") -> dict:
    rules = [{"name": f"agent{a}", "source": {"type": "ServiceAccount", "serviceAccount": {"name": f"agent{a}"}},
              "authorization": {"type": "Inline", "mcp": {
                  "mcpBaseProtocolMethodsOption": "MATCH_BASE_PROTOCOL_METHODS",
                  "methods": [{"name": "tools/call", "params": [f"t{t}{tag}"[:20] for t in range(tools)]}]}}}
             for a in range(3)]
    return {"apiVersion": "agentic.networking.x-k8s.io/v1alpha1", "kind": "XAccessPolicy",
            "metadata": {"name": f"p{i}", "namespace": "ns"},
            "spec": {"targetRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend", "name": f"be{i}"}],
                     "action": "Allow", "rules": rules}}


def bench_graph(backends: int) -> dict:
    objects = mesh(backends, 10)
    edited = parse_object(policy(0, 10, tag="x"))
    original = next(o for o in objects if o.key == edited.key)
    graph = build(objects)
    state = {"flip": False}

    def incremental():
        state["flip"] = not state["flip"]
        graph.apply(ChangeSet(upserts=[edited if state["flip"] else original]))

    full = timed(lambda: build(objects), repeat=3)
    inc = timed(incremental, repeat=6)
    return {"backends": backends, "full_build_s": round(full, 5), "one_policy_edit_s": round(inc, 6),
            "speedup": round(full / inc, 1), "fragments_recomputed_per_edit": len(graph.last_recomputed)}


def bench_translate(backends: int) -> dict:
    objects = mesh(backends, 10)
    graph = build(objects)
    gw = ResourceKey("Gateway", "ns", "gw")
    cache = SerializingCache()

    def publish():
        cache.begin()
        out = [cache.get(r) for r in gateway_resources(graph, gw, secrets=[])]
        cache.end()
        return out

    cold = timed(lambda: (SerializingCache.__init__(cache), publish()), repeat=1)
    publish()
    edited = parse_object(policy(0, 10, tag="x"))
    original = next(o for o in objects if o.key == edited.key)
    state = {"flip": False}

    def edit_and_publish():
        state["flip"] = not state["flip"]
        graph.apply(ChangeSet(upserts=[edited if state["flip"] else original]))
        publish()

    warm = timed(edit_and_publish, repeat=4)
    size = sum(len(r.body) for r in publish())
    return {"backends": backends, "config_bytes": size, "cold_publish_s": round(cold, 4),
            "one_policy_edit_publish_s": round(warm, 4), "speedup": round(cold / warm, 1),
            "serialized_per_edit": "the edited route only: route configurations are assembled from cached routes"}


def bench_many_gateways(gateways: int) -> dict:
    """A policy edit behind one of many Gateways: a publish that rebuilds all of them vs the incremental one."""
    from controlplane.controller import Publisher
    from controlplane.identity.ca import CertificateAuthority
    from controlplane.identity.rotation import CertificateManager
    from controlplane.xds.cache import SnapshotCache

    objects = [parse_object(CLASS)]
    for g in range(gateways):
        objects += [o for o in mesh(3, 10) if o.kind != "GatewayClass"]
        objects[-10:] = [_renamed(o, f"ns{g}") for o in objects[-10:]]
    graph = build(objects)
    ca = CertificateAuthority.create(trust_domain="cluster.local")
    publisher = Publisher(graph=graph, cache=SnapshotCache(), certificates=CertificateManager(ca))
    publisher.publish()
    edited = _renamed(parse_object(policy(0, 10, tag="x")), "ns0")
    original = next(o for o in objects if o.key == edited.key)
    state = {"flip": False}

    def edit(incremental: bool):
        state["flip"] = not state["flip"]
        changed = graph.apply(ChangeSet(upserts=[edited if state["flip"] else original]))
        publisher.publish(changed if incremental else None)

    full = timed(lambda: edit(False), repeat=3)
    inc = timed(lambda: edit(True), repeat=3)
    return {"gateways": gateways, "publish_all_s": round(full, 4), "publish_affected_s": round(inc, 4),
            "speedup": round(full / inc, 1)}


def _renamed(obj, namespace: str):
    data = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["metadata"]["namespace"] = namespace
    return parse_object(data)


def bench_memory(backends: int) -> dict:
    tracemalloc.start()
    graph = build(mesh(backends, 10))
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"backends": backends, "graph_nodes": graph.graph.number_of_nodes(),
            "graph_edges": graph.graph.number_of_edges(), "traced_mib": round(current / 2**20, 2),
            "peak_mib": round(peak / 2**20, 2)}


def run(sizes: list[int]) -> dict:
    return {"graph": [bench_graph(n) for n in sizes], "translate": [bench_translate(n) for n in sizes],
            "many_gateways": [bench_many_gateways(20)], "memory": [bench_memory(n) for n in sizes]}
