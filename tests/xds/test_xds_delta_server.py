"""DeltaAggregatedResources over real gRPC: admission, reconnect with initial_resource_versions,
NACK parking, stale nonces, metrics, /debug/syncz, and SotW and delta side by side.
Also the bootstrap's ``delta`` option and ``agentic-cp bootstrap --delta``."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import pytest
import yaml

from controlplane.admin.server import AdminServer
from controlplane.cli import main as cli
from controlplane.translate.bootstrap import render_bootstrap
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.xds.adsclient import AdsClient
from tests.xds.xds_delta_client import DeltaClient
from tests.xds.xds_helpers import res, snapshot_of, wait_for_status


@pytest.fixture
def dconnect(server):
    def _connect(node_id: str | None = "test-node") -> DeltaClient:
        return DeltaClient(f"127.0.0.1:{server.port}", node_id=node_id)

    return _connect


def sample(server, name: str, labels: dict | None = None) -> float:
    return server.registry.get_sample_value(name, labels or {}) or 0.0


def delta_types(server, node_id: str = "test-node") -> dict:
    [conn] = [c for c in server.connections() if c.node_id == node_id]
    assert conn.variant == "delta"
    return {t.type_url: t for t in conn.types}


# --- admission -------------------------------------------------------------------------------------


async def test_delta_is_served_on_the_same_server(server, cache, dconnect):
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A,B"}))
    async with dconnect() as client:
        client.send(CLUSTER)
        got = await client.recv()
    assert got.type_url == CLUSTER and sorted(got.names) == ["A", "B"]
    assert got.versions["A"] == res(CLUSTER, "A").version  # per-resource version: the content hash
    assert got.system_version_info == cache.get("test-node").version(CLUSTER)
    assert got.raw.control_plane.identifier.startswith("agentic-cp/")


@pytest.mark.parametrize(
    ("node_id", "type_url", "reason"), [(None, CLUSTER, "node"), ("test-node", "", "type")]
)
async def test_a_bad_first_delta_request_is_refused(server, dconnect, node_id, type_url, reason):
    async with dconnect(node_id=node_id) as client:
        client.send(type_url)
        assert await client.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert sample(server, "xds_rejected_streams_total", {"reason": reason}) == 1


async def test_a_later_request_without_type_url_ends_the_stream(server, cache, dconnect):
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A"}))
    async with dconnect() as client:
        client.send(CLUSTER)
        await client.recv()
        client.send("")
        assert await client.status() == grpc.StatusCode.INVALID_ARGUMENT


async def test_nothing_is_served_before_the_first_snapshot(server, cache, dconnect):
    async with dconnect() as client:
        client.send(CLUSTER)
        await client.expect_quiet(0.2)
        cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A"}))
        assert (await client.recv()).names == ["A"]


# --- reconnect with initial_resource_versions -----------------------------------------------------


async def test_reconnect_with_initial_resource_versions(server, cache, dconnect):
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A,B,C", ENDPOINT: "A,B,C"}))
    async with dconnect() as client:
        client.send(CLUSTER)
        await client.recv_acked()
        client.send(ENDPOINT, ["A", "B", "C"])
        await client.recv_acked()
        held = {t: dict(v) for t, v in client.held.items()}
    # While the client is away: B changes, C goes away.
    cache.set_snapshot(
        "test-node",
        snapshot_of({CLUSTER: "A,B", ENDPOINT: "A,B"}).with_resources(
            res(CLUSTER, "B", "2"), res(ENDPOINT, "B", "2")
        ),
    )
    async with dconnect() as client:
        client.send(CLUSTER, initial_versions=held[CLUSTER])
        cds = await client.recv_acked()
        assert cds.names == ["B"] and cds.removed == ["C"]  # current A not resent, stale B is, C removed
        client.send(ENDPOINT, ["A", "B", "C"], initial_versions={**held[ENDPOINT], "X": "unknown"})
        eds = await client.recv_acked()
        # EDS: stale B resent; C (held, gone) answered as absent; X (claimed, not subscribed) ignored.
        assert eds.names == ["B"] and eds.removed == ["C"]
        await client.expect_quiet()
        await wait_for_status(server, ENDPOINT, "SYNCED")


async def test_reconnect_claiming_unknown_versions_gets_everything(server, cache, dconnect):
    cache.set_snapshot("test-node", snapshot_of({LISTENER: "L1,L2"}))
    async with dconnect() as client:
        client.send(LISTENER, initial_versions={"L1": "from-another-control-plane", "L2": "?"})
        assert sorted((await client.recv()).names) == ["L1", "L2"]


# --- ACK, NACK, nonces ---------------------------------------------------------------------------


async def test_nack_is_counted_parked_and_the_correction_goes_out(server, cache, dconnect):
    cache.set_snapshot("test-node", snapshot_of({LISTENER: "L", ROUTE: "R"}))
    async with dconnect() as client:
        client.send(LISTENER)
        await client.recv_acked()
        await wait_for_status(server, LISTENER, "SYNCED")
        cache.set_snapshot("test-node", snapshot_of({LISTENER: "L", ROUTE: "R"}, version="bad"))
        bad = await client.recv()
        client.nack(bad, "bad listener")
        await wait_for_status(server, LISTENER, "ERROR")
        pushes = sample(server, "xds_pushes_total", {"type": "lds"})
        client.send(LISTENER, ["L"])  # even an explicit subscribe does not resend the rejected version
        cache.set_snapshot("test-node", snapshot_of({LISTENER: "L", ROUTE: "R2"}, version="bad"))
        await client.expect_quiet()
        assert sample(server, "xds_pushes_total", {"type": "lds"}) == pushes
        assert sample(server, "xds_nacks_total", {"type": "lds"}) == 1
        info = delta_types(server)[LISTENER]
        assert info.last_nack_error == "bad listener"
        assert dict(info.resources_rejected) == {"L": res(LISTENER, "L", "bad").version}
        assert dict(info.resources_acked) == {"L": res(LISTENER, "L").version}
        cache.set_snapshot("test-node", snapshot_of({LISTENER: "L", ROUTE: "R"}, version="fixed"))
        fixed = await client.recv_acked()
        assert fixed.versions == {"L": res(LISTENER, "L", "fixed").version}
        await wait_for_status(server, LISTENER, "SYNCED")


async def test_stale_nonce_still_changes_the_subscription(server, cache, dconnect):
    cache.set_snapshot("test-node", snapshot_of({ROUTE: "A,B,C"}))
    async with dconnect() as client:
        client.send(ROUTE, ["A"])
        first = await client.recv()
        client.send(ROUTE, ["B"])
        await client.recv()
        client.send(ROUTE, ["C"], nonce=first.nonce)  # a late ACK of the first response, plus C
        got = await client.recv()
        assert got.names == ["C"]


async def test_spontaneous_subscription_is_not_an_ack(server, cache, dconnect):
    cache.set_snapshot("test-node", snapshot_of({ROUTE: "A,B"}))
    async with dconnect() as client:
        client.send(ROUTE, ["A"])
        await client.recv()
        client.send(ROUTE, ["B"])  # no nonce
        got = await client.recv()
        assert got.names == ["B"]
        assert delta_types(server)[ROUTE].status == "STALE"
        client.ack(got)
        await wait_for_status(server, ROUTE, "SYNCED")
        assert sample(server, "xds_acks_total", {"type": "rds"}) == 1


async def test_cds_change_resends_eds_for_that_cluster_over_the_wire(server, cache, dconnect):
    cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A,B", ENDPOINT: "A,B"}))
    async with dconnect() as client:
        client.send(CLUSTER)
        await client.recv_acked()
        client.send(ENDPOINT, ["A", "B"])
        await client.recv_acked()
        cache.set_snapshot(
            "test-node", snapshot_of({CLUSTER: "A,B", ENDPOINT: "A,B"}).with_resources(res(CLUSTER, "A", "2"))
        )
        cds = await client.recv_acked()
        eds = await client.recv_acked()
        assert (cds.type_url, cds.names, eds.type_url, eds.names) == (CLUSTER, ["A"], ENDPOINT, ["A"])
        await client.expect_quiet()


# --- metrics, syncz, both variants ---------------------------------------------------------------


async def test_delta_metrics_and_syncz(server, cache, dconnect):
    admin = AdminServer(xds=server, ready=lambda: True)
    await admin.start("127.0.0.1", 0)
    try:
        cache.set_snapshot("test-node", snapshot_of({CLUSTER: "A,B", LISTENER: "L"}))
        async with dconnect() as client, AdsClient(f"127.0.0.1:{server.port}", node_id="sotw-node") as sotw:
            cache.set_snapshot("sotw-node", snapshot_of({CLUSTER: "S"}))
            client.send(CLUSTER)
            await client.recv_acked()
            client.send(LISTENER)
            bad = await client.recv()
            client.nack(bad, "no good")
            sotw.send(CLUSTER)
            assert (await sotw.recv()).names == ["S"]
            await wait_for_status(server, CLUSTER, "SYNCED")
            await wait_for_status(server, LISTENER, "ERROR")
            async with aiohttp.ClientSession(f"http://127.0.0.1:{admin.port}") as http:
                syncz = await (await http.get("/debug/syncz")).json()
                metrics = await (await http.get("/metrics")).text()
        proxies = {p["proxy"]: p for p in syncz["proxies"]}
        assert proxies["sotw-node"]["variant"] == "sotw"
        assert "resources_sent" not in proxies["sotw-node"]["types"][0]
        delta = proxies["test-node"]
        assert delta["variant"] == "delta"
        by_type = {t["type_url"]: t for t in delta["types"]}
        cds = by_type[CLUSTER]
        assert cds["status"] == "SYNCED" and cds["wildcard"] is True
        assert cds["resources_acked"] == {"A": res(CLUSTER, "A").version, "B": res(CLUSTER, "B").version}
        assert cds["version_acked"] == cds["version_sent"] == cache.get("test-node").version(CLUSTER)
        lds = by_type[LISTENER]
        assert lds["status"] == "ERROR" and lds["error"] == "no good"
        assert lds["resources_rejected"] == {"L": res(LISTENER, "L").version} and lds["resources_acked"] == {}
        assert "xds_delta_streams 1.0" in metrics and "xds_connected_proxies 2.0" in metrics
        assert 'xds_delta_resources_sent_total{type="cds"} 2.0' in metrics
        assert 'xds_nacks_total{type="lds"} 1.0' in metrics
        assert 'xds_pushes_total{type="cds"} 2.0' in metrics  # one delta, one SotW
        await asyncio.sleep(0.05)
        assert sample(server, "xds_delta_streams") == 0
    finally:
        await admin.stop()


# --- bootstrap ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("delta", "api_type"), [(False, "GRPC"), (True, "DELTA_GRPC")])
def test_render_bootstrap_delta_option(tmp_path, delta, api_type):
    boot = render_bootstrap(
        node_id="gateway~ns~gw",
        node_cluster="gw",
        xds_host="127.0.0.1",
        xds_port=15010,
        admin_port=0,
        credentials_dir=tmp_path,
        trust_domain="cluster.local",
        delta=delta,
    )
    ads = boot["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == api_type and ads["set_node_on_first_message_only"] is True


@pytest.mark.parametrize(("flags", "api_type"), [([], "GRPC"), (["--delta"], "DELTA_GRPC")])
def test_cli_bootstrap_delta_flag(tmp_path, capsys, flags, api_type):
    out = tmp_path / "gw"
    assert (
        cli(
            [
                "bootstrap",
                "--xds-address",
                "127.0.0.1:15010",
                "--state-dir",
                str(tmp_path / "state"),
                "--gateway",
                "quickstart/agent-gateway",
                "--out",
                str(out),
                "--admin-port",
                "0",
                *flags,
            ]
        )
        == 0
    )
    boot = yaml.safe_load((out / "envoy.yaml").read_text())
    assert boot["dynamic_resources"]["ads_config"]["api_type"] == api_type
