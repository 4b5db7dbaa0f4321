"""What the translation of one proxy is given: the proxy's view and secrets, and the port being built.

Shared by the builders (listener.py, route_config.py, roles/) and every feature's hooks (features/).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from controlplane.graph.view import GatewayView, ListenerView
from controlplane.xds.resources import Resource

ADS = {"ads": {}, "resourceApiVersion": "V3"}  # every dependent resource comes over the one ADS stream
GATEWAY, BACKEND = "gateway", "backend"  # the two levels of policy: a Gateway's (listener's), an XBackend's
SIDECAR_INBOUND, SIDECAR_OUTBOUND = "sidecar-inbound", "sidecar-outbound"  # roles/sidecar.py's two sides
EGRESS = "egress"  # roles/egress.py


_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True)
class OtelCollector:
    """Where enforcing proxies send OpenTelemetry spans and log records (OTLP over gRPC): serve's
    --otel-collector. A listener-level setting (features/otel.py): it never changes with policy."""

    host: str  # an IP address or a DNS name
    port: int

    @classmethod
    def parse(cls, text: str) -> OtelCollector:
        """`HOST:PORT` (an IPv6 host in brackets); ValueError, in one line, for anything else."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT with a port 1-65535, not {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            _ip(host, text)
        elif not _is_ip(host) and not _is_dns_name(host):
            raise ValueError(f"{host!r} in {text!r} is neither an IP address nor a DNS name")
        return cls(host, int(port))

    @property
    def is_ip(self) -> bool:
        return _is_ip(self.host)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _ip(host: str, text: str) -> None:
    if not _is_ip(host) or ":" not in host:
        raise ValueError(f"{host!r} in {text!r} is not an IPv6 address")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_dns_name(host: str) -> bool:
    labels = host.lower().removesuffix(".").split(".")
    return 0 < len(host) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in labels)


@dataclass(frozen=True)
class ProxyContext:
    """What one proxy's translation is about, for every hook."""

    role: str  # "gateway", "sidecar-inbound", "sidecar-outbound", "egress"
    gateway: GatewayView  # a sidecar's inbound side is shaped as one too (its key: the ServiceAccount)
    secrets: tuple[Resource, ...] = ()  # the proxy's SDS secrets (server certificate, trust bundle)
    otel_collector: OtelCollector | None = None  # serve --otel-collector: spans and logs over OTLP; None: off

    @property
    def enforces_policy(self) -> bool:
        """Whether requests are decided here; an agent's outbound side only routes (the tool's side decides)."""
        return self.role != SIDECAR_OUTBOUND

    @property
    def stat_name(self) -> str:
        """The same on every proxy of a role (the scrape target names the proxy): one dashboard for all
        gateways. No dots, so Envoy's tag extraction takes the whole `<role>_<port>` prefix as a tag."""
        return self.role.replace("-", "_")


@dataclass(frozen=True)
class PortContext:
    """One Envoy listener: a port and the Gateway listeners that share it."""

    proxy: ProxyContext
    port: int
    tls: bool  # HTTPS: mTLS terminated here
    listeners: tuple[ListenerView, ...]
