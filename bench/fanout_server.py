"""The server side of the convergence bench, in its own process, driven by lines on stdin.

`real`: this project's XdsServer over the bench mesh's live pipeline; `edit` rewrites one policy file
and publishes, as `serve --config` would. `raw`: a bare grpc.aio server holding the same snapshots,
which answers each subscription with the same resource bytes and on `edit` writes the edited
RouteConfiguration response to every stream: the limit this machine puts on fanning those bytes out.
Each command answers one JSON line on stdout; `quit` reports the process's peak RSS.

`python -m bench.fanout_server real|raw RULES`
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import grpc

from bench.pipeline import NODE_ID, Mesh, peak_rss_mib
from controlplane.xds import resources as types
from controlplane.xds.cache import Snapshot
from controlplane.xds.limits import StreamLimits
from controlplane.xds.server import ADS_SERVICE, XdsServer, trust_node_id
from controlplane.xds.wire import encode_discovery_response, str_field

BENCH_LIMITS = StreamLimits(streams_per_identity=100_000, streams_per_connection=100_000)


class RawFanout:
    """A bare ADS server: per stream, the snapshot's bytes once per subscribed type; ACKs are read, not acted on."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.streams: list[asyncio.Queue] = []

    def shared(self, type_url: str, snapshot: Snapshot) -> bytes:
        """The response without its nonce; a stream appends its own nonce field (fields may come in any order)."""
        return encode_discovery_response(version_info=snapshot.version(type_url), type_url=type_url, nonce="",
                                         resources=[r.any_bytes for r in snapshot.resources(type_url).values()])

    async def serve(self, requests, context) -> None:
        outbox: asyncio.Queue = asyncio.Queue()
        self.streams.append(outbox)
        nonce = 0

        async def read() -> None:
            async for message in requests:
                fields = _fields(message)
                if not fields.get(5):  # a first request for its type: answer it
                    outbox.put_nowait(self.shared(fields[4].decode(), self.snapshot))

        reader = asyncio.create_task(read())
        try:
            while True:
                body = await outbox.get()
                nonce += 1
                await context.write(body + str_field(5, str(nonce)))
        finally:
            reader.cancel()
            self.streams.remove(outbox)

    def push(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        body = self.shared(types.ROUTE, snapshot)
        for outbox in self.streams:
            outbox.put_nowait(body)

    async def start(self) -> int:
        server = grpc.aio.server(options=[("grpc.max_send_message_length", 1 << 30)])
        handler = grpc.stream_stream_rpc_method_handler(self.serve, request_deserializer=bytes,
                                                        response_serializer=bytes)
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            ADS_SERVICE, {"StreamAggregatedResources": handler})])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self.server = server
        return port


def _fields(message: bytes) -> dict[int, bytes]:
    from bench.simclient import top_fields

    try:
        return top_fields(message)
    except ValueError:
        return {}


async def main(mode: str, rules: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mesh = Mesh(Path(tmp) / "mesh", rules)
        cold = mesh.cold_build()
        if mode == "raw":
            raw = RawFanout(mesh.snapshot())
            port = await raw.start()
        else:
            server = XdsServer(cache=mesh.cache, authorize=trust_node_id, limits=BENCH_LIMITS)
            port = await server.start("127.0.0.1:0")
        snapshot = mesh.snapshot()
        say({"port": port, "node_id": NODE_ID, "routes": sorted(snapshot.resources(types.ROUTE)),
             "route_version": snapshot.version(types.ROUTE), "cold_build": cold})
        loop = asyncio.get_running_loop()
        while (line := (await loop.run_in_executor(None, sys.stdin.readline)).strip()) != "quit":
            if not line:
                break
            say(edit_raw(mesh, raw) if mode == "raw" else edit_real(mesh))
        say({"peak_rss_mib": peak_rss_mib()})


def edit_real(mesh: Mesh) -> dict:
    started = time.time()
    figures = mesh.edit(mesh.revision % mesh.policies)
    return {"t0": started, "route_version": mesh.snapshot().version(types.ROUTE), **figures}


def edit_raw(mesh: Mesh, raw: RawFanout) -> dict:
    figures = mesh.edit(mesh.revision % mesh.policies)  # computed before t0: the raw server only fans out
    started = time.time()
    raw.push(mesh.snapshot())
    return {"t0": started, "route_version": mesh.snapshot().version(types.ROUTE), **figures}


def say(record: dict) -> None:
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
