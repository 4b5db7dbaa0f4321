"""HTTP/2 keepalive of the xDS channel, shared by the server and the bootstraps it is paired with.

Envoy pings the control plane every ``interval`` on an idle ADS stream (the bootstrap's
``connection_keepalive``). gRPC servers count a ping that arrives sooner than
``min_ping_interval_without_data_ms`` (5 min by default) as a strike and, after
``max_ping_strikes``, close the connection with GOAWAY "too_many_pings": every gateway then
reconnects and takes a full push every couple of minutes. Deriving both sides from one
``KeepalivePolicy`` keeps the client's interval inside what the server permits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeepalivePolicy:
    """Client ping interval and timeout; the server tolerates pings at half the interval (Envoy jitters)."""

    interval_s: float = 30.0
    timeout_s: float = 5.0
    #: server-side keepalive: how often the server pings a quiet client, to drop dead peers
    server_interval_s: float = 60.0
    server_timeout_s: float = 10.0
    max_ping_strikes: int = 2

    @property
    def min_client_ping_interval_ms(self) -> int:
        return int(self.interval_s * 1000 / 2)

    def server_options(self) -> list[tuple[str, int]]:
        """grpc server options that accept this policy's client pings and ping quiet clients."""
        return [
            ("grpc.http2.min_ping_interval_without_data_ms", self.min_client_ping_interval_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
            ("grpc.keepalive_time_ms", int(self.server_interval_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.server_timeout_s * 1000)),
            ("grpc.http2.max_pings_without_data", 0),  # let server keepalive ping an idle stream
        ]

    def envoy_connection_keepalive(self) -> dict[str, str]:
        """The bootstrap's ``http2_protocol_options.connection_keepalive`` for this policy."""
        return {"interval": _duration(self.interval_s), "timeout": _duration(self.timeout_s)}


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


XDS_KEEPALIVE = KeepalivePolicy()
