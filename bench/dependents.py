"""Issue 10's dependency index: a one-policy edit's publish, deciding whom to rebuild the old way (build every
Gateway's view to learn its reads; every sidecar on any XBackend/Service/policy change) and with the index,
side by side in one run on the same mesh: G Gateways, each with one route to its own XBackend (behind a
Service with one Pod, so every backend has a workload) and one 3-rule policy, plus 3 agent workloads.

`python -m bench.dependents [GATEWAYS...]` prints JSON; seconds are for orientation, read the ratio.
"""

from __future__ import annotations

import gc
import json
import sys

from bench.hot_spots import timed
from bench.incremental import CLASS, policy
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.controller import Publisher
from controlplane.graph.model import build
from controlplane.graph.view import gateway_view, workloads
from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.rotation import CertificateManager
from controlplane.xds.cache import SnapshotCache

OLD_SIDECAR_INPUTS = {"XBackend", "Service", "XAccessPolicy", "RateLimitPolicy", "ServiceAccount", "Pod"}


def mesh(gateways: int) -> list:
    docs = [CLASS] + [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": f"agent{a}", "namespace": "ns"}}
                      for a in range(3)]
    for i in range(gateways):
        docs += [
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": f"gw{i}", "namespace": "ns"},
             "spec": {"gatewayClassName": "c", "listeners": [{"name": "l", "protocol": "HTTPS", "port": 443}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc{i}", "namespace": "ns"},
             "spec": {"ports": [{"name": "http", "port": 3001}]}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod{i}", "namespace": "ns"},
             "spec": {"serviceAccountName": f"tool{i}"}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"svc{i}-x", "namespace": "ns", "labels": {"kubernetes.io/service-name": f"svc{i}"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 3001}],
             "endpoints": [{"addresses": [f"10.{i // 250}.{i % 250}.1"], "conditions": {"ready": True},
                            "targetRef": {"kind": "Pod", "name": f"pod{i}", "namespace": "ns"}}]},
            {"apiVersion": "agentic.networking.x-k8s.io/v0alpha0", "kind": "XBackend", "metadata": {"name": f"be{i}", "namespace": "ns"},
             "spec": {"mcp": {"serviceName": f"svc{i}", "port": 3001}}},
            {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": f"r{i}", "namespace": "ns"},
             "spec": {"parentRefs": [{"name": f"gw{i}"}], "rules": [{
                 "matches": [{"path": {"type": "PathPrefix", "value": "/mcp"}}],
                 "backendRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend", "name": f"be{i}"}]}]}},
            policy(i, 10)]
    return [parse_object(d) for d in docs]


class OldDecision:
    """The decision as it was before the index: every Gateway's view built to compare its reads with the change."""

    def __init__(self, publisher: Publisher):
        self.publisher = publisher

    def affected(self, graph, changed):
        found = set()
        for key in (gw.key for gw in graph.of_kind("Gateway")):
            view = gateway_view(graph, key)
            previous = self.publisher.index._reads.get(key, frozenset())
            if view is not None and changed & (set(view.reads) | previous):
                found.add(key)
        if any(key.kind in OLD_SIDECAR_INPUTS for key in changed):
            found |= set(workloads(graph))
        return found


def side_by_side(gateways: int) -> dict:
    graph = build(mesh(gateways))
    publisher = Publisher(graph=graph, cache=SnapshotCache(),
                          certificates=CertificateManager(CertificateAuthority.create(trust_domain="cluster.local")))
    cold = timed(publisher.publish, repeat=1)
    original = graph.get(parse_object(policy(0, 10)).key)
    edited = parse_object(policy(0, 10, tag="x"))
    index, old = publisher.index, OldDecision(publisher)
    state = {"flip": False, "built": {}}

    def edit(label: str, decide) -> None:
        state["flip"] = not state["flip"]
        changed = graph.apply(ChangeSet(upserts=[edited if state["flip"] else original]))
        publisher.index.affected = decide
        try:
            publisher.publish(changed)
        finally:
            del publisher.index.affected
        state["built"][label] = publisher.views_built

    before = timed(lambda: edit("before", old.affected), repeat=3)
    after = timed(lambda: edit("after", index.affected), repeat=5)
    gc.collect()
    return {"gateways": gateways, "proxies": len(publisher.published), "cold_publish_s": round(cold, 3),
            "edit_publish_before_s": round(before, 4), "edit_publish_after_s": round(after, 4),
            "speedup": round(before / after, 1), "views_built_per_edit_before": state["built"]["before"],
            "views_built_per_edit_after": state["built"]["after"]}


def run(sizes: list[int]) -> list[dict]:
    return [side_by_side(n) for n in sizes]


if __name__ == "__main__":
    print(json.dumps(run([int(a) for a in sys.argv[1:]] or [100]), indent=2))
