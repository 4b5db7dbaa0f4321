"""One Gateway port's HTTPRoutes -> an Envoy RouteConfiguration (proto3 JSON), policy included.

Policy lives here, never in the Listener, so that a policy change reaches Envoy as a route update and
never drains a listener (which would cut long MCP streams): Gateway-level rules sit in each virtual
host's `typed_per_filter_config` for the gateway RBAC filter, backend-level rules in each weighted
cluster's for the backend RBAC filter. An ExternalAuth policy is placed the same way, per level: its
rules as shadow rules of the level's `*_extauth` RBAC filter (they decide whether the request is
delegated) and its authorizer as the service of the level's ext_authz filter (`ExtAuthzPerRoute`
`check_settings.grpc_service|http_service`, which Envoy honours per route and per virtual host over
the listener's placeholder service). Routes are emitted in Gateway API precedence, the same order
`explain` uses, because Envoy takes the first route that matches.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from controlplane.api.agentic import Action, ExternalAuth
from controlplane.api.base import ResourceKey
from controlplane.api.gateway import HeaderModifier, PathModifier, RouteFilter, RouteMatch
from controlplane.graph import fragments
from controlplane.graph.explain import policies_on
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.routing import route_order
from controlplane.graph.rules import PolicyView
from controlplane.translate.clusters import (
    ext_authz_cluster_name,
    service_cluster_name,
    xbackend_cluster_name,
)
from controlplane.translate.mcp import MCP_FILTER, pass_through_override
from controlplane.translate.rbac import DENY_ALL, SHADOW_POLICY_ID_KEY, external_auth_rbac, level_rbac

EXT_AUTHZ_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
EXT_AUTHZ_TIMEOUT = "2s"  # Gateway API has no field for it; Envoy's 200 ms default is tight for a remote authorizer
REDIRECT_CODES = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
                  308: "PERMANENT_REDIRECT"}


@dataclass(frozen=True)
class Level:
    """The filters that enforce one level (Gateway or XBackend) of policy, in the listener's fixed chain."""

    name: str

    @property
    def rbac_filter(self) -> str:
        return f"envoy.filters.http.rbac.{self.name}"

    @property
    def extauth_rbac_filter(self) -> str:
        return f"envoy.filters.http.rbac.{self.name}_extauth"

    @property
    def ext_authz_filter(self) -> str:
        return f"envoy.filters.http.ext_authz.{self.name}"

    @property
    def extauth_stat_prefix(self) -> str:
        return f"{self.name}_extauth_"

    @property
    def delegated_key(self) -> str:
        """The RBAC dynamic-metadata key that is present exactly when a delegating shadow rule matched."""
        return self.extauth_stat_prefix + SHADOW_POLICY_ID_KEY


GATEWAY, BACKEND = Level("gateway"), Level("backend")
GATEWAY_RBAC_FILTER = GATEWAY.rbac_filter
BACKEND_RBAC_FILTER = BACKEND.rbac_filter


def level_filter_configs(views: list[PolicyView], level: Level) -> dict:
    """`typed_per_filter_config` entries enforcing one target's effective policies at `level`."""
    configs = {}
    rbac = level_rbac(views, stat_prefix=f"{level.name}_")
    if rbac is not None:
        configs[level.rbac_filter] = rbac
    external = next((v for v in views if v.action is Action.EXTERNAL_AUTH), None)  # admission: one per target
    if external is not None and external.withheld:  # it cannot be delegated: deny everything it would see
        configs[level.rbac_filter] = DENY_ALL
    elif external is not None:
        configs[level.extauth_rbac_filter] = external_auth_rbac(external, stat_prefix=level.extauth_stat_prefix)
        configs[level.ext_authz_filter] = ext_authz_per_route(external)
    return configs


def ext_authz_cluster(view: PolicyView) -> str:
    auth = view.external_auth
    ref = auth.backend_ref
    return ext_authz_cluster_name(auth.protocol, ref.namespace or view.key.namespace, ref.name, ref.port)


def ext_authz_per_route(view: PolicyView) -> dict:
    """The policy's authorizer as this route's ext_authz service; a body is forwarded whole or not at all.

    `allowPartialMessage: false`: a body over `forwardBody.maxSize` is refused (413), never sent
    truncated, since an authorizer judging half a JSON-RPC message could be fooled (fail closed)."""
    auth = view.external_auth
    cluster = ext_authz_cluster(view)
    ref = auth.backend_ref
    authority = f"{ref.name}.{ref.namespace or view.key.namespace}.svc.cluster.local"
    if auth.protocol == "GRPC":
        settings: dict = {"grpcService": {"envoyGrpc": {"clusterName": cluster, "authority": authority},
                                          "timeout": EXT_AUTHZ_TIMEOUT}}
    else:
        settings = {"httpService": _http_service(auth, cluster, f"http://{authority}:{ref.port or 80}")}
    if auth.forward_body is not None and auth.forward_body.max_size:
        settings["withRequestBody"] = {"maxRequestBytes": auth.forward_body.max_size, "allowPartialMessage": False}
    return {"@type": EXT_AUTHZ_PER_ROUTE_TYPE, "checkSettings": settings}


def _http_service(auth: ExternalAuth, cluster: str, uri: str) -> dict:
    service: dict = {"serverUri": {"uri": uri, "cluster": cluster, "timeout": EXT_AUTHZ_TIMEOUT}}
    if auth.http.path:
        service["pathPrefix"] = auth.http.path
    if auth.http.allowed_response_headers:
        service["authorizationResponse"] = {"allowedUpstreamHeaders": {"patterns": [
            {"exact": h, "ignoreCase": True} for h in auth.http.allowed_response_headers]}}
    return service


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
    configs = level_filter_configs(policies_on(graph, fragments.gateway_node(gateway), listener), GATEWAY)
    if configs:
        vhost["typedPerFilterConfig"] = configs
    return vhost


def _route(graph: AuthorizationGraph, rid: str, node: dict, match: RouteMatch) -> dict:
    route: dict = {"name": f"{rid.removeprefix('route:')}", "match": _match(match)}
    if not _reaches_xbackend(graph, rid):  # redirects and Service backends: not necessarily MCP traffic
        route["typedPerFilterConfig"] = {MCP_FILTER: pass_through_override()}
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


def _reaches_xbackend(graph: AuthorizationGraph, rid: str) -> bool:
    """Whether any backend of the route is an MCP server; only such routes refuse non-MCP traffic."""
    return any(data["rel"] == "backend" and graph.graph.nodes[bid]["kind"] == "XBackend"
               for _, bid, data in graph.graph.out_edges(rid, data=True))


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
            configs = level_filter_configs(policies_on(graph, bid, None), BACKEND)
            if configs:
                entry["typedPerFilterConfig"] = configs
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
