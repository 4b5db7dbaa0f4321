"""One ADS stream: requests and snapshot changes in, ordered DiscoveryResponses out.

The stream owns a ``TypeState`` per type URL (protocol.py) and a single inbox, so
requests and snapshot notifications are handled one at a time in arrival order and the
protocol state needs no locks. Responses are encoded from the cached ``Any`` bytes of
each resource; nothing is serialized through betterproto2 here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from controlplane.logs import clip
from controlplane.xds.ack_log import AckLog
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.limits import (
    DEFAULT_LIMITS,
    StreamLimits,
    check_request_size,
    check_subscription_size,
    check_type_count,
)
from controlplane.xds.metrics import XdsMetrics
from controlplane.xds.protocol import Request, RequestKind, Response, TypeState, plan_pushes, push_order
from controlplane.xds.resources import short_name
from controlplane.xds.shared_responses import SharedResponses
from controlplane.xds.wire import discovery_response_tail

log = logging.getLogger(__name__)

_SNAPSHOT = object()  # inbox marker: the node key's snapshot changed
_END = object()  # inbox marker: the client closed its side


class ProtocolViolation(Exception):
    """A request the server refuses; the server ends the stream with INVALID_ARGUMENT."""


@dataclass(frozen=True, slots=True)
class MalformedRequest:
    """What the server's deserializer yields for bytes that do not parse as ``message_type``."""

    message_type: str
    error: str


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """Debug view of one type on one stream."""

    type_url: str
    wildcard: bool
    subscribed: tuple[str, ...]
    version_sent: str
    version_acked: str
    nonce_sent: str
    status: str
    last_nack_error: str | None
    # delta streams only: per-resource versions (name, version), sorted by name
    resources_sent: tuple[tuple[str, str], ...] = ()
    resources_acked: tuple[tuple[str, str], ...] = ()
    resources_rejected: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Debug view of one connected stream (for /debug/syncz and friends)."""

    stream_id: int
    node_id: str
    node_key: str
    peer: str
    peer_identity: str | None
    connected_since: float  # wall-clock seconds since the epoch
    types: tuple[TypeInfo, ...]
    variant: str = "sotw"  # "sotw" or "delta"


def to_request(message: Any) -> Request:
    """Reduce a betterproto2 DiscoveryRequest to the protocol's view of it."""
    error = message.error_detail
    error_message = None
    if error is not None:
        error_message = error.message or f"error code {error.code}"
    return Request(
        type_url=message.type_url,
        resource_names=tuple(message.resource_names),
        version_info=message.version_info,
        response_nonce=message.response_nonce,
        error_message=error_message,
    )


