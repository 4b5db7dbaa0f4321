"""What one xDS client may hold open on the server, so a careless or hostile one cannot exhaust it.

A proxy needs one ADS stream and a few hundred resource names per type; a client certificate
that opens thousands of streams, or subscribes to tens of thousands of names, is refused
instead of being served at the cost of everyone else. ``StreamAdmission`` counts open streams
per verified identity and per HTTP/2 connection; the stream checks subscription sizes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class StreamLimits:
    """Per-client bounds (every value must be at least 1)."""

    streams_per_identity: int = 8
    streams_per_connection: int = 8
    names_per_type: int = 1000  # resource names one stream may subscribe to for one type URL
    names_per_request: int = 1000  # names one request may carry (delta: subscribe + unsubscribe)
    types_per_stream: int = 32  # distinct type URLs one stream may use


DEFAULT_LIMITS = StreamLimits()


class LimitExceeded(Exception):
    """A request or stream over a ``StreamLimits`` bound; ``code`` is the gRPC status to end it with."""

    def __init__(self, message: str, *, code: grpc.StatusCode, reason: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason  # metrics label


class StreamAdmission:
    """Open-stream counts per identity and per connection; entries vanish when their count drops to 0."""

    def __init__(self, limits: StreamLimits) -> None:
        self._limits = limits
        self._by_identity: Counter[str] = Counter()
        self._by_connection: Counter[str] = Counter()

    def open(self, identity: str | None, connection: str) -> None:
        """Count a new stream, or raise LimitExceeded. Plaintext (identity None) is bounded per connection."""
        if identity is not None and self._by_identity[identity] >= self._limits.streams_per_identity:
            raise LimitExceeded(
                f"identity already has {self._limits.streams_per_identity} open xDS streams",
                code=grpc.StatusCode.RESOURCE_EXHAUSTED, reason="streams_per_identity")
        if self._by_connection[connection] >= self._limits.streams_per_connection:
            raise LimitExceeded(
                f"connection already has {self._limits.streams_per_connection} open xDS streams",
                code=grpc.StatusCode.RESOURCE_EXHAUSTED, reason="streams_per_connection")
        if identity is not None:
            self._by_identity[identity] += 1
        self._by_connection[connection] += 1

    def close(self, identity: str | None, connection: str) -> None:
        if identity is not None:
            _decrement(self._by_identity, identity)
        _decrement(self._by_connection, connection)

    def tracked(self) -> int:
        """How many identities and connections hold a count (0 when every stream has closed)."""
        return len(self._by_identity) + len(self._by_connection)


def _decrement(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


def check_request_size(count: int, limits: StreamLimits) -> None:
    if count > limits.names_per_request:
        raise LimitExceeded(
            f"request carries {count} resource names; at most {limits.names_per_request} per request",
            code=grpc.StatusCode.INVALID_ARGUMENT, reason="names_per_request")


def check_subscription_size(type_url: str, count: int, limits: StreamLimits) -> None:
    if count > limits.names_per_type:
        raise LimitExceeded(
            f"stream would subscribe to {count} names of {type_url}; at most {limits.names_per_type} per type",
            code=grpc.StatusCode.RESOURCE_EXHAUSTED, reason="names_per_type")


def check_type_count(count: int, limits: StreamLimits) -> None:
    if count > limits.types_per_stream:
        raise LimitExceeded(
            f"stream uses {count} type URLs; at most {limits.types_per_stream}",
            code=grpc.StatusCode.RESOURCE_EXHAUSTED, reason="types_per_stream")
