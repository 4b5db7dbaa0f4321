"""A push is encoded once and shared by every stream; each stream adds only its nonce tail."""

from __future__ import annotations

import asyncio

from envoy_data_plane.envoy.config.core.v3 import ControlPlane
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse
from envoy_data_plane.google.protobuf import Any
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.xds.cache import Snapshot, SnapshotCache
from controlplane.xds.protocol import Response
from controlplane.xds.resources import CLUSTER, ROUTE
from controlplane.xds.server import XdsServer, trust_node_id
from controlplane.xds.shared_responses import SharedResponses
from controlplane.xds.wire import discovery_response_head, discovery_response_tail
from tests.xds.adsclient import AdsClient
from tests.xds.xds_helpers import res

text = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(version=text, type_url=text, nonce=text, control_plane=text,
       values=st.lists(st.tuples(st.text(min_size=1, max_size=30), st.binary(max_size=300)), max_size=6))
def test_head_and_tail_are_byte_for_byte_betterproto2s_discovery_response(version, type_url, nonce,
                                                                           control_plane, values):
    anys = [Any(type_url=t, value=v) for t, v in values]
    expected = bytes(DiscoveryResponse(
        version_info=version, resources=anys, type_url=type_url, nonce=nonce,
        control_plane=ControlPlane(identifier=control_plane) if control_plane else None))
    head = discovery_response_head(version_info=version, resources=[bytes(a) for a in anys], type_url=type_url)
    assert head + discovery_response_tail(nonce=nonce, control_plane_id=control_plane) == expected


def test_one_push_is_one_bytes_object_for_every_stream():
    shared = SharedResponses()
    response = Response(ROUTE, "v1", (res(ROUTE, "rc", "x" * 1000),))
    first = shared.head(response)
    assert shared.head(Response(ROUTE, "v1", response.resources)) is first
    assert shared.encoded == 1
    assert shared.head(Response(ROUTE, "v2", (res(ROUTE, "rc", "y" * 1000),))) is not first
    assert shared.encoded == 2


def test_old_encodings_are_dropped_past_capacity():
    shared = SharedResponses(capacity=2)
    responses = [Response(CLUSTER, f"v{i}", (res(CLUSTER, "c", str(i)),)) for i in range(3)]
    heads = [shared.head(r) for r in responses]
    assert shared.head(responses[2]) is heads[2]
    shared.head(responses[0])  # evicted: encoded again
    assert shared.encoded == 4


async def test_streams_of_one_push_share_its_encoding_and_keep_their_own_nonces():
    cache = SnapshotCache()
    cache.set_snapshot("n", Snapshot([res(ROUTE, "rc", "1" * 5000)]))
    server = XdsServer(cache=cache, authorize=trust_node_id)
    port = await server.start("127.0.0.1:0")
    try:
        async with AdsClient(f"127.0.0.1:{port}", node_id="n") as a, \
                AdsClient(f"127.0.0.1:{port}", node_id="n") as b:
            for client in (a, b):
                client.send(ROUTE, ["rc"])
            first = [await c.recv() for c in (a, b)]
            cache.set_snapshot("n", Snapshot([res(ROUTE, "rc", "2" * 5000)]))
            for client, got in zip((a, b), first, strict=True):
                client.send(ROUTE, ["rc"], version=got.version_info, nonce=got.nonce)
            second = await asyncio.gather(a.recv(), b.recv())
        assert [r.bodies["rc"] for r in second] == [res(ROUTE, "rc", "2" * 5000).body] * 2
        assert len({r.nonce for r in first + list(second)}) == 4
        assert server.shared_responses.encoded == 2  # one per push, not one per stream
    finally:
        await server.stop(None)


def test_kept_encodings_are_bounded_in_bytes_but_the_latest_is_always_kept():
    shared = SharedResponses(max_bytes=1500)
    big = [Response(ROUTE, f"v{i}", (res(ROUTE, "rc", str(i) * 1000),)) for i in range(3)]
    heads = [shared.head(r) for r in big]
    assert shared.head(big[2]) is heads[2]  # the latest stays even alone over the bound
    shared.head(big[1])  # evicted by the byte bound: encoded again
    assert shared.encoded == 4
