"""Everything one Gateway's Envoy needs, from its view: listeners, routes, clusters, endpoints, secrets.

Pure: the same view gives the same resources. Each resource is proto3 JSON (a dict), which the
serializing cache (xds/serialize.py) turns into bytes once per distinct content. One Envoy listener per
port, shared by the Gateway listeners on it; its route configuration holds the routes of all of them.
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.api.base import ResourceKey
from controlplane.graph.view import AuthorizationGraph, GatewayView, gateway_view
from controlplane.translate import clusters, listener, route_config
from controlplane.translate.context import OtelCollector, PortContext, ProxyContext
from controlplane.translate.features import FEATURES
from controlplane.translate.roles import unique_resources
from controlplane.xds.resources import LISTENER, ROUTE, Resource

ROLE = "gateway"


def gateway_resources(graph: AuthorizationGraph, gateway: ResourceKey, *, secrets: list[Resource],
                      otel_collector: OtelCollector | None = None) -> list[Resource]:
    """The Gateway's resources; none when it is missing or not of a class this control plane manages."""
    view = gateway_view(graph, gateway)
    return [] if view is None else resources_for(view, secrets=secrets, otel_collector=otel_collector)


def resources_for(view: GatewayView, *, secrets: Iterable[Resource],
                  otel_collector: OtelCollector | None = None) -> list[Resource]:
    proxy = ProxyContext(ROLE, view, tuple(secrets), otel_collector)
    out: list[Resource] = []
    for port in _ports(proxy):
        out.append(Resource(LISTENER, listener.listener_name(port.port), listener.listener(port, FEATURES)))
        out.append(Resource(ROUTE, route_config.route_config_name(port.port),
                            route_config.route_configuration(port, FEATURES)))
    extra = _backend_clusters(view) + [r for feature in FEATURES for r in feature.resources(proxy)]
    return out + unique_resources(extra)


def _ports(proxy: ProxyContext) -> list[PortContext]:
    by_port: dict[int, list] = {}
    for gateway_listener in proxy.gateway.listeners:
        by_port.setdefault(gateway_listener.port, []).append(gateway_listener)
    return [PortContext(proxy, port, any(lst.tls for lst in group), tuple(group))
            for port, group in sorted(by_port.items())]


def _backend_clusters(view: GatewayView) -> list[Resource]:
    """Clusters of every backend the Gateway routes to (a zero weight included: a weight may change)."""
    return [resource for gateway_listener in view.listeners for attachment in gateway_listener.routes
            for ref in attachment.rule.backends for resource in clusters.backend_clusters(ref)]
