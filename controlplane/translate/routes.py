"""One Gateway port's HTTPRoutes -> an Envoy RouteConfiguration (proto3 JSON), policy included.

Policy lives here, never in the Listener, so that a policy change reaches Envoy as a route update and
never drains a listener (which would cut long MCP streams): Gateway-level rules sit in each virtual
host's `typed_per_filter_config` for the gateway RBAC filter, backend-level rules in each weighted
cluster's for the backend RBAC filter. Routes are emitted in Gateway API precedence, the same order
`explain` uses, because Envoy takes the first route that matches.
"""

from __future__ import annotations

from collections import defaultdict

from controlplane.api.base import ResourceKey
from controlplane.api.gateway import HeaderModifier, PathModifier, RouteFilter, RouteMatch
from controlplane.graph import fragments
from controlplane.graph.explain import policies_on
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.routing import route_order
from controlplane.translate.clusters import service_cluster_name, xbackend_cluster_name
from controlplane.translate.rbac import level_rbac

GATEWAY_RBAC_FILTER = "envoy.filters.http.rbac.gateway"
BACKEND_RBAC_FILTER = "envoy.filters.http.rbac.backend"
REDIRECT_CODES = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
                  308: "PERMANENT_REDIRECT"}


def route_config_name(port: int) -> str:
    return f"route-{port}"


def route_configuration(graph: AuthorizationGraph, gateway: ResourceKey, port: int,
                        listener_ids: list[str]) -> dict:
    by_domain: dict[str, list] = defaultdict(list)
    for lid in sorted(listener_ids):
        for _, rid, data in graph.graph.out_edges(lid, data=True):
            if data["rel"] != "route":
                continue
            for domain in data["hostnames"] or ("*",):
                by_domain[domain].append((lid, rid))
    vhosts = [_virtual_host(graph, gateway, domain, entries) for domain, entries in sorted(by_domain.items())]
    return {"name": route_config_name(port), "virtualHosts": vhosts, "ignorePortInHostMatching": True}


def _virtual_host(graph: AuthorizationGraph, gateway: ResourceKey, domain: str, entries: list) -> dict:
    listener = graph.graph.nodes[entries[0][0]]["name"]
    routes = []
    for _, rid in entries:
        node = graph.graph.nodes[rid]
        for index, match in enumerate(node["matches"]):
            routes.append((route_order(node, match, index), _route(graph, rid, node, match)))
    vhost = {"name": f"{gateway.ref}/{domain}", "domains": [domain],
             "routes": [route for _, route in sorted(routes, key=lambda r: r[0])]}
    rbac = level_rbac(policies_on(graph, fragments.gateway_node(gateway), listener), stat_prefix="gateway_")
    if rbac is not None:
        vhost["typedPerFilterConfig"] = {GATEWAY_RBAC_FILTER: rbac}
    return vhost


def _route(graph: AuthorizationGraph, rid: str, node: dict, match: RouteMatch) -> dict:
    route: dict = {"name": f"{rid.removeprefix('route:')}", "match": _match(match)}
    filters: dict[str, RouteFilter] = {f.type: f for f in node["filters"]}
    if "RequestRedirect" in filters:
        route["redirect"] = _redirect(filters["RequestRedirect"].request_redirect, match)
        return route
    clusters = _weighted_clusters(graph, rid)
    if not clusters:
        route["directResponse"] = {"status": 500}
        return route
    action: dict = {"weightedClusters": {"clusters": clusters}, "timeout": "0s"}
    if "URLRewrite" in filters:
        _rewrite(action, filters["URLRewrite"].url_rewrite, match)
    route["route"] = action
    if "RequestHeaderModifier" in filters:
        _header_changes(route, filters["RequestHeaderModifier"].request_header_modifier)
    return route


