"""The gRPC server end to end with the raw ADS client: admission, gating, NACKs, restarts, mTLS."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from controlplane.xds.server import XdsServer, trust_node_id
from tests.xds.adsclient import AdsClient
from tests.xds.xds_helpers import res, snapshot_of, wait_for_status
from tests.xds.xds_pki import TestPki


def metric(server: XdsServer, name: str, **labels) -> float:
    return server.registry.get_sample_value(name, labels) or 0.0


async def test_stream_is_not_served_before_the_first_snapshot(server, connect, cache):
    async with connect() as client:
        client.send(CLUSTER)
        await client.expect_quiet(0.3)  # R32: no empty world while the control plane warms up
        cache.set_snapshot("other-node", snapshot_of({CLUSTER: "X"}))
        await client.expect_quiet(0.2)  # someone else's snapshot is not ours
        cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A,B"}))
        got = await client.recv()
        assert got.names == ["A", "B"]


async def test_removed_snapshot_keeps_clients_as_they_are(server, connect, cache):
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A"}))
    async with connect() as client:
        client.send(CLUSTER)
        await client.recv()
        client.send(CLUSTER)
        cache.remove("test-node")
        await client.expect_quiet(0.2)  # never an empty CDS that would delete everything (R22)


@pytest.mark.parametrize(
    ("node_id", "type_url", "code"),
    [
        (None, CLUSTER, grpc.StatusCode.INVALID_ARGUMENT),  # R3: first request must carry node.id
        ("", CLUSTER, grpc.StatusCode.INVALID_ARGUMENT),
        ("test-node", "", grpc.StatusCode.INVALID_ARGUMENT),  # R2: type_url required on ADS
    ],
)
async def test_bad_first_request_is_rejected(server, connect, node_id, type_url, code):
    async with connect(node_id=node_id) as client:
        client.send(type_url)
        assert await client.status() == code
    assert metric(server, "xds_rejected_streams_total", reason="node" if not node_id else "type") == 1


async def test_missing_type_url_later_in_the_stream_is_rejected(server, connect, cache):
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A"}))
    async with connect() as client:
        client.send(CLUSTER)
        await client.recv()
        client.send("")
        assert await client.status() == grpc.StatusCode.INVALID_ARGUMENT


async def test_node_is_read_from_the_first_request_only(server, connect, cache):
    """Later requests without a node still belong to the first request's node (R3)."""
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A", ROUTE: "R"}))
    async with connect() as client:
        client.send(CLUSTER)
        await client.recv()
        client.send(ROUTE, ["R"])  # no node on this one
        assert (await client.recv()).names == ["R"]
        [conn] = server.connections()
        assert conn.node_id == "test-node" and conn.node_key == "test-node"


async def test_authorize_refusal_is_permission_denied(cache):
    def refuse(identity, node):
        raise PermissionError(f"{node.id} may not connect")

    server = XdsServer(cache=cache, authorize=refuse)
    port = await server.start("127.0.0.1:0")
    try:
        async with AdsClient(f"127.0.0.1:{port}") as client:
            client.send(CLUSTER)
            assert await client.status() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await server.stop(None)


async def test_authorize_may_be_async_and_picks_the_snapshot(cache):
    async def by_cluster(identity, node):
        return f"group/{node.cluster}"

    cache.set_snapshot("group/test", snapshot_of({CLUSTER: "G"}))
    server = XdsServer(cache=cache, authorize=by_cluster)
    port = await server.start("127.0.0.1:0")
    try:
        async with AdsClient(f"127.0.0.1:{port}") as client:
            client.send(CLUSTER)
            assert (await client.recv()).names == ["G"]
    finally:
        await server.stop(None)


async def test_nack_is_recorded_counted_and_not_answered(server, connect, cache):
    cache.set_snapshot("test-node", snapshot_of({LISTENER: "L"}))
    async with connect() as client:
        client.send(LISTENER)
        good = await client.recv()
        client.send(LISTENER)  # ACK
        await wait_for_status(server, LISTENER, "SYNCED")
        cache.set_snapshot("test-node", snapshot_of({LISTENER: "L"}, version="bad"))
        await client.recv()
        for _ in range(3):
            client.nack(LISTENER, error="malformed IP address: not-an-ip")
        await client.expect_quiet(0.3)  # R8: no NACK loop
        [conn] = server.connections()
        [lds] = conn.types
        assert lds.status == "ERROR" and lds.version_acked == good.version_info
        assert lds.last_nack_error == "malformed IP address: not-an-ip"
        assert metric(server, "xds_nacks_total", type="lds") == 3  # each NACK counted, none answered
        cache.set_snapshot("test-node", snapshot_of({LISTENER: "L"}, version="fixed"))
        fixed = await client.recv()
        assert fixed.bodies["L"] == res(LISTENER, "L", "fixed").body
        client.send(LISTENER)
        await client.expect_quiet(0.2)
        assert server.connections()[0].types[0].status == "SYNCED"
        assert metric(server, "xds_pushes_total", type="lds") == 3
        assert metric(server, "xds_convergence_time_seconds_count", type="lds") == 2


