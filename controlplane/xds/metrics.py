"""Prometheus metrics of the xDS server, in a registry owned by one server object.

Labels are bounded: only the short type name (cds/eds/lds/rds/sds/other), never a node
id or stream id, so a mesh of any size exports a fixed number of series. A registry per
server (instead of the global default) lets tests and benchmarks run several servers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
_TIME_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class XdsMetrics:
    """The server's counters, gauges and histograms (see each ``documentation`` string)."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.connected_proxies = Gauge(
            "xds_connected_proxies", "ADS streams currently open (SotW and delta).", registry=r
        )
        self.pushes = Counter(
            "xds_pushes", "DiscoveryResponses and DeltaDiscoveryResponses sent.", ["type"], registry=r
        )
        self.push_time = Histogram(
            "xds_push_time_seconds",
            "Time to encode and write one DiscoveryResponse.",
            ["type"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.nacks = Counter("xds_nacks", "Responses rejected by a client (NACK).", ["type"], registry=r)
        self.acks = Counter("xds_acks", "Responses accepted by a client (ACK).", ["type"], registry=r)
        self.delta_streams = Gauge(
            "xds_delta_streams", "Incremental (delta) ADS streams currently open.", registry=r
        )
        self.delta_resources_sent = Counter(
            "xds_delta_resources_sent",
            "Resources carried by delta responses (upserts).",
            ["type"],
            registry=r,
        )
        self.delta_resources_removed = Counter(
            "xds_delta_resources_removed",
            "Names carried in removed_resources of delta responses.",
            ["type"],
            registry=r,
        )
        self.stale_nonces = Counter(
            "xds_stale_nonces",
            "Requests ignored because their nonce was not the latest.",
            ["type"],
            registry=r,
        )
        self.rejected_streams = Counter(
            "xds_rejected_streams",
            "Streams refused: bad first request or not authorized.",
            ["reason"],
            registry=r,
        )
        self.limit_refusals = Counter(
            "xds_limit_refusals",
            "Streams refused or ended for exceeding a client limit (streams, names, types).",
            ["limit"],
            registry=r,
        )
        self.config_size = Histogram(
            "xds_config_size_bytes",
            "Size of one DiscoveryResponse on the wire.",
            ["type"],
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.convergence_time = Histogram(
            "xds_convergence_time_seconds",
            "From snapshot set to the client's ACK of it.",
            ["type"],
            buckets=_TIME_BUCKETS,
            registry=r,
        )