def _match(match: RouteMatch) -> dict:
    out: dict = {}
    path = match.path
    if path is None or (path.type == "PathPrefix" and path.value.rstrip("/") == ""):
        out["prefix"] = "/"
    elif path.type == "Exact":
        out["path"] = path.value
    elif path.type == "PathPrefix":
        out["pathSeparatedPrefix"] = path.value.rstrip("/")
    else:
        out["safeRegex"] = {"regex": path.value}
    headers = [_string_header(h.name.lower(), h.type, h.value) for h in match.headers]
    if match.method:
        headers.append(_string_header(":method", "Exact", match.method))
    if headers:
        out["headers"] = headers
    if match.query_params:
        out["queryParameters"] = [{"name": q.name, "stringMatch": _string_match(q.type, q.value)}
                                  for q in match.query_params]
    return out


def _string_header(name: str, kind: str, value: str) -> dict:
    return {"name": name, "stringMatch": _string_match(kind, value)}


def _string_match(kind: str, value: str) -> dict:
    return {"exact": value} if kind == "Exact" else {"safeRegex": {"regex": value}}


def _weighted_clusters(graph: AuthorizationGraph, rid: str) -> list[dict]:
    clusters = []
    for _, bid, data in sorted(graph.graph.out_edges(rid, data=True), key=lambda e: e[1]):
        if data["rel"] != "backend" or data["weight"] == 0:
            continue
        backend = graph.graph.nodes[bid]
        key: ResourceKey = backend["key"]
        if backend["kind"] == "XBackend":
            entry = {"name": xbackend_cluster_name(key.namespace, key.name), "weight": data["weight"]}
            if backend["hostname"]:
                entry["hostRewriteLiteral"] = backend["hostname"]
            rbac = level_rbac(policies_on(graph, bid, None), stat_prefix="backend_")
            if rbac is not None:
                entry["typedPerFilterConfig"] = {BACKEND_RBAC_FILTER: rbac}
        else:
            entry = {"name": service_cluster_name(key.namespace, key.name, data["port"]), "weight": data["weight"]}
        clusters.append(entry)
    return clusters


def _rewrite(action: dict, rewrite, match: RouteMatch) -> None:
    if rewrite.hostname:
        action["hostRewriteLiteral"] = rewrite.hostname
    if rewrite.path is not None:
        _path_rewrite(action, rewrite.path, match, redirect=False)


def _path_rewrite(target: dict, modifier: PathModifier, match: RouteMatch, *, redirect: bool) -> None:
    if modifier.type == "ReplaceFullPath":
        if redirect:
            target["pathRedirect"] = modifier.replace_full_path
        else:
            target["regexRewrite"] = {"pattern": {"regex": "^.*$"}, "substitution": modifier.replace_full_path}
    else:
        replacement = modifier.replace_prefix_match or "/"
        matched_prefix = match.path.value.rstrip("/") if match.path is not None else ""
        if matched_prefix == "" and replacement != "/":
            replacement = replacement.rstrip("/") + "/"
        target["prefixRewrite"] = replacement


def _redirect(redirect, match: RouteMatch) -> dict:
    out: dict = {"responseCode": REDIRECT_CODES[redirect.status_code]}
    if redirect.scheme:
        out["schemeRedirect"] = redirect.scheme
    if redirect.hostname:
        out["hostRedirect"] = redirect.hostname
    if redirect.port:
        out["portRedirect"] = redirect.port
    if redirect.path is not None:
        _path_rewrite(out, redirect.path, match, redirect=True)
    return out


def _header_changes(route: dict, modifier: HeaderModifier) -> None:
    adds = [{"header": {"key": h.name, "value": h.value}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for h in modifier.set]
    adds += [{"header": {"key": h.name, "value": h.value}, "appendAction": "APPEND_IF_EXISTS_OR_ADD"}
             for h in modifier.add]
    if adds:
        route["requestHeadersToAdd"] = adds
    if modifier.remove:
        route["requestHeadersToRemove"] = list(modifier.remove)