async def test_stale_nonce_is_counted_and_unanswered(server, connect, cache):
    cache.set_snapshot("test-node", snapshot_of({ROUTE: "A,B"}))
    async with connect() as client:
        client.send(ROUTE, ["A"])
        await client.recv()
        client.send(ROUTE, ["A", "B"], nonce="999")
        await client.expect_quiet(0.2)
        assert metric(server, "xds_stale_nonces_total", type="rds") == 1
        client.send(ROUTE, ["A", "B"])  # the current nonce: B is served now
        assert (await client.recv()).names == ["B"]


async def test_streams_of_one_node_key_share_the_same_bytes(server, connect, cache):
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A,B", ENDPOINT: "A"}))
    async with connect() as one, connect() as two:
        one.send(CLUSTER)
        two.send(CLUSTER)
        first, second = await one.recv(), await two.recv()
        assert first.bodies == second.bodies and first.version_info == second.version_info
        assert metric(server, "xds_connected_proxies") == 2
    await asyncio.sleep(0.1)
    assert metric(server, "xds_connected_proxies") == 0


async def test_cds_change_resends_eds_in_order_over_the_wire(server, connect, cache):
    world = snapshot_of({CLUSTER: "A", ENDPOINT: "A", LISTENER: "L", ROUTE: "R"})
    cache.set_snapshot("test-node", world)
    async with connect() as client:
        for type_url, names in ((CLUSTER, []), (ENDPOINT, ["A"]), (LISTENER, []), (ROUTE, ["R"])):
            client.send(type_url, names)
            await client.recv()
            client.send(type_url, names)
            await wait_for_status(server, type_url, "SYNCED")
        changed = world.with_resources(res(CLUSTER, "A", "2"), res(LISTENER, "L", "2"), res(ROUTE, "R", "2"))
        cache.set_snapshot("test-node", changed)
        order = [(await client.recv()).type_url for _ in range(4)]
        assert order == [CLUSTER, ENDPOINT, LISTENER, ROUTE]
        await client.expect_quiet(0.2)


async def test_restart_keeps_resource_versions_but_changes_the_prefix():
    """R33: equal content hashes, but a new replica/start never reuses the old version strings."""
    versions = []
    for _ in range(2):
        cache = SnapshotCache()
        server = XdsServer(cache=cache, authorize=trust_node_id)
        port = await server.start("127.0.0.1:0")
        cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A,B"}))
        try:
            async with AdsClient(f"127.0.0.1:{port}") as client:
                client.send(CLUSTER)
                got = await client.recv()
                versions.append((got.version_info, got.bodies, cache.get("test-node").content_hash(CLUSTER)))
        finally:
            await server.stop(None)
    (v1, bodies1, hash1), (v2, bodies2, hash2) = versions
    assert bodies1 == bodies2 and hash1 == hash2
    assert v1 != v2 and v1.endswith(hash1) and v2.endswith(hash2)


async def test_mtls_peer_identity_reaches_authorize(cache):
    pki = TestPki()
    seen = []

    def authorize(identity, node):
        seen.append(identity)
        if identity != "spiffe://mesh.test/ns/gw/sa/gateway":
            raise PermissionError("unknown identity")
        return node.id

    credentials = grpc.ssl_server_credentials(
        [(pki.server_key, pki.server_cert)], root_certificates=pki.ca_pem, require_client_auth=True
    )
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A"}))
    server = XdsServer(cache=cache, authorize=authorize)
    port = await server.start("127.0.0.1:0", credentials)
    try:
        for spiffe_id, expected in (
            ("spiffe://mesh.test/ns/gw/sa/gateway", None),
            ("spiffe://mesh.test/ns/other/sa/x", grpc.StatusCode.PERMISSION_DENIED),
        ):
            cert, key = pki.issue(spiffe_id)
            creds = grpc.ssl_channel_credentials(pki.ca_pem, key, cert)
            async with AdsClient(f"127.0.0.1:{port}", credentials=creds) as client:
                client.send(CLUSTER)
                if expected is None:
                    assert (await client.recv()).names == ["A"]
                    assert server.connections()[0].peer_identity == spiffe_id
                else:
                    assert await client.status() == expected
        assert seen == ["spiffe://mesh.test/ns/gw/sa/gateway", "spiffe://mesh.test/ns/other/sa/x"]
    finally:
        await server.stop(None)
