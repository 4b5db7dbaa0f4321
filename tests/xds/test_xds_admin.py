"""The admin HTTP server on a real port: health, readiness, metrics, syncz and config_dump."""

from __future__ import annotations

import asyncio
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.core.v3 import DataSource
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import Secret, TlsCertificate

from controlplane.admin.server import AdminServer
from controlplane.xds.cache import Snapshot
from controlplane.xds.resources import CLUSTER, LISTENER, SECRET, XdsResource
from tests.xds.xds_helpers import snapshot_of, wait_for_status

KEY_PEM = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n"


@pytest.fixture
async def admin(server):
    state = {"ready": False}
    admin = AdminServer(xds=server, ready=lambda: state["ready"])
    await admin.start("127.0.0.1", 0)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{admin.port}") as http:
        yield http, state
    await admin.stop()


async def test_healthz_and_readyz(admin):
    http, state = admin
    assert (await http.get("/healthz")).status == 200
    assert (await http.get("/readyz")).status == 503
    state["ready"] = True
    assert (await http.get("/readyz")).status == 200


async def test_metrics_use_bounded_labels(admin, server, connect, cache):
    http, _ = admin
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A"}))
    async with connect() as client:
        client.send(CLUSTER)
        await client.recv()
        client.send(CLUSTER)
        await wait_for_status(server, CLUSTER, "SYNCED")
        text = await (await http.get("/metrics")).text()
    assert 'xds_pushes_total{type="cds"} 1.0' in text
    assert "xds_connected_proxies 1.0" in text
    assert 'xds_convergence_time_seconds_count{type="cds"} 1.0' in text
    assert "test-node" not in text  # never a node id in a label


async def test_syncz_reports_synced_stale_and_error(admin, server, connect, cache):
    http, _ = admin
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A", LISTENER: "L"}))
    async with connect() as client:
        client.send(CLUSTER)
        cds = await client.recv()
        client.send(CLUSTER)
        client.send(LISTENER)
        await client.recv()
        client.nack(LISTENER, error="bad listener")
        await wait_for_status(server, LISTENER, "ERROR")
        syncz = await (await http.get("/debug/syncz")).json()
    [proxy] = syncz["proxies"]
    assert proxy["proxy"] == "test-node" and proxy["identity"] is None
    by_type = {t["type_url"]: t for t in proxy["types"]}
    assert by_type[CLUSTER]["status"] == "SYNCED"
    assert by_type[CLUSTER]["version_acked"] == by_type[CLUSTER]["version_sent"] == cds.version_info
    assert by_type[LISTENER]["status"] == "ERROR" and by_type[LISTENER]["error"] == "bad listener"
    assert by_type[LISTENER]["version_acked"] == ""


async def test_config_dump_decodes_and_redacts(admin, server, connect, cache):
    http, _ = admin
    secret = Secret(
        name="gw-cert",
        tls_certificate=TlsCertificate(
            certificate_chain=DataSource(inline_string="-----BEGIN CERTIFICATE-----\nabc\n"),
            private_key=DataSource(inline_string=KEY_PEM),
        ),
    )
    cluster = Cluster(name="tools", alt_stat_name="tools-stats")
    cache.set_snapshot(
        "gw/key",
        Snapshot([XdsResource.from_message("gw-cert", secret), XdsResource.from_message("tools", cluster)]),
    )
    response = await http.get("/debug/config_dump", params={"proxy": "gw/key"})
    assert response.status == 200
    text = await response.text()
    assert "TOPSECRETKEYMATERIAL" not in text
    dump = await response.json()
    configs = {c["type_url"]: c for c in dump["configs"]}
    [sds] = configs[SECRET]["resources"]
    assert sds["resource"]["tlsCertificate"]["privateKey"] == "[redacted]"
    assert sds["resource"]["tlsCertificate"]["certificateChain"]["inlineString"].startswith("-----BEGIN CERT")
    [cds] = configs[CLUSTER]["resources"]
    assert cds["resource"] == {"name": "tools", "altStatName": "tools-stats"}
    assert cds["version"] == XdsResource.from_message("tools", cluster).version


