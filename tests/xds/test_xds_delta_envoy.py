"""A real Envoy 1.40 over incremental ADS (``api_type: DELTA_GRPC``).

It ACKs listeners, routes, clusters and endpoints; an update of one route reaches it as
one RDS response carrying only that route; a bad listener is NACKed once, parked (no
resend loop) while the old listener keeps serving, and the correction goes out at once;
a modified cluster is followed by its ClusterLoadAssignment so it finishes warming (R28).
"""

from __future__ import annotations

import asyncio

import pytest

from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.support.envoy import EnvoyProcess, free_port, http_get_async, write_config
from tests.xds.test_xds_envoy import world
from tests.xds.xds_bootstrap import ads_bootstrap
from tests.xds.xds_helpers import wait_for_status

pytestmark = pytest.mark.slow
NODE = "delta-envoy-under-test"


def delta_bootstrap(*, xds_port: int) -> dict:
    bootstrap = ads_bootstrap(node_id=NODE, xds_port=xds_port, admin_port=free_port())
    bootstrap["dynamic_resources"]["ads_config"]["api_type"] = "DELTA_GRPC"
    return bootstrap


def pushes(server, short: str) -> float:
    return server.registry.get_sample_value("xds_pushes_total", {"type": short}) or 0.0


def type_info(server, type_url: str):
    [conn] = server.connections()
    assert conn.variant == "delta"
    return next(t for t in conn.types if t.type_url == type_url)


async def test_delta_envoy_acks_updates_nacks_and_keeps_serving(server, cache, tmp_path):
    listen_port = free_port()
    cache.set_snapshot(NODE, world(listen_port))
    with EnvoyProcess.start(write_config(delta_bootstrap(xds_port=server.port), tmp_path / "bootstrap.json"), log_level="warning") as envoy:
        await envoy.wait_ready_async()
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
            await wait_for_status(server, type_url, "SYNCED", node_id=NODE)
        snapshot = cache.get(NODE)
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
            info = type_info(server, type_url)
            expected = {n: r.version for n, r in snapshot.resources(type_url).items()}
            assert dict(info.resources_acked) == expected, type_url
        assert type_info(server, CLUSTER).wildcard and type_info(server, LISTENER).wildcard
        assert type_info(server, ROUTE).subscribed == ("main-routes",)
        assert type_info(server, ENDPOINT).subscribed == ("backend",)
        assert await http_get_async(f"http://127.0.0.1:{listen_port}/") == (200, "hello from xds")

        # An update of one route: one RDS response, nothing else pushed, the listener untouched.
        before = {t: pushes(server, t) for t in ("cds", "eds", "lds", "rds")}
        modified = envoy.stat("listener_manager.listener_modified")
        cache.set_snapshot(NODE, world(listen_port, body="updated"))

        async def updated() -> bool:
            return await http_get_async(f"http://127.0.0.1:{listen_port}/") == (200, "updated")

        await envoy.wait_until_async(updated, "the updated route")
        await wait_for_status(server, ROUTE, "SYNCED", node_id=NODE)
        after = {t: pushes(server, t) for t in ("cds", "eds", "lds", "rds")}
        assert after == {**before, "rds": before["rds"] + 1}
        assert envoy.stat("listener_manager.listener_modified") == modified
        assert dict(type_info(server, ROUTE).resources_acked) == {
            "main-routes": cache.get(NODE).resources(ROUTE)["main-routes"].version
        }

        # A listener Envoy must reject: NACKed once, parked, the old listener keeps serving.
        good_listener = cache.get(NODE).resources(LISTENER)["main"].version
        cache.set_snapshot(NODE, world(listen_port, body="updated", address="not-an-ip"))
        await wait_for_status(server, LISTENER, "ERROR", node_id=NODE)
        lds = type_info(server, LISTENER)
        assert "not-an-ip" in (lds.last_nack_error or "")
        assert dict(lds.resources_rejected) == {"main": cache.get(NODE).resources(LISTENER)["main"].version}
        assert dict(lds.resources_acked) == {"main": good_listener}  # Envoy still runs the old one
        lds_pushes = pushes(server, "lds")
        await asyncio.sleep(1.0)  # a NACK loop would push many times a second
        assert pushes(server, "lds") == lds_pushes
        assert envoy.stat("listener_manager.lds.update_rejected") == 1
        assert await http_get_async(f"http://127.0.0.1:{listen_port}/") == (200, "updated")

        # The correction (back to a valid listener) goes out at once and is ACKed.
        cache.set_snapshot(NODE, world(listen_port, body="fixed"))

        async def fixed() -> bool:
            return await http_get_async(f"http://127.0.0.1:{listen_port}/") == (200, "fixed")

        await envoy.wait_until_async(fixed, "the corrected config")
        await wait_for_status(server, LISTENER, "SYNCED", node_id=NODE)
        assert envoy.stat("listener_manager.lds.update_rejected") == 1

        # R28: a modified cluster warms only when EDS arrives again, though its CLA is unchanged.
        eds_pushes = pushes(server, "eds")
        cds_updates = envoy.stat("cluster_manager.cds.update_success")
        cache.set_snapshot(NODE, world(listen_port, body="fixed", timeout="2s"))

        async def cluster_warmed() -> bool:
            return (
                envoy.stat("cluster_manager.cds.update_success") > cds_updates
                and envoy.stat("cluster_manager.warming_clusters") == 0
            )

        await envoy.wait_until_async(cluster_warmed, "the modified cluster to warm")
        assert pushes(server, "eds") == eds_pushes + 1
        dump = envoy.admin_get("/config_dump?resource=dynamic_active_clusters")
        assert '"connect_timeout": "2s"' in dump
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
            await wait_for_status(server, type_url, "SYNCED", node_id=NODE)
