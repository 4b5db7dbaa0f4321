"""Manifests for the status tests: a managed Gateway, an unmanaged one, backends, and builders for the rest."""

from __future__ import annotations

from typing import Any

import yaml

from controlplane.api.registry import parse_object
from controlplane.graph.model import AuthorizationGraph, build

BASE = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: ours, generation: 1}
spec: {controllerName: sigs.k8s.io/kube-agentic-networking-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: theirs}
spec: {controllerName: example.com/other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: apps, generation: 3, uid: 11111111-2222-3333-4444-555555555555}
spec:
  gatewayClassName: ours
  listeners:
    - {name: https, protocol: HTTPS, port: 10443, allowedRoutes: {namespaces: {from: Same}}}
    - {name: http, protocol: HTTP, port: 8080, allowedRoutes: {namespaces: {from: All}}}
    - {name: web, protocol: HTTP, port: 8081, hostname: web.example.com,
       allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other-gw, namespace: apps}
spec:
  gatewayClassName: theirs
  listeners: [{name: http, protocol: HTTP, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: mcp, namespace: apps}
spec: {ports: [{name: http, port: 3001}]}
---
apiVersion: v1
kind: Service
metadata: {name: shared, namespace: backends}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata: {name: tools, namespace: apps}
spec: {mcp: {serviceName: mcp, port: 3001}}
"""


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def graph_of(*texts: str, extra: list[dict[str, Any]] | None = None) -> AuthorizationGraph:
    objects = [parse_object(d) for t in (BASE, *texts) for d in docs(t)]
    objects += [parse_object(d) for d in extra or []]
    return build([o for o in objects if o is not None])


def route(name: str, namespace: str = "apps", *, parents: list[dict] | None = None,
          backends: list[dict] | None = None, hostnames: list[str] | None = None,
          rules: int = 1) -> dict[str, Any]:
    backend_refs = backends if backends is not None else [
        {"group": "agentic.networking.x-k8s.io", "kind": "XBackend", "name": "tools", "namespace": "apps"}]
    spec: dict[str, Any] = {
        "parentRefs": parents if parents is not None else [{"name": "gw", "namespace": "apps"}],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": f"/r{i}"}}], "backendRefs": backend_refs}
                  for i in range(rules)],
    }
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace, "generation": 2}, "spec": spec}


def policy(name: str, *, namespace: str = "apps", targets: list[dict] | None = None, action: str = "Allow",
           created: str | None = None, cel: str | None = None, generation: int = 1) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "generation": generation}
    if created:
        meta["creationTimestamp"] = created
    spec: dict[str, Any] = {
        "targetRefs": targets or [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
        "action": action,
    }
    if action == "ExternalAuth":
        spec["externalAuth"] = {"protocol": "GRPC", "backendRef": {"name": "authz", "port": 50051}, "grpc": {}}
    rule: dict[str, Any] = {"name": "r", "source": {"type": "ServiceAccount", "serviceAccount": {"name": "agent"}}}
    if cel is not None:
        rule["authorization"] = {"type": "CEL", "cel": {"expression": cel}}
    spec["rules"] = [rule]
    return {"apiVersion": "agentic.networking.x-k8s.io/v1alpha1", "kind": "XAccessPolicy", "metadata": meta,
            "spec": spec}


def condition(conditions: list[dict], type_: str) -> dict:
    found = [c for c in conditions if c["type"] == type_]
    assert len(found) == 1, f"expected one {type_} condition in {conditions}"
    return found[0]
