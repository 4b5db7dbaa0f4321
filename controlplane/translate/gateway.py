"""Everything one Gateway's Envoy needs, from the graph: listeners, routes, clusters, endpoints, secrets.

Pure: the same graph gives the same resources. Each resource is proto3 JSON (a dict), which the
serializing cache (translate/serialize.py) turns into bytes once per distinct content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane.api.agentic import Action
from controlplane.api.base import ResourceKey
from controlplane.graph import fragments
from controlplane.graph.explain import policies_on
from controlplane.graph.model import AuthorizationGraph
from controlplane.translate import clusters, listeners, routes
from controlplane.xds import resources as types

HTTP_PROTOCOLS = {"HTTP": False, "HTTPS": True}


@dataclass(frozen=True)
class Resource:
    type_url: str
    name: str
    payload: Any  # proto3 JSON dict, or an envoy-data-plane message


def gateway_resources(graph: AuthorizationGraph, gateway: ResourceKey, *, secrets: list[Resource]) -> list[Resource]:
    gid = fragments.gateway_node(gateway)
    node = graph.node(gid)
    if node is None or node.get("missing") or not node["managed"]:
        return []
    by_port: dict[int, list[str]] = {}
    tls_ports: set[int] = set()
    for _, lid, data in graph.graph.out_edges(gid, data=True):
        attrs = graph.graph.nodes[lid]
        if data["rel"] != "listener" or attrs["protocol"] not in HTTP_PROTOCOLS:
            continue
        by_port.setdefault(attrs["port"], []).append(lid)
        if HTTP_PROTOCOLS[attrs["protocol"]]:
            tls_ports.add(attrs["port"])
    out: list[Resource] = []
    for port, listener_ids in sorted(by_port.items()):
        out.append(Resource(types.LISTENER, listeners.listener_name(port),
                            listeners.listener(port=port, tls=port in tls_ports,
                                               stat_prefix=f"{gateway.namespace}.{gateway.name}.{port}")))
        out.append(Resource(types.ROUTE, routes.route_config_name(port),
                            routes.route_configuration(graph, gateway, port, listener_ids)))
    out += _cluster_resources(graph, gid, by_port)
    if tls_ports:
        out += secrets
    return out


def _cluster_resources(graph: AuthorizationGraph, gid: str, by_port: dict[int, list[str]]) -> list[Resource]:
    """Clusters of every backend the gateway routes to, and of the authorizers its policies delegate to."""
    seen: dict[str, list[Resource]] = {}
    for listener_ids in by_port.values():
        for lid in listener_ids:
            views = policies_on(graph, gid, graph.graph.nodes[lid]["name"])
            resources = _ext_authz_clusters(graph, views)
            for _, rid, edge in graph.graph.out_edges(lid, data=True):
                if edge["rel"] != "route":
                    continue
                for _, bid, data in graph.graph.out_edges(rid, data=True):
                    if data["rel"] == "backend":
                        resources += _backend_clusters(graph.graph.nodes[bid], data["port"])
                        resources += _ext_authz_clusters(graph, policies_on(graph, bid, None))
            for resource in resources:
                seen.setdefault(f"{resource.type_url} {resource.name}", []).append(resource)
    return [group[0] for _, group in sorted(seen.items())]


def _ext_authz_clusters(graph: AuthorizationGraph, views) -> list[Resource]:
    """An EDS cluster per ExternalAuth policy's authorizer (HTTP/2 for gRPC); no endpoints: fail closed."""
    out: list[Resource] = []
    for view in views:
        if view.action is not Action.EXTERNAL_AUTH:
            continue
        name = routes.ext_authz_cluster(view)
        endpoints = graph.graph.nodes[fragments.policy_node(view.key)]["ext_auth_endpoints"]
        out += _eds(name, endpoints, http2=view.external_auth.protocol == "GRPC")
    return out


def _backend_clusters(backend: dict, port: int | None) -> list[Resource]:
    key: ResourceKey = backend["key"]
    if backend["kind"] == "XBackend":
        name = clusters.xbackend_cluster_name(key.namespace, key.name)
        if backend["hostname"]:
            return [Resource(types.CLUSTER, name, clusters.external_cluster(name, backend["hostname"],
                                                                           backend["port"]))]
        return _eds(name, backend["endpoints"])
    name = clusters.service_cluster_name(key.namespace, key.name, port)
    endpoints = dict(backend["endpoints"]).get(port, ())
    return _eds(name, endpoints)


def _eds(name: str, endpoints: tuple, *, http2: bool = False) -> list[Resource]:
    return [Resource(types.CLUSTER, name, clusters.eds_cluster(name, http2=http2)),
            Resource(types.ENDPOINT, name, clusters.load_assignment(name, endpoints))]
