"""Simulated Envoys: `streams` SotW ADS streams in one process, each on its own connection, ACKing every
response at once as Envoy does. Prints one JSON line per RouteConfiguration response: stream, version,
wall-clock time of its ACK. Requests and responses are encoded and read by hand (a few top-level
fields), so the client's own cost stays small next to the server's.

`python -m bench.simclient PORT NODE_ID FIRST_STREAM STREAMS ROUTE_NAME...`
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc

from controlplane.xds import resources as types
from controlplane.xds.wire import len_field, str_field

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def request(*, type_url: str, names: list[str] = (), version: str = "", nonce: str = "", node_id: str = "") -> bytes:
    """DiscoveryRequest{version_info=1, node=2 (Node.id=1), resource_names=3, type_url=4, response_nonce=5}."""
    node = len_field(2, str_field(1, node_id)) if node_id else b""
    return (str_field(1, version) + node + b"".join(len_field(3, n.encode()) for n in names)
            + str_field(4, type_url) + str_field(5, nonce))


def top_fields(data: bytes) -> dict[int, bytes]:
    """The last value of each length-delimited top-level field (enough for version, type URL, nonce)."""
    fields, pos = {}, 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        if key & 7 != 2:
            raise ValueError(f"unexpected wire type {key & 7}")
        size, pos = _varint(data, pos)
        fields[key >> 3] = data[pos:pos + size]
        pos += size
    return fields


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


async def one_stream(index: int, target: str, node_id: str, routes: list[str]) -> None:
    async with grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1),
                                                          ("grpc.max_receive_message_length", 1 << 30)]) as channel:
        call = channel.stream_stream(METHOD, request_serializer=bytes, response_deserializer=bytes)()
        await call.write(request(type_url=types.CLUSTER, node_id=node_id))
        await call.write(request(type_url=types.LISTENER))
        await call.write(request(type_url=types.ROUTE, names=routes))
        subscribed = {types.ROUTE: routes}
        async for message in call:
            fields = top_fields(message)
            type_url, version, nonce = (fields.get(n, b"").decode() for n in (4, 1, 5))
            await call.write(request(type_url=type_url, names=subscribed.get(type_url, []), version=version,
                                     nonce=nonce))
            if type_url == types.ROUTE:
                print(json.dumps({"stream": index, "version": version, "t": time.time()}), flush=True)


async def main(port: int, node_id: str, first: int, streams: int, routes: list[str]) -> None:
    target = f"127.0.0.1:{port}"
    await asyncio.gather(*(one_stream(i, target, node_id, routes) for i in range(first, first + streams)),
                         return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]))
