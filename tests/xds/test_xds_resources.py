"""Serialized resources, hand-written wire encoding, snapshots and the cache."""

from __future__ import annotations

import pytest
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse
from envoy_data_plane.google.protobuf import Any

from controlplane.admin.redact import redact
from controlplane.xds.cache import Snapshot, SnapshotCache
from controlplane.xds.peer import peer_identity, uri_san
from controlplane.xds.resources import CLUSTER, LISTENER, ROUTE, XdsResource, message_class, short_name
from controlplane.xds.wire import encode_discovery_response, varint
from tests.xds.xds_helpers import res, snapshot_of
from tests.xds.xds_pki import TestPki


def test_from_message_serializes_once_and_infers_the_type_url():
    cluster = Cluster(name="tools", alt_stat_name="x")
    resource = XdsResource.from_message("tools", cluster)
    assert resource.type_url == CLUSTER
    assert resource.body == bytes(cluster)
    assert Any.parse(resource.any_bytes) == Any(type_url=CLUSTER, value=bytes(cluster))
    assert len(resource.version) == 16
    with pytest.raises(AttributeError):
        resource.body = b""


def test_version_is_a_content_hash_of_type_and_body():
    assert res(CLUSTER, "A").version == res(CLUSTER, "A").version
    assert res(CLUSTER, "A", "1").version != res(CLUSTER, "A", "2").version
    same_bytes_other_type = XdsResource(ROUTE, "A", res(CLUSTER, "A").body)
    assert same_bytes_other_type.version != res(CLUSTER, "A").version


def test_message_class_imports_on_demand():
    url = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
    assert message_class(url).__name__ == "Lua"
    with pytest.raises(TypeError):
        message_class("type.googleapis.com/no.such.v1.Thing")


def test_short_names_are_bounded():
    assert [short_name(t) for t in (CLUSTER, LISTENER, "type.googleapis.com/x.Y")] == ["cds", "lds", "other"]


@pytest.mark.parametrize("count", [0, 1, 300])
def test_hand_encoded_discovery_response_parses_back(count):
    resources = [res(CLUSTER, f"c{i}", "9" * 100) for i in range(count)]
    wire = encode_discovery_response(
        version_info="p-123",
        resources=[r.any_bytes for r in resources],
        type_url=CLUSTER,
        nonce="n-1",
        control_plane_id="cp-1",
    )
    parsed = DiscoveryResponse.parse(wire)
    assert (parsed.version_info, parsed.type_url, parsed.nonce) == ("p-123", CLUSTER, "n-1")
    assert parsed.control_plane.identifier == "cp-1"
    assert [a.value for a in parsed.resources] == [r.body for r in resources]
    assert bytes(parsed) == wire  # byte-identical to what betterproto2 would have produced


def test_varint():
    assert [varint(n) for n in (0, 1, 127, 128, 300)] == [b"\0", b"\1", b"\x7f", b"\x80\x01", b"\xac\x02"]


def test_snapshot_versions_per_type_and_prefix():
    snapshot = snapshot_of({CLUSTER: "A,B", ROUTE: "R"})
    assert snapshot.version(CLUSTER) != snapshot.version(ROUTE)
    assert snapshot.with_prefix("x").version(CLUSTER) == "x-" + snapshot.content_hash(CLUSTER)
    reordered = Snapshot([res(CLUSTER, "B"), res(ROUTE, "R"), res(CLUSTER, "A")])
    assert reordered.version(CLUSTER) == snapshot.version(CLUSTER)
    updated = snapshot.with_resources(res(ROUTE, "R", "2"))
    assert updated.version(CLUSTER) == snapshot.version(CLUSTER)
    assert updated.resources(CLUSTER) is snapshot.resources(CLUSTER)  # untouched types are shared
    assert updated.version(ROUTE) != snapshot.version(ROUTE)
    assert list(snapshot.without(CLUSTER, "A").resources(CLUSTER)) == ["B"]
    assert snapshot.resources(LISTENER) == {}


def test_cache_prefix_is_random_per_instance_and_watchers_fire():
    one, two = SnapshotCache(), SnapshotCache()
    assert one.version_prefix != two.version_prefix
    fired = []
    unwatch = one.watch("k", lambda: fired.append(1))
    assert not one.is_ready("k")
    one.set_snapshot("k", snapshot_of({CLUSTER: "A"}))
    one.set_snapshot("other", snapshot_of({CLUSTER: "A"}))
    assert fired == [1] and one.is_ready("k")
    assert one.get("k").version(CLUSTER).startswith(one.version_prefix + "-")
    unwatch()
    one.set_snapshot("k", snapshot_of({CLUSTER: "B"}))
    assert fired == [1]
    one.remove("k")
    assert one.get("k") is None and not one.is_ready("k")


def test_peer_identity_from_an_auth_context():
    pki = TestPki()
    cert, _ = pki.issue("spiffe://mesh.test/ns/a/sa/b")
    assert peer_identity({"x509_pem_cert": [cert]}) == "spiffe://mesh.test/ns/a/sa/b"
    assert peer_identity({}) is None
    assert uri_san(pki.ca_pem) is None


def test_redact_catches_keys_anywhere():
    dump = {
        "tlsCertificate": {"privateKey": {"inlineString": "KEY"}, "certificateChain": {"inlineString": "C"}},
        "listener": [{"transport_socket": {"private_key": "K2", "password": "P"}}],
        "genericSecret": {"secret": {"inlineBytes": "S"}},
    }
    text = repr(redact(dump))
    assert not any(secret in text for secret in ("KEY", "K2", "'P'", "'S'"))
    assert "'C'" in text
