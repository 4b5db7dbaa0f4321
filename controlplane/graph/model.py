"""The authorization graph (networkx), kept current incrementally.

Each Gateway, HTTPRoute, XBackend, Service and XAccessPolicy owns a fragment of the graph (see
fragments.py). While a fragment is computed, every object and index it reads is recorded; when a
change set arrives, only the fragments that read something that changed are recomputed, and their
nodes and edges are swapped in place. Policy admission (limits per target) is one more computed
piece per target, recomputed when any policy naming that target changes. A full rebuild is the same
code applied to an empty graph, which is what the property tests compare against.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import networkx as nx

from controlplane.api.agentic import XAccessPolicy, XBackend
from controlplane.api.base import Resource, ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.core import EndpointSlice, Service
from controlplane.api.gateway import OUR_CONTROLLER, Gateway, HTTPRoute, ReferenceGrant
from controlplane.api.governance import GuardrailPolicy, RateLimitPolicy
from controlplane.graph import fragments, guardrails, rate_limits
from controlplane.graph.admission import Condition, admit
from controlplane.graph.rules import DEFAULT_TRUST_DOMAIN

FRAGMENT_BUILDERS = {
    Gateway: fragments.gateway_fragment,
    HTTPRoute: fragments.route_fragment,
    XBackend: fragments.xbackend_fragment,
    Service: fragments.service_fragment,
    XAccessPolicy: fragments.policy_fragment,
    RateLimitPolicy: rate_limits.rate_limit_fragment,
    GuardrailPolicy: guardrails.guardrail_fragment,
}
# Fragments that read the outcome of others are computed after them.
_PHASE = {"Gateway": 0, "XBackend": 0, "Service": 0, "HTTPRoute": 0, "XAccessPolicy": 1, "RateLimitPolicy": 1,
          "GuardrailPolicy": 1}


def index_names(obj: Resource) -> set[tuple]:
    """The indexes an object belongs to, so that fragments which listed an index see it change."""
    if isinstance(obj, ReferenceGrant):
        return {("grants-in", obj.namespace)}
    if isinstance(obj, EndpointSlice) and obj.service_name:
        return {("slices-for", obj.namespace, obj.service_name)}
    if isinstance(obj, XAccessPolicy):
        keys = {fragments.target_key(obj, ref) for ref in obj.spec.target_refs}
        return {("policies-for", key) for key in keys if key is not None}
    if isinstance(obj, GuardrailPolicy):
        keys = {fragments.target_key(obj, ref) for ref in obj.spec.target_refs}
        return {guardrails.guardrail_index(key) for key in keys if key is not None}
    return set()


class _FragmentReader:
    """What one fragment reads, recorded as it reads."""

    def __init__(self, graph: AuthorizationGraph):
        self._graph = graph
        self.trust_domain = graph.trust_domain
        self.controller_names = graph.controller_names
        self.keys: set[ResourceKey] = set()
        self.indexes: set[tuple] = set()

    def get(self, key: ResourceKey) -> Resource | None:
        self.keys.add(key)
        return self._graph.objects.get(key)

    def index(self, name: tuple) -> list[Resource]:
        self.indexes.add(name)
        return sorted(self._graph.indexed[name].values(), key=lambda o: o.key)

    def admission(self, target: ResourceKey) -> dict[ResourceKey, Condition]:
        self.indexes.add(("policies-for", target))
        return self._graph.admission_for(target)

    def withheld(self, key: ResourceKey) -> str | None:
        return self._graph.withheld.get(key)


class AuthorizationGraph:
    def __init__(self, *, trust_domain: str = DEFAULT_TRUST_DOMAIN,
                 controller_names: Iterable[str] = (OUR_CONTROLLER,)):
        self.trust_domain = trust_domain
        self.controller_names = frozenset(controller_names)
        self.graph = nx.MultiDiGraph()
        self.objects: dict[ResourceKey, Resource] = {}
        self.indexed: dict[tuple, dict[ResourceKey, Resource]] = defaultdict(dict)
        self._admission: dict[ResourceKey, dict[ResourceKey, Condition]] = {}
        self._outputs: dict[ResourceKey, fragments.Output] = {}
        self._key_readers: dict[ResourceKey, set[ResourceKey]] = defaultdict(set)
        self._index_readers: dict[tuple, set[ResourceKey]] = defaultdict(set)
        self._reads: dict[ResourceKey, tuple[set, set]] = {}
        self._node_decls: dict[str, dict[ResourceKey, dict | None]] = defaultdict(dict)
        self.generation = 0
        self.last_recomputed: set[ResourceKey] = set()
        # Policies whose config a proxy refused: their grants are withheld (fail closed) until they change.
        self.withheld: dict[ResourceKey, str] = {}

    # --- queries -------------------------------------------------------------------------------------

    def get(self, key: ResourceKey) -> Resource | None:
        return self.objects.get(key)

    def of_kind(self, kind: str) -> list[Resource]:
        return sorted((o for k, o in self.objects.items() if k.kind == kind), key=lambda o: o.key)

    def admission_for(self, target: ResourceKey) -> dict[ResourceKey, Condition]:
        if target not in self._admission:
            policies = list(self.indexed[("policies-for", target)].values())
            self._admission[target] = admit(policies)
        return self._admission[target]

    def node(self, node_id: str) -> dict[str, Any] | None:
        return self.graph.nodes[node_id] if node_id in self.graph else None

    # --- updates -------------------------------------------------------------------------------------

    def withhold(self, keys: Iterable[ResourceKey], reason: str) -> set[ResourceKey]:
        """Withhold these policies' rules (Envoy refused what they became); return the recomputed keys.

        A withheld Allow policy grants nothing, so its targets keep denying by default; a withheld
        ExternalAuth policy denies all traffic at its targets, since it can no longer be delegated. The
        next version of the policy gets a fresh chance."""
        dirty = {key for key in keys if key in self.objects and key not in self.withheld}
        for key in dirty:
            self.withheld[key] = reason
        self._recompute(dirty)
        if dirty:
            self.generation += 1
        return dirty

    def apply(self, changes: ChangeSet) -> set[ResourceKey]:
        """Apply a change set; return the keys of the fragments that were recomputed."""
        dirty: set[ResourceKey] = set()
        for obj in changes.upserts:
            old = self.objects.get(obj.key)
            if old == obj:
                continue
            self.withheld.pop(obj.key, None)
            self._unindex(old) if old is not None else None
            self.objects[obj.key] = obj
            self._index(obj)
            dirty |= self._affected(obj.key, old, obj)
        for key in changes.deletes:
            old = self.objects.pop(key, None)
            self.withheld.pop(key, None)
            if old is None:
                continue
            self._unindex(old)
            dirty |= self._affected(key, old, None)
        self._recompute(dirty)
        self.last_recomputed = dirty
        if dirty:
            self.generation += 1
        return dirty

    def _affected(self, key: ResourceKey, old: Resource | None, new: Resource | None) -> set[ResourceKey]:
        names = (index_names(old) if old else set()) | (index_names(new) if new else set())
        for name in names:
            if name[0] == "policies-for":
                self._admission.pop(name[1], None)
        dirty = set(self._key_readers.get(key, ()))
        for name in names:
            dirty |= self._index_readers.get(name, set())
        if type(new or old) in FRAGMENT_BUILDERS:
            dirty.add(key)
        return dirty

    def _index(self, obj: Resource) -> None:
        for name in index_names(obj):
            self.indexed[name][obj.key] = obj

    def _unindex(self, obj: Resource) -> None:
        for name in index_names(obj):
            self.indexed[name].pop(obj.key, None)

    def _recompute(self, dirty: set[ResourceKey]) -> None:
        for key in dirty:
            self._remove_output(key)
        for key in sorted(dirty, key=lambda k: (_PHASE.get(k.kind, 0), k)):
            obj = self.objects.get(key)
            builder = FRAGMENT_BUILDERS.get(type(obj)) if obj is not None else None
            if builder is None:
                continue
            reader = _FragmentReader(self)
            output = builder(obj, reader)
            self._record_reads(key, reader.keys, reader.indexes)
            self._add_output(key, output)

    def _record_reads(self, owner: ResourceKey, keys: set, indexes: set) -> None:
        self._reads[owner] = (keys, indexes)
        for key in keys:
            self._key_readers[key].add(owner)
        for name in indexes:
            self._index_readers[name].add(owner)

    def _remove_output(self, owner: ResourceKey) -> None:
        keys, indexes = self._reads.pop(owner, (set(), set()))
        for key in keys:
            self._key_readers[key].discard(owner)
        for name in indexes:
            self._index_readers[name].discard(owner)
        output = self._outputs.pop(owner, None)
        if output is None:
            return
        edge_key = str(owner)
        for u, v, _ in output.edges:
            if self.graph.has_edge(u, v, key=edge_key):
                self.graph.remove_edge(u, v, key=edge_key)
        for node in output.nodes:
            decls = self._node_decls[node]
            decls.pop(owner, None)
            if not decls:
                del self._node_decls[node]
                if node in self.graph:
                    self.graph.remove_node(node)
            else:
                self._set_node_attrs(node)

    def _add_output(self, owner: ResourceKey, output: fragments.Output) -> None:
        self._outputs[owner] = output
        for node, attrs in output.nodes.items():
            self._node_decls[node][owner] = attrs
            self._set_node_attrs(node)
        for u, v, attrs in output.edges:
            self.graph.add_edge(u, v, key=str(owner), **attrs)

    def _set_node_attrs(self, node: str) -> None:
        decls = self._node_decls[node]
        attrs = next((decls[k] for k in sorted(decls) if decls[k] is not None), None)
        if node not in self.graph:
            self.graph.add_node(node)
        data = self.graph.nodes[node]
        data.clear()
        data.update(attrs if attrs is not None else {"type": node.split(":", 1)[0], "missing": True})

    # --- comparison ----------------------------------------------------------------------------------

    def signature(self) -> tuple:
        """A canonical, comparable form of the whole graph (for tests: incremental == full rebuild)."""
        nodes = tuple(sorted((n, tuple(sorted(d.items(), key=lambda kv: kv[0]))) for n, d in
                             self.graph.nodes(data=True)))
        edges = tuple(sorted((u, v, k, tuple(sorted(d.items()))) for u, v, k, d in
                             self.graph.edges(keys=True, data=True)))
        return nodes, edges


def build(objects: Iterable[Resource], **kwargs: Any) -> AuthorizationGraph:
    graph = AuthorizationGraph(**kwargs)
    graph.apply(ChangeSet(upserts=list(objects), synced=True))
    return graph