async def test_config_dump_by_connected_proxy_id_and_unknown_proxy(admin, server, cache):
    http, _ = admin
    assert (await http.get("/debug/config_dump", params={"proxy": "nobody"})).status == 404
    assert (await http.get("/debug/config_dump")).status == 404


async def test_config_dump_follows_a_connected_proxy_to_its_node_key(admin, server, connect, cache):
    http, _ = admin
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A"}))
    async with connect() as client:
        client.send(CLUSTER)
        await client.recv()
        dump = await (await http.get("/debug/config_dump", params={"proxy": "test-node"})).json()
    assert dump["node_key"] == "test-node"
    assert [c["type_url"] for c in dump["configs"]] == [CLUSTER]


# --- exposure: idle connections, connection limit, debug views -----------------------------------------


async def _started(server, **options) -> AdminServer:
    admin = AdminServer(xds=server, ready=lambda: True, **options)
    await admin.start("127.0.0.1", 0)
    return admin


async def _closed_by_server(reader: asyncio.StreamReader, *, within: float = 30.0) -> bool:
    """True when the server ends the connection (EOF or reset) before `within` seconds; generous on purpose."""
    try:
        while await asyncio.wait_for(reader.read(4096), within):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("sent", [b"", b"GET /heal"], ids=["nothing", "half-a-request-line"])
async def test_a_client_that_never_finishes_a_request_is_disconnected(server, sent):
    admin = await _started(server, idle_timeout=0.5)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", admin.port)
        writer.write(sent)
        await writer.drain()
        assert await _closed_by_server(reader)
        writer.close()
    finally:
        await admin.stop()


async def test_connections_past_the_limit_are_refused_and_probes_work_again_after(server):
    admin = await _started(server, max_connections=2)
    held = []
    try:
        for _ in range(2):
            held.append(await asyncio.open_connection("127.0.0.1", admin.port))
        await asyncio.sleep(0.1)  # let the server see both
        reader, writer = await asyncio.open_connection("127.0.0.1", admin.port)
        assert await _closed_by_server(reader)
        writer.close()
        for _, w in held:
            w.close()
        async with aiohttp.ClientSession(f"http://127.0.0.1:{admin.port}") as http:
            for _ in range(50):  # the server notices the closed ones asynchronously
                try:
                    if (await http.get("/healthz")).status == 200:
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            assert (await http.get("/healthz")).status == 200
    finally:
        await admin.stop()


async def test_debug_views_need_the_bearer_token_and_probes_do_not(server):
    admin = await _started(server, token="s3cret-token")
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{admin.port}") as http:
            for path in ("/debug/syncz", "/debug/config_dump?proxy=x"):
                assert (await http.get(path)).status == 401
                assert (await http.get(path, headers={"Authorization": "Bearer wrong"})).status == 401
                assert (await http.get(path, headers={"Authorization": "Basic s3cret-token"})).status == 401
            ok = await http.get("/debug/syncz", headers={"Authorization": "Bearer s3cret-token"})
            assert ok.status == 200 and (await ok.json()) == {"proxies": []}
            for path in ("/healthz", "/readyz", "/metrics"):
                assert (await http.get(path)).status == 200, path
    finally:
        await admin.stop()


@pytest.mark.parametrize("peer, status", [("10.1.2.3", 403), ("127.0.0.1", 200), ("::1", 200)])
async def test_without_a_token_debug_views_answer_loopback_only(server, peer, status):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda key, default=None: (peer, 4242) if key == "peername" else default
    admin = AdminServer(xds=server, ready=lambda: True)
    request = make_mocked_request("GET", "/debug/syncz", transport=transport, app=admin.app)
    try:
        response = await admin._guard_debug(request, admin.syncz)
    except web.HTTPException as refused:
        response = refused
    assert response.status == status
    health = make_mocked_request("GET", "/healthz", transport=transport, app=admin.app)
    assert (await admin._guard_debug(health, admin.healthz)).status == 200
