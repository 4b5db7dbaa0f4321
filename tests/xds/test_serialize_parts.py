"""A RouteConfiguration is keyed and versioned from its parts: neither its whole JSON nor its whole body is
hashed, a part's JSON is hashed once per build, and the bytes still parse to the whole message."""

from __future__ import annotations

import copy

import pytest
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

from controlplane.xds import rbac_encoding, serialize
from controlplane.xds import resources as resources_module
from controlplane.xds.resources import ROUTE, Resource
from controlplane.xds.serialize import SerializingCache
from tests.translate import test_golden as golden


def route_configuration(routes: int = 4, *, tag: str = "") -> Resource:
    vhosts = [{"name": f"vh{v}", "domains": [f"h{v}.example"],
               "routes": [{"name": f"r{v}-{i}", "match": {"prefix": f"/p{i}{tag if i == 0 else ''}"},
                           "directResponse": {"status": 200 + i}} for i in range(routes)]}
              for v in range(2)]
    return Resource(ROUTE, "rc", {"name": "rc", "virtualHosts": vhosts})


def test_the_whole_route_configuration_is_never_fingerprinted_and_each_part_once(monkeypatch):
    seen = []
    original = serialize._fingerprint
    monkeypatch.setattr(serialize, "_fingerprint", lambda r: seen.append(r.payload) or original(r))
    SerializingCache().get(route_configuration())
    assert not any("virtualHosts" in payload for payload in seen)
    assert len(seen) == 1 + 2 + 2 * 4  # the top-level rest, each virtual host's rest, each route


def test_the_body_of_an_assembled_route_configuration_is_not_hashed(monkeypatch):
    hashed = []
    real = resources_module.hashlib

    class Recording:
        @staticmethod
        def sha256(data=b""):
            hashed.append(len(data))
            return real.sha256(data)

    monkeypatch.setattr(resources_module, "hashlib", Recording)
    built = SerializingCache().get(route_configuration(routes=50))
    assert hashed == [] and len(built.version) == 16


def test_version_follows_content_and_is_stable_across_caches():
    one, two = SerializingCache().get(route_configuration()), SerializingCache().get(route_configuration())
    edited = SerializingCache().get(route_configuration(tag="x"))
    assert one.version == two.version and one.body == two.body
    assert edited.version != one.version


def test_assembled_bytes_parse_to_the_whole_message():
    resource = route_configuration()
    built = SerializingCache().get(resource)
    whole = RouteConfiguration.from_dict(copy.deepcopy(resource.payload))
    assert RouteConfiguration.parse(built.body) == whole


def test_an_edit_serializes_only_the_route_that_changed(monkeypatch):
    cache = SerializingCache()
    cache.get(route_configuration())
    serialized = []
    original = serialize._serialize
    monkeypatch.setattr(serialize, "_serialize", lambda t, p: serialized.append(p) or original(t, p))
    cache.get(route_configuration(tag="x"))
    assert [p.get("name") for p in serialized] == ["r0-0", "r1-0"]


@pytest.mark.parametrize("case", golden.case_names())
def test_every_golden_route_configuration_assembled_from_parts_parses_to_the_whole(case):
    """Routes are assembled down to each RBAC policy (assembly.py); Envoy must read the same message."""
    read = golden.Case.read(golden.INPUTS / f"{case}.yaml")
    for resource in golden.translate(read.graph(), read.gateway):
        if resource.type_url == ROUTE:
            built = SerializingCache().get(resource)
            whole = RouteConfiguration.from_dict(copy.deepcopy(resource.payload))
            assert RouteConfiguration.parse(built.body) == whole


def test_rules_and_shadow_rules_share_each_policy_serialization(monkeypatch):
    policy = {"permissions": [{"any": True}], "principals": [{"authenticated": {"principalName": {"exact": "a"}}}]}
    rbac = {"@type": rbac_encoding.RBAC_PER_ROUTE_TYPE,
            "rbac": {"rules": {"action": "ALLOW", "policies": {"p#a": policy}},
                     "shadowRules": {"action": "ALLOW", "policies": {"p#a": policy}}, "shadowRulesStatPrefix": "b_"}}
    route = {"name": "r", "match": {"prefix": "/"}, "route": {"weightedClusters": {"clusters": [
        {"name": "c", "weight": 1, "typedPerFilterConfig": {"envoy.filters.http.rbac.backend": rbac}}]}}}
    serialized = []
    original = serialize._serialize
    monkeypatch.setattr(serialize, "_serialize", lambda t, p: serialized.append(t) or original(t, p))
    resource = Resource(ROUTE, "rc", {"name": "rc", "virtualHosts": [{"name": "v", "domains": ["*"],
                                                                       "routes": [route]}]})
    built = SerializingCache().get(resource)
    assert serialized.count(rbac_encoding.POLICY_TYPE) == 1
    assert RouteConfiguration.parse(built.body) == RouteConfiguration.from_dict(copy.deepcopy(resource.payload))
