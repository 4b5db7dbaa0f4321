"""The router: the last HTTP filter of every chain, which sends a request on to its route's clusters."""

from __future__ import annotations

from controlplane.translate.context import PortContext
from controlplane.translate.features.base import Feature

ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


class Router(Feature):
    name = "router"

    def http_filters(self, port: PortContext) -> list[dict]:
        return [{"name": "envoy.filters.http.router", "typedConfig": {"@type": ROUTER_TYPE}}]
