"""A careless or hostile client is bounded: streams per identity and per connection, names per type
and per request, type URLs per stream; refusals carry a clear status and are counted; nothing of a
closed stream stays behind in the server."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

from controlplane.xds.limits import StreamLimits
from controlplane.xds.resources import CLUSTER, ENDPOINT
from controlplane.xds.server import XdsServer, trust_node_id
from tests.xds.adsclient import METHOD, AdsClient
from tests.xds.xds_delta_client import DeltaClient
from tests.xds.xds_helpers import snapshot_of
from tests.xds.xds_pki import TestPki


def metric(server: XdsServer, name: str, **labels) -> float:
    return server.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def start_server(cache):
    servers = []

    async def _start(limits: StreamLimits, credentials=None, authorize=trust_node_id) -> XdsServer:
        server = XdsServer(cache=cache, authorize=authorize, limits=limits)
        await server.start("127.0.0.1:0", credentials)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.stop(None)


async def _served(client: AdsClient) -> None:
    client.send(CLUSTER)
    assert (await client.recv()).names == ["A"]


async def test_streams_per_identity_are_bounded(cache, start_server):
    pki = TestPki()
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key, pki.server_cert)], root_certificates=pki.ca_pem, require_client_auth=True
    )
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A"}))
    server = await start_server(StreamLimits(streams_per_identity=2, streams_per_connection=100), credentials)
    target = f"127.0.0.1:{server.port}"

    def creds(spiffe_id: str):
        cert, key = pki.issue(spiffe_id)
        return grpc.ssl_channel_credentials(pki.ca_pem, key, cert)

    agent = creds("spiffe://mesh.test/ns/a/sa/agent")
    async with AdsClient(target, credentials=agent) as one, AdsClient(target, credentials=agent) as two:
        await _served(one)
        await _served(two)
        async with AdsClient(target, credentials=agent) as third:
            third.send(CLUSTER)
            assert await third.status() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "open xDS streams" in await third.call.details()
        async with AdsClient(target, credentials=creds("spiffe://mesh.test/ns/b/sa/other")) as other:
            await _served(other)  # another identity is not affected
    assert metric(server, "xds_limit_refusals_total", limit="streams_per_identity") == 1
    await _until(lambda: not server.connections() and server._admission.tracked() == 0)
    async with AdsClient(target, credentials=agent) as again:
        await _served(again)  # the closed streams gave their slots back


async def test_streams_per_connection_are_bounded(cache, start_server):
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A"}))
    server = await start_server(StreamLimits(streams_per_connection=2))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        rpc = channel.stream_stream(METHOD, request_serializer=bytes, response_deserializer=bytes)
        request = DiscoveryRequest(node=Node(id="test-node"), type_url=CLUSTER)
        admitted = [rpc(_forever(request)) for _ in range(2)]
        for call in admitted:
            assert await asyncio.wait_for(call.read(), 5)  # admitted and served
        refused = rpc(_forever(request))
        assert await asyncio.wait_for(refused.code(), 5) == grpc.StatusCode.RESOURCE_EXHAUSTED
        for call in admitted:
            call.cancel()
    assert metric(server, "xds_limit_refusals_total", limit="streams_per_connection") == 1


async def _until(check) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def _forever(request):
    yield request
    await asyncio.Event().wait()


async def test_sotw_names_per_type_and_per_request_are_bounded(cache, start_server):
    cache.set_snapshot("test-node", snapshot_of({ENDPOINT: "A"}))
    server = await start_server(StreamLimits(names_per_type=10, names_per_request=20))
    target = f"127.0.0.1:{server.port}"
    async with AdsClient(target) as ok:
        ok.send(ENDPOINT, [f"n{i}" for i in range(10)] + ["A"])
        assert await ok.status() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 10 per type" in await ok.call.details()
    async with AdsClient(target) as huge:
        huge.send(ENDPOINT, [f"n{i}" for i in range(21)])
        assert await huge.status() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 20 per request" in await huge.call.details()
    async with AdsClient(target) as fine:
        fine.send(ENDPOINT, [f"n{i}" for i in range(9)] + ["A"])
        assert (await fine.recv()).names == ["A"]
    assert metric(server, "xds_limit_refusals_total", limit="names_per_type") == 1
    assert metric(server, "xds_limit_refusals_total", limit="names_per_request") == 1


async def test_delta_subscriptions_accumulate_up_to_the_bound(cache, start_server):
    cache.set_snapshot("test-node", snapshot_of({ENDPOINT: "A"}))
    server = await start_server(StreamLimits(names_per_type=10, names_per_request=6))
    async with DeltaClient(f"127.0.0.1:{server.port}") as client:
        client.send(ENDPOINT, ["A", "n1", "n2", "n3", "n4", "n5"])
        assert (await client.recv()).names == ["A"]
        client.send(ENDPOINT, ["m1", "m2", "m3", "m4", "m5"], ["n5"])  # 10 names: still fine
        await _until(lambda: [len(t.subscribed) for c in server.connections() for t in c.types] == [10])
        client.send(ENDPOINT, ["m6"])  # the 11th
        assert await client.status() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert metric(server, "xds_limit_refusals_total", limit="names_per_type") == 1


async def test_type_urls_per_stream_are_bounded(cache, start_server):
    server = await start_server(StreamLimits(types_per_stream=3))
    async with AdsClient(f"127.0.0.1:{server.port}") as client:
        for i in range(4):
            client.send(f"type.googleapis.com/made.up.Type{i}")
        assert await client.status() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert metric(server, "xds_limit_refusals_total", limit="types_per_stream") == 1


def test_serve_flags_set_the_limits():
    from controlplane.cli import _parser, _xds_limits

    args = _parser().parse_args(["serve", "--config", "c", "--state-dir", "s", "--xds-max-streams-per-identity", "3",
                                 "--xds-max-names-per-type", "50"])
    limits = _xds_limits(args)
    assert (limits.streams_per_identity, limits.streams_per_connection) == (3, 3)
    assert (limits.names_per_type, limits.names_per_request) == (50, 50)
    assert _xds_limits(_parser().parse_args(["serve", "--config", "c", "--state-dir", "s"])) == StreamLimits()
