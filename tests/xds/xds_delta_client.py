"""A raw incremental (delta) ADS client for tests: send DeltaDiscoveryRequests, read parsed responses.

Like adsclient.AdsClient it speaks the real wire protocol through grpc.aio with
envoy-data-plane's message classes, so the server is exercised exactly as a delta Envoy
would reach it. Nothing is ACKed implicitly: tests ACK (or NACK) each response themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DeltaDiscoveryResponse
from envoy_data_plane.google.rpc import Status

from tests.xds.adsclient import StreamClient

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


class DeltaClient(StreamClient):
    """One delta ADS stream. Use as an async context manager; ``node_id=None`` sends no node."""

    METHOD = DELTA_METHOD
    RESPONSE = DeltaDiscoveryResponse

    def __init__(self, target: str, *, node_id: str | None = "test-node") -> None:
        super().__init__(target, node_id=node_id)
        self.held: dict[str, dict[str, str]] = {}  # type -> name -> version, as a client would keep

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
        self._queue(request)

    def ack(self, received: DeltaReceived, subscribe=(), unsubscribe=()) -> None:
        self.send(received.type_url, subscribe, unsubscribe, nonce=received.nonce)

    def nack(self, received: DeltaReceived, error: str = "rejected") -> None:
        self.send(received.type_url, nonce=received.nonce, error=error)

    async def recv(self, timeout: float = 5.0) -> DeltaReceived:
        """The next response (raises TimeoutError if none arrives in time)."""
        response = await self._next(timeout)
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

    @staticmethod
    def _describe(response: DeltaDiscoveryResponse) -> str:
        return f"{response.type_url} +{[r.name for r in response.resources]} -{list(response.removed_resources)}"
