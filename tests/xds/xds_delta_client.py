"""A raw incremental (delta) ADS client for tests: send DeltaDiscoveryRequests, read parsed responses.

Like adsclient.AdsClient it speaks the real wire protocol through grpc.aio with
envoy-data-plane's message classes, so the server is exercised exactly as a delta Envoy
would reach it. Nothing is ACKed implicitly: tests ACK (or NACK) each response themselves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Self

import grpc
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DeltaDiscoveryResponse
from envoy_data_plane.google.rpc import Status

DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


@dataclass
class DeltaReceived:
    """A delta response with the parts tests look at."""

    type_url: str
    system_version_info: str
    nonce: str
    versions: dict[str, str]  # name -> per-resource version
    bodies: dict[str, bytes]  # name -> resource body (the Any's value)
    removed: list[str]
    raw: DeltaDiscoveryResponse

    @property
    def names(self) -> list[str]:
        return list(self.versions)


class DeltaClient:
    """One delta ADS stream. Use as an async context manager; ``node_id=None`` sends no node."""

    def __init__(self, target: str, *, node_id: str | None = "test-node") -> None:
        self.target = target
        self.node_id = node_id
        self._outbox: asyncio.Queue[DeltaDiscoveryRequest | None] = asyncio.Queue()
        self._node_sent = False
        self.held: dict[str, dict[str, str]] = {}  # type -> name -> version, as a client would keep

    async def __aenter__(self) -> Self:
        self.channel = grpc.aio.insecure_channel(self.target)
        rpc = self.channel.stream_stream(
            DELTA_METHOD, request_serializer=bytes, response_deserializer=DeltaDiscoveryResponse.parse
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
        try:
            while (response := await self.call.read()) is not grpc.aio.EOF:
                self._inbox.put_nowait(response)
        except grpc.aio.AioRpcError as exc:
            self._inbox.put_nowait(exc)
        self._inbox.put_nowait(grpc.aio.EOF)

    async def _requests(self):
        while (request := await self._outbox.get()) is not None:
            yield request

    def send(
        self,
        type_url: str,
        subscribe=(),
        unsubscribe=(),
        *,
        nonce: str = "",
        initial_versions: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        request = DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=dict(initial_versions or {}),
            response_nonce=nonce,
        )
        if error is not None:
            request.error_detail = Status(code=3, message=error)
        if not self._node_sent and self.node_id is not None:
            request.node = Node(id=self.node_id, cluster="test")
            self._node_sent = True
        self._outbox.put_nowait(request)

    def ack(self, received: DeltaReceived, subscribe=(), unsubscribe=()) -> None:
        self.send(received.type_url, subscribe, unsubscribe, nonce=received.nonce)

    def nack(self, received: DeltaReceived, error: str = "rejected") -> None:
        self.send(received.type_url, nonce=received.nonce, error=error)

    async def recv(self, timeout: float = 5.0) -> DeltaReceived:
        """The next response (raises TimeoutError if none arrives in time)."""
        response = await asyncio.wait_for(self._inbox.get(), timeout)
        if response is grpc.aio.EOF:
            raise EOFError("stream closed")
        if isinstance(response, Exception):
            raise response
        versions = {r.name: r.version for r in response.resources}
        bodies = {r.name: r.resource.value for r in response.resources}
        assert len(versions) == len(response.resources), "a name twice in one response (R21)"
        held = self.held.setdefault(response.type_url, {})
        held.update(versions)
        for name in response.removed_resources:
            held.pop(name, None)
        return DeltaReceived(
            response.type_url,
            response.system_version_info,
            response.nonce,
            versions,
            bodies,
            list(response.removed_resources),
            response,
        )

    async def recv_acked(self, timeout: float = 5.0) -> DeltaReceived:
        """Receive a response and ACK it at once."""
        got = await self.recv(timeout)
        self.ack(got)
        return got

    async def expect_quiet(self, seconds: float = 0.3) -> None:
        """Assert that no response arrives for ``seconds``."""
        try:
            response = await asyncio.wait_for(self._inbox.get(), seconds)
        except TimeoutError:
            return
        what = (
            f"{response.type_url} +{[r.name for r in response.resources]} -{list(response.removed_resources)}"
            if isinstance(response, DeltaDiscoveryResponse)
            else repr(response)
        )
        raise AssertionError(f"expected no response, got: {what}")

    async def status(self, timeout: float = 5.0) -> grpc.StatusCode:
        return await asyncio.wait_for(self.call.code(), timeout)
