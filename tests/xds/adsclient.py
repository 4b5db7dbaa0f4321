"""A raw ADS client for tests: send DiscoveryRequests, receive parsed DiscoveryResponses.

It speaks the real wire protocol through grpc.aio with envoy-data-plane's message
classes, so the server under test is exercised exactly as Envoy would reach it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Self

import grpc
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from envoy_data_plane.google.rpc import Status

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


@dataclass
class Received:
    """A response with the parts tests look at."""

    type_url: str
    version_info: str
    nonce: str
    names: list[str]
    bodies: dict[str, bytes]
    raw: DiscoveryResponse


class StreamClient:
    """The stream plumbing both ADS variants share: one RPC, requests queued, responses read in the
    background. Subclasses name the RPC and the response type, and build their own requests."""

    METHOD = ""
    RESPONSE: type = DiscoveryResponse

    def __init__(self, target: str, *, node_id: str | None = "test-node", credentials=None) -> None:
        self.target = target
        self.node_id = node_id
        self._credentials = credentials
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._node_sent = False

    async def __aenter__(self) -> Self:
        if self._credentials is None:
            self.channel = grpc.aio.insecure_channel(self.target)
        else:
            self.channel = grpc.aio.secure_channel(self.target, self._credentials)
        rpc = self.channel.stream_stream(
            self.METHOD, request_serializer=bytes, response_deserializer=self.RESPONSE.parse
        )
        self.call = rpc(self._requests())
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        self._outbox.put_nowait(None)
        self.call.cancel()
        self._reader.cancel()
        await self.channel.close()

    async def _read(self) -> None:
        """Read responses in the background: cancelling a wait must not cancel the RPC."""
        try:
            while (response := await self.call.read()) is not grpc.aio.EOF:
                self._inbox.put_nowait(response)
        except grpc.aio.AioRpcError as exc:
            self._inbox.put_nowait(exc)
        self._inbox.put_nowait(grpc.aio.EOF)

    async def _requests(self):
        while (request := await self._outbox.get()) is not None:
            yield request

    def _queue(self, request) -> None:
        """Send a request; the first one carries the node."""
        if not self._node_sent and self.node_id is not None:
            request.node = Node(id=self.node_id, cluster="test")
            self._node_sent = True
        self._outbox.put_nowait(request)

    async def _next(self, timeout: float):
        """The next response (TimeoutError if none arrives in time; EOFError once the stream closed)."""
        response = await asyncio.wait_for(self._inbox.get(), timeout)
        if response is grpc.aio.EOF:
            raise EOFError("stream closed")
        if isinstance(response, Exception):
            raise response
        return response

    async def expect_quiet(self, seconds: float = 0.3) -> None:
        """Assert that no response arrives for ``seconds`` (the server never responds more than necessary)."""
        try:
            response = await asyncio.wait_for(self._inbox.get(), seconds)
        except TimeoutError:
            return
        what = self._describe(response) if isinstance(response, self.RESPONSE) else repr(response)
        raise AssertionError(f"expected no response, got: {what}")

    @staticmethod
    def _describe(response) -> str:
        return f"{response.type_url} {response.version_info}"

    async def status(self, timeout: float = 5.0) -> grpc.StatusCode:
        """Wait for the RPC to end and return its status code."""
        return await asyncio.wait_for(self.call.code(), timeout)


class AdsClient(StreamClient):
    """One state-of-the-world ADS stream. Use as an async context manager; ``node_id=None`` sends no node."""

    METHOD = METHOD
    RESPONSE = DiscoveryResponse

    def __init__(self, target: str, *, node_id: str | None = "test-node", credentials=None) -> None:
        super().__init__(target, node_id=node_id, credentials=credentials)
        self.last_nonce: dict[str, str] = {}
        self.last_version: dict[str, str] = {}
        self.accepted_version: dict[str, str] = {}

    def send(
        self,
        type_url: str,
        names=(),
        *,
        version: str | None = None,
        nonce: str | None = None,
        error: str | None = None,
    ) -> None:
        """Queue a request. By default version and nonce are the last received for the type (an ACK)."""
        request = DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            version_info=self.last_version.get(type_url, "") if version is None else version,
            response_nonce=self.last_nonce.get(type_url, "") if nonce is None else nonce,
        )
        if error is not None:
            request.error_detail = Status(code=3, message=error)
        elif request.response_nonce and request.response_nonce == self.last_nonce.get(type_url):
            self.accepted_version[type_url] = request.version_info
        self._queue(request)

    def nack(self, type_url: str, names=(), *, error: str = "rejected") -> None:
        """Reject the last response of a type: its nonce, but the previous accepted version."""
        self.send(type_url, names, version=self.accepted_version.get(type_url, ""), error=error)

    async def recv(self, timeout: float = 5.0) -> Received:
        """The next response (raises TimeoutError if none arrives in time)."""
        response = await self._next(timeout)
        self.last_nonce[response.type_url] = response.nonce
        self.last_version[response.type_url] = response.version_info
        names = [_name_of(any_.value) for any_ in response.resources]
        bodies = {name: any_.value for name, any_ in zip(names, response.resources, strict=True)}
        return Received(response.type_url, response.version_info, response.nonce, names, bodies, response)


def _name_of(body: bytes) -> str:
    """Field 1 of every xDS resource here is its name (Listener, Cluster, RouteConfiguration,
    Secret; ClusterLoadAssignment.cluster_name is field 1 too): read it off the wire."""
    if not body or body[0] != 0x0A:
        return ""
    length, pos, shift = 0, 1, 0
    while True:
        byte = body[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if not byte & 0x80:
            break
    return body[pos : pos + length].decode()
