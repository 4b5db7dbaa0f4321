"""Helpers shared by the xDS tests: synthetic resources and waiting on server state."""

from __future__ import annotations

import asyncio

from controlplane.xds.cache import Snapshot
from controlplane.xds.resources import XdsResource
from controlplane.xds.server import XdsServer
from controlplane.xds.wire import str_field


def res(type_url: str, name: str, version: str = "1") -> XdsResource:
    """A synthetic resource: field 1 is its name (as in every xDS type), field 2 marks its version."""
    return XdsResource(type_url, name, str_field(1, name) + str_field(2, f"v{version}"))


def snapshot_of(spec: dict[str, str], version: str = "1") -> Snapshot:
    """``{type_url: "A,B,C"}`` -> a snapshot of synthetic resources at ``version``."""
    return Snapshot(res(t, n, version) for t, names in spec.items() for n in names.split(",") if n)


async def wait_for_status(
    server: XdsServer, type_url: str, status: str, *, node_id: str = "test-node"
) -> None:
    """Wait until the server shows ``status`` for a type (it has processed the client's last request)."""
    for _ in range(500):
        for conn in server.connections():
            if conn.node_id == node_id and any(
                t.type_url == type_url and t.status == status for t in conn.types
            ):
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{node_id} never reached {status} for {type_url}: {server.connections()}")
