"""The one protocol every Envoy feature implements, and what its hooks are given.

A feature is one Envoy capability (a filter, a transport socket, a logger...) and everything it needs,
in one module: the HTTP filters it puts in a listener's chain, the fields it sets on the listener's
filter chain or HTTP connection manager, its per-virtual-host, per-route and per-weighted-cluster
configuration (`typed_per_filter_config` entries), and the extra resources (clusters, endpoints,
secrets) it depends on. Every hook has a default that contributes nothing, so a feature overrides only
the hooks it uses, and a feature that does not apply to what it is given returns nothing.
"""

from __future__ import annotations

from controlplane.graph.view import BackendRefView, ListenerView, RouteRuleView
from controlplane.translate.context import PortContext, ProxyContext
from controlplane.xds.resources import Resource


class Feature:
    """Base of every feature: each hook contributes nothing unless overridden."""

    name = "feature"

    def http_filters(self, port: PortContext) -> list[dict]:
        """HTTP filters for the connection manager, in order; the FEATURES list orders the features."""
        return []

    def filter_chain_patch(self, port: PortContext) -> dict:
        """Fields of the listener's filter chain (e.g. `transportSocket`)."""
        return {}

    def hcm_patch(self, port: PortContext) -> dict:
        """Fields of the HTTP connection manager (e.g. `accessLog`, `localReplyConfig`)."""
        return {}

    def route_configuration_patch(self, proxy: ProxyContext) -> dict:
        """Fields of the proxy's RouteConfigurations (e.g. `responseHeadersToRemove`)."""
        return {}

    def virtual_host_config(self, proxy: ProxyContext, listener: ListenerView) -> dict:
        """`typed_per_filter_config` entries of a virtual host (the listener it serves)."""
        return {}

    def route_config(self, proxy: ProxyContext, rule: RouteRuleView) -> dict:
        """`typed_per_filter_config` entries of each route of a route rule."""
        return {}

    def weighted_cluster_config(self, proxy: ProxyContext, backend: BackendRefView) -> dict:
        """`typed_per_filter_config` entries of a weighted cluster (one backend of a route)."""
        return {}

    def resources(self, proxy: ProxyContext) -> list[Resource]:
        """Extra resources the feature needs (clusters, endpoints, secrets); duplicates are merged."""
        return []
