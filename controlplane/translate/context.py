"""What the translation of one proxy is given: the proxy's view and secrets, and the port being built.

Shared by the builders (listener.py, route_config.py, roles/) and every feature's hooks (features/).
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.graph.view import GatewayView, ListenerView
from controlplane.xds.resources import Resource

ADS = {"ads": {}, "resourceApiVersion": "V3"}  # every dependent resource comes over the one ADS stream
GATEWAY, BACKEND = "gateway", "backend"  # the two levels of policy: a Gateway's (listener's), an XBackend's
SIDECAR_INBOUND, SIDECAR_OUTBOUND = "sidecar-inbound", "sidecar-outbound"  # roles/sidecar.py's two sides
EGRESS = "egress"  # roles/egress.py


@dataclass(frozen=True)
class ProxyContext:
    """What one proxy's translation is about, for every hook."""

    role: str  # "gateway", "sidecar-inbound", "sidecar-outbound", "egress"
    gateway: GatewayView  # a sidecar's inbound side is shaped as one too (its key: the ServiceAccount)
    secrets: tuple[Resource, ...] = ()  # the proxy's SDS secrets (server certificate, trust bundle)

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
