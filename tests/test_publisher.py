"""Publishing does work in proportion to the change: untouched Gateways are not rebuilt, unchanged routes are
not re-serialized, and the result equals a full rebuild."""

from __future__ import annotations

import pytest

from controlplane.api.changes import ChangeSet
from controlplane.api.registry import parse_object
from controlplane.controller import Publisher
from controlplane.graph.model import AuthorizationGraph
from controlplane.identity.ca import CertificateAuthority
from controlplane.identity.rotation import CertificateManager
from controlplane.xds import serialize
from controlplane.xds.cache import SnapshotCache
from tests.graph.test_incremental_graph import CLASS, _backend, _gateway, _policy, _route

GW1, GW2 = "gateway~a~gw1", "gateway~a~gw2"
POLICY = "type.googleapis.com/envoy.config.rbac.v3.Policy"


def _mesh() -> list:
    docs = [CLASS, _gateway("a", "gw1", 443, "Same"), _gateway("a", "gw2", 8443, "Same"),
            _backend("a", "be1", "s1"), _backend("a", "be2", "s2"),
            _route("a", "r1", "gw1", "a", "be1", "a", "/mcp"), _route("a", "r2", "gw2", "a", "be2", "a", "/mcp"),
            _policy("a", "p1", "XBackend", "be1", [("alice", ["echo"])], True, 1),
            _policy("a", "p2", "XBackend", "be2", [("bob", ["echo"])], True, 2)]
    return [parse_object(d) for d in docs]


@pytest.fixture
def publisher():
    graph = AuthorizationGraph()
    graph.apply(ChangeSet(upserts=_mesh(), synced=True))
    ca = CertificateAuthority.create(trust_domain="cluster.local")
    out = Publisher(graph=graph, cache=SnapshotCache(), certificates=CertificateManager(ca))
    out.publish()
    return out


def test_a_policy_edit_rebuilds_only_the_gateway_it_reaches(publisher):
    before = {node: publisher.cache.get(node) for node in (GW1, GW2)}
    edited = parse_object(_policy("a", "p1", "XBackend", "be1", [("alice", ["get-sum"])], True, 1))
    changed = publisher.graph.apply(ChangeSet(upserts=[edited]))
    publisher.publish(changed)
    assert publisher.skipped == 1
    assert publisher.cache.get(GW2) is before[GW2]
    assert publisher.cache.get(GW1) != before[GW1]
    incremental = {node: publisher.cache.get(node) for node in (GW1, GW2)}
    publisher.publish()  # a full rebuild gives the same worlds
    assert {node: publisher.cache.get(node) for node in (GW1, GW2)} == incremental


def test_moving_a_route_rebuilds_both_the_old_and_the_new_gateway(publisher):
    moved = parse_object(_route("a", "r1", "gw2", "a", "be1", "a", "/other"))
    publisher.publish(publisher.graph.apply(ChangeSet(upserts=[moved])))
    assert publisher.skipped == 0
    def route_bytes(node: str) -> bytes:
        routes = publisher.cache.get(node).resources("type.googleapis.com/envoy.config.route.v3.RouteConfiguration")
        return b"".join(r.body for r in routes.values())

    assert b"xbackend/a/be1" not in route_bytes(GW1)
    assert b"xbackend/a/be1" in route_bytes(GW2) and b"/other" in route_bytes(GW2)


def test_unchanged_routes_are_not_reserialized_after_a_cache_hit(publisher, monkeypatch):
    publisher.publish()  # the route configurations are hits now: their parts must stay cached
    calls = []
    real = serialize._serialize
    monkeypatch.setattr(serialize, "_serialize", lambda t, p: calls.append(t) or real(t, p))
    edited = parse_object(_policy("a", "p1", "XBackend", "be1", [("alice", ["get-sum"])], True, 1))
    publisher.publish(publisher.graph.apply(ChangeSet(upserts=[edited])))
    assert calls == [POLICY]  # only the one rule (an RBAC Policy) of the one policy that changed
