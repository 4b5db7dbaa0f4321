"""An Envoy listener skeleton for one port: one filter chain with one HTTP connection manager.

It knows no feature: the HTTP filters and the fields features set on the chain or the connection manager
are handed in. The connection manager takes its routes over RDS, so that no policy change ever touches
a Listener (which would drain it and cut long MCP streams).
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.translate.context import ADS, PortContext
from controlplane.translate.route_config import route_config_name

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def listener_name(port: int) -> str:
    return f"listener-{port}"


def listener(port: PortContext, features: Sequence) -> dict:
    chain: dict = {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                "typedConfig": http_connection_manager(port, features)}]}
    for feature in features:
        chain.update(feature.filter_chain_patch(port))
    return {"name": listener_name(port.port),
            "address": {"socketAddress": {"address": "0.0.0.0", "portValue": port.port}},
            "filterChains": [chain]}


def http_connection_manager(port: PortContext, features: Sequence) -> dict:
    hcm = {
        "@type": HCM_TYPE,
        "statPrefix": f"{port.proxy.stat_name}_{port.port}",
        "rds": {"routeConfigName": route_config_name(port.port), "configSource": ADS},
        "httpFilters": [f for feature in features for f in feature.http_filters(port)],
        "forwardClientCertDetails": "SANITIZE_SET",
        "setCurrentClientCertDetails": {"uri": True},
        "useRemoteAddress": True,
        "stripAnyHostPort": True,  # hosts match (routes and RBAC) without the port, and without regexes
    }
    for feature in features:
        _merge(hcm, feature.hcm_patch(port))
    return hcm


def _merge(hcm: dict, patch: dict) -> None:
    """A feature's fields; a list adds to what an earlier feature set (several features' access loggers)."""
    for key, value in patch.items():
        hcm[key] = hcm[key] + value if isinstance(value, list) and isinstance(hcm.get(key), list) else value
