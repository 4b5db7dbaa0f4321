"""Proxy roles: which Envoy resources one kind of proxy gets, built by looping over the same features.

`gateway.py` is the Gateway role (a Gateway API Gateway's Envoy); `sidecar.py` a workload's sidecar
(its inbound side, the tool's, enforces; its outbound side, the agent's, routes); `egress.py` an egress
Gateway's Envoy (enforces for external `hostname` XBackends, originates TLS, injects credentials). A role reads its proxy's typed view
(graph/view.py), groups it into Envoy listeners (translate/context.PortContext), and lets the skeleton
builders (translate/listener.py, translate/route_config.py, translate/clusters.py) call every feature's
hooks in the order of `features.FEATURES`.

How to add a role: write one module here
that builds its resources from its view with the same builders and a `ProxyContext` whose `role` names
it; a feature that must behave differently in that role checks `proxy.role` in its own hooks. The view
query it needs goes in graph/view.py, and the controller (controller.py) publishes it under its node id.
"""

from __future__ import annotations

from controlplane.xds.resources import Resource


def unique_resources(resources: list[Resource]) -> list[Resource]:
    """One resource per type and name, the first one built, in (type, name) order."""
    seen: dict[str, Resource] = {}
    for resource in resources:
        seen.setdefault(f"{resource.type_url} {resource.name}", resource)
    return [seen[key] for key in sorted(seen)]
