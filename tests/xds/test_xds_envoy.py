"""A real Envoy over plaintext ADS: it ACKs a static-response config, NACKs a bad listener
without a resend loop while it keeps serving the old one, and recovers on a fix."""

from __future__ import annotations

import asyncio

import pytest
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router  # noqa: F401 (registers the type)
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    HttpConnectionManager,
)

from controlplane.xds.cache import Snapshot
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, XdsResource
from tests.support.envoy import EnvoyProcess, free_port, http_get_async, write_config
from tests.xds.xds_bootstrap import ads_bootstrap
from tests.xds.xds_helpers import wait_for_status

pytestmark = pytest.mark.slow
NODE = "envoy-under-test"
ADS = {"ads": {}, "resourceApiVersion": "V3"}


def listener(port: int, address: str = "127.0.0.1") -> XdsResource:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "statPrefix": "ingress",
        "rds": {"configSource": ADS, "routeConfigName": "main-routes"},
        "httpFilters": [
            {
                "name": "envoy.filters.http.router",
                "typedConfig": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    message = Listener.from_dict(
        {
            "name": "main",
            "address": {"socketAddress": {"address": address, "portValue": port}},
            "filterChains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typedConfig": hcm}]}
            ],
        }
    )
    return XdsResource.from_message("main", message)


def routes(body: str) -> XdsResource:
    return XdsResource.from_message(
        "main-routes",
        RouteConfiguration.from_dict(
            {
                "name": "main-routes",
                "virtualHosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [
                            {
                                "match": {"prefix": "/"},
                                "directResponse": {"status": 200, "body": {"inlineString": body}},
                            }
                        ],
                    }
                ],
            }
        ),
    )


def world(
    listener_port: int, body: str = "hello from xds", address: str = "127.0.0.1", timeout: str = "1s"
) -> Snapshot:
    cluster = Cluster.from_dict(
        {"name": "backend", "type": "EDS", "connectTimeout": timeout, "edsClusterConfig": {"edsConfig": ADS}}
    )
    empty_cla = ClusterLoadAssignment(cluster_name="backend")  # explicit, not absent (R27)
    return Snapshot(
        [
            listener(listener_port, address),
            routes(body),
            XdsResource.from_message("backend", cluster),
            XdsResource.from_message("backend", empty_cla),
        ]
    )


async def test_envoy_acks_nacks_and_keeps_serving(server, cache, tmp_path):
    listen_port = free_port()
    cache.set_snapshot(NODE, world(listen_port))
    bootstrap = ads_bootstrap(node_id=NODE, xds_port=server.port, admin_port=free_port())
    with EnvoyProcess.start(write_config(bootstrap, tmp_path / "bootstrap.json"), log_level="warning") as envoy:
        await envoy.wait_ready_async()
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
            await wait_for_status(server, type_url, "SYNCED", node_id=NODE)
        [conn] = server.connections()
        snapshot = cache.get(NODE)
        acked = {t.type_url: t.version_acked for t in conn.types}
        assert acked[LISTENER] == snapshot.version(LISTENER) and acked[CLUSTER] == snapshot.version(CLUSTER)
        dump = envoy.admin_get("/config_dump?resource=dynamic_listeners")
        assert '"name": "main"' in dump and str(listen_port) in dump
        assert await http_get_async(f"http://127.0.0.1:{listen_port}/") == (200, "hello from xds")

        # A listener Envoy must reject: it NACKs, we record it and never resend the same bytes.
        cache.set_snapshot(NODE, world(listen_port, address="not-an-ip"))
        await wait_for_status(server, LISTENER, "ERROR", node_id=NODE)
        lds = next(t for t in server.connections()[0].types if t.type_url == LISTENER)
        assert "not-an-ip" in (lds.last_nack_error or "")
        assert lds.version_acked == snapshot.version(LISTENER)  # Envoy still runs the old version
        pushes = server.registry.get_sample_value("xds_pushes_total", {"type": "lds"})
        await asyncio.sleep(1.0)  # a NACK loop would push many times a second
        assert server.registry.get_sample_value("xds_pushes_total", {"type": "lds"}) == pushes
        assert envoy.stat("listener_manager.lds.update_rejected") == 1
        assert await http_get_async(f"http://127.0.0.1:{listen_port}/") == (200, "hello from xds")

        # The correction goes out at once: a route-only change, which must not touch the listener.
        modified = envoy.stat("listener_manager.listener_modified")
        cache.set_snapshot(NODE, world(listen_port, body="fixed"))

        async def fixed() -> bool:
            return await http_get_async(f"http://127.0.0.1:{listen_port}/") == (200, "fixed")

        await envoy.wait_until_async(fixed, "the corrected route")
        await wait_for_status(server, LISTENER, "SYNCED", node_id=NODE)
        assert envoy.stat("listener_manager.listener_modified") == modified
        assert envoy.stat("listener_manager.lds.update_rejected") == 1

        # R28: a modified cluster warms only when EDS arrives again, even though its CLA is unchanged.
        eds_pushes = server.registry.get_sample_value("xds_pushes_total", {"type": "eds"})
        cds_updates = envoy.stat("cluster_manager.cds.update_success")
        cache.set_snapshot(NODE, world(listen_port, body="fixed", timeout="2s"))

        async def cluster_warmed() -> bool:
            return (
                envoy.stat("cluster_manager.cds.update_success") > cds_updates
                and envoy.stat("cluster_manager.warming_clusters") == 0
            )

        await envoy.wait_until_async(cluster_warmed, "the modified cluster to warm")
        assert server.registry.get_sample_value("xds_pushes_total", {"type": "eds"}) == eds_pushes + 1
        dump = envoy.admin_get("/config_dump?resource=dynamic_active_clusters")
        assert '"connect_timeout": "2s"' in dump
