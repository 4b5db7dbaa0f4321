"""Fixtures for the xDS tests: a cache, a live server on a free port, raw ADS clients."""

from __future__ import annotations

import pytest

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.server import XdsServer, trust_node_id
from tests.xds.adsclient import AdsClient


@pytest.fixture
def cache() -> SnapshotCache:
    return SnapshotCache()


@pytest.fixture
async def server(cache):
    srv = XdsServer(cache=cache, authorize=trust_node_id)
    await srv.start("127.0.0.1:0")
    yield srv
    await srv.stop(grace=None)


@pytest.fixture
def connect(server):
    """``async with connect(node_id=...) as client`` opens a raw ADS stream to the server."""

    def _connect(node_id: str | None = "test-node") -> AdsClient:
        return AdsClient(f"127.0.0.1:{server.port}", node_id=node_id)

    return _connect