class AdsStream:
    """Serves one client for the lifetime of its ADS stream."""

    variant = "sotw"

    def __init__(
        self,
        *,
        stream_id: int,
        node_id: str,
        node_key: str,
        peer: str,
        peer_identity: str | None,
        cache: SnapshotCache,
        metrics: XdsMetrics,
        write: Callable[[bytes], Awaitable[None]],
        control_plane_id: str = "",
        limits: StreamLimits = DEFAULT_LIMITS,
        shared: SharedResponses | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.node_id, self.node_key = node_id, node_key
        self.peer, self.peer_identity = peer, peer_identity
        self.connected_since = time.time()
        self.states: dict[str, TypeState] = {}
        self._cache, self._metrics, self._write = cache, metrics, write
        self._control_plane_id = control_plane_id
        self._limits = limits
        self._shared = shared if shared is not None else SharedResponses()
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._snapshot_queued = False
        self._nonce = 0
        self._ack_log = AckLog(node_id)
        # Unique across streams, replicas and restarts, so an old stream's nonce never matches (R6).
        self._nonce_prefix = f"{cache.version_prefix}-{stream_id:x}-"

    async def run(self, first: Any, requests: AsyncIterator[Any]) -> None:
        """Handle ``first`` and every later request and snapshot change until the client leaves."""
        reader = asyncio.create_task(self._read(requests))
        unwatch = self._cache.watch(self.node_key, self._on_snapshot)
        try:
            await self._on_request(first)
            while (item := await self._inbox.get()) is not _END:
                if item is _SNAPSHOT:
                    self._snapshot_queued = False
                    await self._on_snapshot_change()
                elif isinstance(item, BaseException):
                    raise item
                else:
                    await self._on_request(item)
        finally:
            unwatch()
            reader.cancel()

    async def _read(self, requests: AsyncIterator[Any]) -> None:
        try:
            async for message in requests:
                self._inbox.put_nowait(message)
        except Exception as exc:  # noqa: BLE001 - re-raised by run(), which owns the stream
            self._inbox.put_nowait(exc)
        finally:
            self._inbox.put_nowait(_END)

    def _on_snapshot(self) -> None:
        if not self._snapshot_queued:  # coalesce bursts of snapshot updates into one push
            self._snapshot_queued = True
            self._inbox.put_nowait(_SNAPSHOT)

    async def _on_request(self, message: Any) -> None:
        if isinstance(message, MalformedRequest):
            raise ProtocolViolation(f"malformed {message.message_type}")
        request = self._to_request(message)
        if not request.type_url:
            raise ProtocolViolation("type_url is required on ADS")  # R2
        self._check_limits(request)
        state = self.states.get(request.type_url)
        if state is None:
            state = self.states[request.type_url] = self._new_state(request.type_url)
        kind = state.on_request(request)
        self._account(state, kind, request)
        if not self._answers(kind):
            return
        snapshot = self._cache.get(self.node_key)
        if snapshot is not None:  # R32: not served before the first snapshot exists
            # convergence of a request-driven push counts from the request, not the old snapshot
            await self._send(self._plan(snapshot, [request.type_url]), time.monotonic())

    async def _on_snapshot_change(self) -> None:
        snapshot = self._cache.get(self.node_key)
        if snapshot is not None:
            await self._send(self._plan(snapshot, self.states), self._cache.set_at(self.node_key))

    def _check_limits(self, request: Any) -> None:
        """Raise LimitExceeded before a request grows the stream past its StreamLimits."""
        check_request_size(self._names_in(request), self._limits)
        if request.type_url not in self.states:
            check_type_count(len(self.states) + 1, self._limits)
        check_subscription_size(clip(request.type_url, 200), self._names_after(request), self._limits)

    # --- what differs between the variants (the delta stream overrides these) ----------------------------

    @staticmethod
    def _names_in(request: Request) -> int:
        return len(request.resource_names)

    def _names_after(self, request: Request) -> int:
        """How many names the type's subscription holds once ``request`` applies (SotW: the request's)."""
        return len(set(request.resource_names) - {"*"})

    @staticmethod
    def _to_request(message: Any) -> Request:
        return to_request(message)

    def _new_state(self, type_url: str) -> TypeState:
        return TypeState(type_url)

    @staticmethod
    def _answers(kind: RequestKind) -> bool:
        return kind is not RequestKind.STALE  # R9: no response; the subscription change was kept

    def _plan(self, snapshot: Any, type_urls: Any) -> list[Response]:
        return plan_pushes(self.states, snapshot, type_urls)

    def _encode(self, response: Response, nonce: str) -> bytes:
        return self._shared.head(response) + discovery_response_tail(nonce=nonce,
                                                                     control_plane_id=self._control_plane_id)

    def _count(self, response: Any, label: str) -> None:
        """Variant-specific metrics of one response sent."""

    def _account(self, state: TypeState, kind: RequestKind, request: Request) -> None:
        label = short_name(state.type_url)
        if kind is RequestKind.STALE:
            self._metrics.stale_nonces.labels(label).inc()
        elif kind is RequestKind.NACK:
            self._record_nack(label, f"version {state.version_sent}", request.error_message)
            self._ack_log.outcome("NACK", label, state.version_sent, state.sent_stamp, request.error_message)
            self._cache.report_nack(self.node_key, state.type_url, state.version_sent or "",
                                    request.error_message or "")
        elif kind is RequestKind.ACK:
            self._record_ack(state, label, converged=True)

    def _record_nack(self, label: str, what: str, error: str | None) -> None:
        self._metrics.nacks.labels(label).inc()
        log.warning("%s NACK from %s (%s) for %s %s: %s", self.variant, clip(self.node_id), self.peer, label,
                    clip(what), clip(error))

    def _record_ack(self, state: Any, label: str, *, converged: bool) -> None:
        """Count an ACK; when it answers the latest push, observe how long that push took to converge."""
        self._metrics.acks.labels(label).inc()
        if converged:
            self._ack_log.outcome("ACK", label, state.version_sent, state.sent_stamp)
        if converged and state.sent_stamp is not None:
            self._metrics.convergence_time.labels(label).observe(time.monotonic() - state.sent_stamp)
            state.sent_stamp = None

    async def _send(self, responses: list[Any], stamp: float | None) -> None:
        for response in responses:
            started = time.perf_counter()
            self._nonce += 1
            nonce = f"{self._nonce_prefix}{self._nonce:x}"
            self.states[response.type_url].record_sent(response, nonce, stamp)  # R13: before writing
            body = self._encode(response, nonce)
            await self._write(body)
            label = short_name(response.type_url)
            self._metrics.pushes.labels(label).inc()
            self._count(response, label)
            self._metrics.config_size.labels(label).observe(len(body))
            self._metrics.push_time.labels(label).observe(time.perf_counter() - started)

    def info(self) -> ConnectionInfo:
        types = tuple(self._type_info(self.states[t]) for t in push_order(self.states))
        return ConnectionInfo(
            self.stream_id,
            self.node_id,
            self.node_key,
            self.peer,
            self.peer_identity,
            self.connected_since,
            types,
            self.variant,
        )

    @staticmethod
    def _type_info(state: Any) -> TypeInfo:
        return _type_info(state)


def _type_info(state: TypeState) -> TypeInfo:
    return TypeInfo(
        type_url=state.type_url,
        wildcard=state.subscription.wildcard,
        subscribed=tuple(sorted(state.subscription.names)),
        version_sent=state.version_sent,
        version_acked=state.version_acked,
        nonce_sent=state.nonce_sent,
        status=state.status.value,
        last_nack_error=state.last_nack_error,
    )
