"""The gRPC Aggregated Discovery Service on grpc.aio: state of the world and incremental (delta).

Requests are parsed with envoy-data-plane's betterproto2 classes (they are small);
responses leave as bytes built from the cache's pre-encoded resources, through a
generic handler whose serializer passes bytes through. Every stream is authorized
before any work: ``authorize(peer_identity, node)`` maps the verified client identity
(mTLS URI SAN, or None on plaintext) and the client-asserted Node to the node key of
the snapshot it may read, or raises PermissionError.

Clients are bounded (limits.py): streams per identity and per connection, names per
type and per request; bytes that do not parse end the stream with INVALID_ARGUMENT and
one log line; HTTP/2 keepalive matches the bootstraps' (keepalive.py).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest

from controlplane.logs import clip
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.delta import RemovalPolicy
from controlplane.xds.delta_stream import DeltaAdsStream
from controlplane.xds.keepalive import XDS_KEEPALIVE, KeepalivePolicy
from controlplane.xds.limits import DEFAULT_LIMITS, LimitExceeded, StreamAdmission, StreamLimits
from controlplane.xds.memory import MemoryReleaser
from controlplane.xds.metrics import XdsMetrics
from controlplane.xds.peer import peer_identity
from controlplane.xds.shared_responses import SharedResponses
from controlplane.xds.stream import AdsStream, ConnectionInfo, MalformedRequest, ProtocolViolation

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
Authorize = Callable[[str | None, Any], "str | Awaitable[str]"]


def trust_node_id(peer_identity: str | None, node: Any) -> str:
    """An ``authorize`` keying snapshots on the client-asserted node id.

    For tests and plaintext demos only: it trusts whatever the client claims.
    """
    return node.id


def _passthrough(data: bytes) -> bytes:
    return data


def _parse_or_malformed(message_class: type) -> Callable[[bytes], Any]:
    """A request deserializer that yields MalformedRequest instead of raising: a raise inside grpc's
    deserializer ends the RPC with UNKNOWN and a long traceback; the stream reports it cleanly instead."""

    def deserialize(data: bytes) -> Any:
        try:
            return message_class.parse(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the client's malformed message
            return MalformedRequest(message_class.__name__, f"{type(exc).__name__}: {exc}")

    return deserialize


class XdsServer:
    """ADS over grpc.aio, serving snapshots from a ``SnapshotCache``."""

    def __init__(
        self,
        *,
        cache: SnapshotCache,
        authorize: Authorize,
        metrics: XdsMetrics | None = None,
        control_plane_id: str | None = None,
        delta_policies: Mapping[str, RemovalPolicy] | None = None,
        limits: StreamLimits = DEFAULT_LIMITS,
        keepalive: KeepalivePolicy = XDS_KEEPALIVE,
        extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    ) -> None:
        """``delta_policies`` overrides delta.DEFAULT_POLICIES (removed_resources per type URL);
        ``keepalive`` must be the policy the proxies' bootstraps were rendered with; ``extra_handlers``
        are other services served on the same port and mTLS (the identity API)."""
        self._extra_handlers = tuple(extra_handlers)
        self.cache = cache
        self._delta_policies = dict(delta_policies or {})
        self.metrics = metrics if metrics is not None else XdsMetrics()
        self._authorize = authorize
        self._control_plane_id = (
            control_plane_id or f"agentic-cp/{socket.gethostname()}/{cache.version_prefix}"
        )
        self._limits = limits
        self._admission = StreamAdmission(limits)
        self._keepalive = keepalive
        self._memory = MemoryReleaser()
        self.shared_responses = SharedResponses()  # one encoding of a push for all SotW streams
        self._streams: dict[int, AdsStream] = {}
        self._stream_ids = itertools.count(1)
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    @property
    def registry(self):
        """The Prometheus registry holding this server's metrics."""
        return self.metrics.registry

    def connections(self) -> list[ConnectionInfo]:
        """A consistent copy of every open stream's state, for debug endpoints."""
        return [stream.info() for stream in self._streams.values()]

    async def start(self, address: str, server_credentials: grpc.ServerCredentials | None = None) -> int:
        """Listen on ``host:port`` (port 0 picks one) and return the bound port."""
        server = grpc.aio.server(options=self._keepalive.server_options())
        server.add_generic_rpc_handlers([self._handlers(), *self._extra_handlers])
        if server_credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, server_credentials)
        await server.start()
        self._server = server
        log.info("xDS server listening on %s (port %s)", address, self.port)
        return self.port

    async def stop(self, grace: float | None = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    def _handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            ADS_SERVICE,
            {
                "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    self._stream_aggregated,
                    request_deserializer=_parse_or_malformed(DiscoveryRequest),
                    response_serializer=_passthrough,
                ),
                "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    self._delta_aggregated,
                    request_deserializer=_parse_or_malformed(DeltaDiscoveryRequest),
                    response_serializer=_passthrough,
                ),
            },
        )

    async def _delta_aggregated(self, request_iterator: AsyncIterator[Any], context: Any) -> None:
        await self._serve(request_iterator, context, delta=True)

    async def _stream_aggregated(self, request_iterator: AsyncIterator[Any], context: Any) -> None:
        await self._serve(request_iterator, context, delta=False)

    async def _serve(self, request_iterator: AsyncIterator[Any], context: Any, *, delta: bool) -> None:
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        stream = await self._admit(first, context, delta=delta)
        try:
            self._admission.open(stream.peer_identity, stream.peer)
        except LimitExceeded as exc:
            await self._refuse_over_limit(context, stream, exc)
        self._streams[stream.stream_id] = stream
        self.metrics.connected_proxies.inc()
        if delta:
            self.metrics.delta_streams.inc()
        log.info("%s stream %d open: node %s key %s peer %s", stream.variant, stream.stream_id,
                 clip(stream.node_id), clip(stream.node_key), stream.peer)
        try:
            await stream.run(first, requests)
        except ProtocolViolation as exc:
            self.metrics.rejected_streams.labels("protocol").inc()
            log.warning("stream %d from %s (%s) ended: %s", stream.stream_id, clip(stream.node_id),
                        stream.peer, clip(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except LimitExceeded as exc:
            await self._refuse_over_limit(context, stream, exc)
        finally:
            self._admission.close(stream.peer_identity, stream.peer)
            del self._streams[stream.stream_id]
            self.metrics.connected_proxies.dec()
            if delta:
                self.metrics.delta_streams.dec()
            log.info("stream %d closed: node %s", stream.stream_id, clip(stream.node_id))
            self._memory.stream_closed()

    async def _refuse_over_limit(self, context: Any, stream: AdsStream, exc: LimitExceeded) -> None:
        self.metrics.limit_refusals.labels(exc.reason).inc()
        log.warning("stream %d from %s (identity %s, %s) refused: %s", stream.stream_id, clip(stream.node_id),
                    clip(stream.peer_identity), stream.peer, exc)
        await context.abort(exc.code, str(exc))

    async def _admit(self, first: Any, context: Any, *, delta: bool = False) -> AdsStream:
        """Validate the first request and authorize the client, or abort the RPC."""
        if isinstance(first, MalformedRequest):
            log.warning("malformed %s from %s: %s", first.message_type, context.peer(), clip(first.error))
            await self._reject(context, grpc.StatusCode.INVALID_ARGUMENT, f"malformed {first.message_type}",
                               "malformed")
        node = first.node
        if node is None or not node.id:  # R3
            await self._reject(context, grpc.StatusCode.INVALID_ARGUMENT, "missing node information", "node")
        if not first.type_url:  # R2
            await self._reject(
                context, grpc.StatusCode.INVALID_ARGUMENT, "type URL is required for ADS", "type"
            )
        identity = peer_identity(context.auth_context())
        try:
            node_key = self._authorize(identity, node)
            if inspect.isawaitable(node_key):
                node_key = await node_key
        except PermissionError as exc:
            log.warning("refused node %s (identity %s): %s", clip(node.id), clip(identity), clip(exc))
            await self._reject(
                context, grpc.StatusCode.PERMISSION_DENIED, str(exc) or "not authorized", "auth"
            )
        extra: dict[str, Any] = {"policies": self._delta_policies} if delta else {"shared": self.shared_responses}
        return (DeltaAdsStream if delta else AdsStream)(
            **extra,
            stream_id=next(self._stream_ids),
            node_id=node.id,
            node_key=node_key,
            peer=context.peer(),
            peer_identity=identity,
            cache=self.cache,
            metrics=self.metrics,
            write=context.write,
            control_plane_id=self._control_plane_id,
            limits=self._limits,
        )

    async def _reject(self, context: Any, code: grpc.StatusCode, message: str, reason: str) -> None:
        self.metrics.rejected_streams.labels(reason).inc()
        await context.abort(code, message)
