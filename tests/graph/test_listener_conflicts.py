"""Listener conflicts have one owner (graph/listeners.py): what status calls Conflicted, Envoy never gets."""

from __future__ import annotations

import yaml

from controlplane.api.base import ResourceKey
from controlplane.api.registry import parse_object
from controlplane.graph.model import build
from controlplane.graph.status import gateway_status
from controlplane.graph.view import gateway_view
from controlplane.translate.roles.gateway import gateway_resources
from controlplane.xds.resources import LISTENER, ROUTE

GW = ResourceKey("Gateway", "apps", "gw")
MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: ours}
spec: {controllerName: sigs.k8s.io/kube-agentic-networking-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: apps}
spec:
  gatewayClassName: ours
  listeners:
    - {name: plain, protocol: HTTP, port: 8443}        # HTTP and HTTPS on one port: both conflicted
    - {name: secure, protocol: HTTPS, port: 8443}
    - {name: a, protocol: HTTP, port: 8080, hostname: a.example.com}   # one hostname twice: both conflicted
    - {name: a-again, protocol: HTTP, port: 8080, hostname: a.example.com}
    - {name: b, protocol: HTTP, port: 8080, hostname: b.example.com}   # shares the port, no conflict
---
apiVersion: v1
kind: Service
metadata: {name: mcp, namespace: apps}
spec: {ports: [{name: http, port: 3001}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: everywhere, namespace: apps}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: mcp, port: 3001}]}]
"""


def _graph():
    return build([parse_object(d) for d in yaml.safe_load_all(MANIFESTS) if d])


def _conditions(status: dict) -> dict[str, dict[str, str]]:
    return {ls["name"]: {c["type"]: c["status"] for c in ls["conditions"]} for ls in status["listeners"]}


def test_status_and_translation_agree_on_conflicted_listeners():
    graph = _graph()
    listeners = _conditions(gateway_status(graph, GW, programmed=True))
    conflicted = {name for name, conds in listeners.items() if conds["Conflicted"] == "True"}
    programmed = {name for name, conds in listeners.items() if conds["Programmed"] == "True"}
    assert conflicted == {"plain", "secure", "a", "a-again"}
    assert programmed == {"b"}

    assert {lst.name for lst in gateway_view(graph, GW).listeners} == programmed
    resources = gateway_resources(graph, GW, secrets=[])
    assert [r.name for r in resources if r.type_url == LISTENER] == ["listener-8080"]  # no TLS listener on 8443
    route_config = next(r.payload for r in resources if r.type_url == ROUTE)
    assert [vh["domains"] for vh in route_config["virtualHosts"]] == [["b.example.com"]]
