"""Which proxies a change can reach: the dependency index behind an incremental publish.

Why: building a proxy's view to learn whether it read a change costs as much as building it, so a
publish that asks every proxy grows with the mesh. This module answers from the graph instead.

Why it never misses: a view (graph/view.py) sees only node attributes and edges, each owned by one
fragment, and records the owner's key of everything it visits. So a view can differ only if a
recomputed fragment (a key in `changed`) owns something it visits now or visited last time:
- last time: the proxies whose previous `reads` hold a changed key, or an *anchor* of one (a node whose
  edge set the changed fragment rewrote: a policy's targets, an XBackend's Service, a Service's
  XBackends and workloads, before and after the change: a deleted policy's old target loses it), found
  in the reverse index of every proxy's last reads;
- now: the proxies whose walk through the graph after the change reaches a changed key or anchor, found
  by walking the same edges backwards (route -> listener -> Gateway, backend -> rule -> Gateway, Service
  -> serving workload, XBackend -> the workloads `view.reaching` says may reach it).
Proxies with no previous build are the caller's to build; proxies that vanished, the caller's to drop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from controlplane.api.base import ResourceKey
from controlplane.graph import fragments
from controlplane.graph.guardrails import guardrail_node
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.rate_limits import rate_limit_node
from controlplane.graph.view import egress_gateways, programmed_listener, reaching

ProxyKey = ResourceKey  # a Gateway's key, or a workload's ServiceAccount key


class DependencyIndex:
    """Every proxy's last reads, inverted: object key -> the proxies whose last build read it."""

    def __init__(self) -> None:
        self._readers: dict[ResourceKey, set[ProxyKey]] = defaultdict(set)
        self._reads: dict[ProxyKey, frozenset[ResourceKey]] = {}
        self._anchors: dict[ResourceKey, set[ResourceKey]] = {}  # as of the last publish

    def remember_all(self, graph: AuthorizationGraph) -> None:
        """Every object's anchors, after a full publish: what a later change must compare against."""
        self._anchors = {key: found for key in graph.objects if (found := anchors(graph, key))}

    def record(self, proxy: ProxyKey, reads: Iterable[ResourceKey]) -> None:
        """What the proxy's newest build read (replacing what it read before)."""
        self.forget(proxy)
        self._reads[proxy] = frozenset(reads)
        for key in self._reads[proxy]:
            self._readers[key].add(proxy)

    def forget(self, proxy: ProxyKey) -> None:
        for key in self._reads.pop(proxy, ()):
            readers = self._readers[key]
            readers.discard(proxy)
            if not readers:
                del self._readers[key]

    def known(self, proxy: ProxyKey) -> bool:
        return proxy in self._reads

    def readers(self, keys: Iterable[ResourceKey]) -> set[ProxyKey]:
        return {proxy for key in keys for proxy in self._readers.get(key, ())}

    def affected(self, graph: AuthorizationGraph, changed: set[ResourceKey]) -> set[ProxyKey]:
        """The proxies whose view can differ after `changed` (the fragments recomputed, with the
        ServiceAccounts and Pods touched) was applied to `graph`: exact or larger, never smaller."""
        touched = set(changed)
        for key in changed:
            now = anchors(graph, key)
            touched |= now | self._anchors.pop(key, set())
            if now:
                self._anchors[key] = now
        return self.readers(touched) | {proxy for key in touched for proxy in current_readers(graph, key)}


def anchors(graph: AuthorizationGraph, key: ResourceKey) -> set[ResourceKey]:
    """The objects whose nodes the fragment of `key` attaches edges to, in the graph after the change."""
    nx = graph.graph
    match key.kind:
        case "XAccessPolicy":
            return _targets(graph, fragments.policy_node(key), "attached")
        case "RateLimitPolicy":
            return _targets(graph, rate_limit_node(key), "rate_limited")
        case "GuardrailPolicy":
            return _targets(graph, guardrail_node(key), "guarded")
        case "XBackend":
            return _targets(graph, fragments.backend_node(key), "service")
        case "Service":
            sid = fragments.backend_node(key)
            if sid not in nx:
                return set()
            return {nx.nodes[u]["key"] for u, _, data in nx.in_edges(sid, data=True)
                    if data["rel"] in ("service", "serves") and "key" in nx.nodes[u]}
        case "Pod":
            pod = graph.get(key)
            account = getattr(getattr(pod, "spec", None), "service_account_name", None)
            return {ResourceKey("ServiceAccount", key.namespace, account)} if account else set()
    return set()


def current_readers(graph: AuthorizationGraph, key: ResourceKey) -> set[ProxyKey]:
    """The proxies whose view, built from `graph` now, would visit what `key` owns."""
    match key.kind:
        case "Gateway":
            return {key} | _reaching_through_egress(graph, key)
        case "ServiceAccount":
            return {key}
        case "HTTPRoute":
            return _gateways_of_rules(graph, _rule_nodes(graph, key))
        case "XBackend" | "Service":
            return _readers_of_backend(graph, key)
    return set()


def _targets(graph: AuthorizationGraph, node: str, rel: str) -> set[ResourceKey]:
    nx = graph.graph
    if node not in nx:
        return set()
    return {nx.nodes[v]["key"] for _, v, data in nx.out_edges(node, data=True)
            if data["rel"] == rel and "key" in nx.nodes[v]}


def _rule_nodes(graph: AuthorizationGraph, route: ResourceKey) -> list[str]:
    obj = graph.get(route)
    count = len(getattr(getattr(obj, "spec", None), "rules", None) or ())
    return [fragments.route_node(route, index) for index in range(count)]


def _gateways_of_rules(graph: AuthorizationGraph, rules: Iterable[str]) -> set[ProxyKey]:
    nx = graph.graph
    found = set()
    for rid in rules:
        if rid not in nx:
            continue
        for lid, _, data in nx.in_edges(rid, data=True):
            if data["rel"] == "route" and programmed_listener(graph, lid):
                found.add(nx.nodes[lid]["gateway"])
    return found


def _readers_of_backend(graph: AuthorizationGraph, backend: ResourceKey) -> set[ProxyKey]:
    """Gateways routing to it; workloads serving it (inbound); workloads that may reach it (outbound)."""
    nx = graph.graph
    bid = fragments.backend_node(backend)
    if bid not in nx:
        return set()
    rules = [rid for rid, _, data in nx.in_edges(bid, data=True) if data["rel"] == "backend"]
    found = _gateways_of_rules(graph, rules)
    services = [bid] if backend.kind == "Service" else \
        [sid for _, sid, data in nx.out_edges(bid, data=True) if data["rel"] == "service"]
    for sid in services:
        found |= {nx.nodes[wid]["key"] for wid, _, data in nx.in_edges(sid, data=True) if data["rel"] == "serves"}
    if backend.kind == "XBackend":
        found |= reaching(graph, backend)
    return found


def _reaching_through_egress(graph: AuthorizationGraph, gateway: ResourceKey) -> set[ProxyKey]:
    """The workloads that may reach a hostname XBackend an egress Gateway serves: their sidecars route it
    there (a Gateway that just became an egress proxy has no readers among them yet)."""
    if gateway not in egress_gateways(graph):
        return set()
    return {proxy for obj in graph.of_kind("XBackend")
            if obj.key.namespace == gateway.namespace and getattr(obj.spec.mcp, "hostname", None)
            for proxy in reaching(graph, obj.key)}
