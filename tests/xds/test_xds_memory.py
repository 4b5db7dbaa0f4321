"""Many streams, some with the largest subscriptions allowed, then all closed: the server keeps no
per-stream state and gives most of the memory back (printed report: RSS before, during, after).

The server runs in its own process so its RSS is not mixed with the clients'."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

from controlplane.xds.resources import CLUSTER, ENDPOINT
from tests.xds.adsclient import METHOD

pytestmark = pytest.mark.slow
STREAMS, BIG_STREAMS, NAMES = 600, 20, 1000

SERVER = """
import asyncio, json, sys
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.limits import StreamLimits
from controlplane.xds.server import XdsServer, trust_node_id

async def main():
    server = XdsServer(cache=SnapshotCache(), authorize=trust_node_id,
                       limits=StreamLimits(streams_per_connection=10_000))
    print(await server.start("127.0.0.1:0"), flush=True)
    while await asyncio.to_thread(sys.stdin.readline):  # any line: report what the server still holds
        print(json.dumps({"streams": len(server._streams), "tracked": server._admission.tracked(),
                          "watchers": sum(len(w) for w in server.cache._watchers.values()),
                          "trims": server._memory.trims}), flush=True)

asyncio.run(main())
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _ask(proc: asyncio.subprocess.Process) -> dict:
    proc.stdin.write(b"?\n")
    await proc.stdin.drain()
    return json.loads(await proc.stdout.readline())


async def _forever(request):
    yield request
    await asyncio.Event().wait()


async def test_closed_streams_leave_nothing_behind_and_memory_returns():
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVER, stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, env=env)
    try:
        port = int(await proc.stdout.readline())
        before = _rss_mb(proc.pid)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            rpc = channel.stream_stream(METHOD, request_serializer=bytes, response_deserializer=bytes)
            calls = []
            for i in range(STREAMS):
                names = [f"cluster-{i}-{n:04d}-" + "x" * 40 for n in range(NAMES)] if i < BIG_STREAMS else []
                type_url = ENDPOINT if names else CLUSTER
                calls.append(rpc(_forever(DiscoveryRequest(node=Node(id=f"node-{i}"), type_url=type_url,
                                                          resource_names=names))))
            for _ in range(300):
                if (await _ask(proc))["streams"] == STREAMS:
                    break
                await asyncio.sleep(0.1)
            during = _rss_mb(proc.pid)
            for call in calls:
                call.cancel()
        for _ in range(300):
            held = await _ask(proc)
            if held["streams"] == 0 and held["trims"] >= 1:
                break
            await asyncio.sleep(0.1)
        after = _rss_mb(proc.pid)
        print(f"\nmemory report: {STREAMS} streams ({BIG_STREAMS} with {NAMES} names): RSS before {before:.0f} MB, "
              f"during {during:.0f} MB, after close {after:.0f} MB; server holds {held}")
        assert held == {"streams": 0, "tracked": 0, "watchers": 0, "trims": held["trims"]} and held["trims"] >= 1
    finally:
        proc.kill()
        await proc.wait()
