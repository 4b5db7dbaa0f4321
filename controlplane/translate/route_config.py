"""One port's HTTPRoutes -> an Envoy RouteConfiguration (proto3 JSON): virtual hosts, routes, clusters.

It knows no feature: policy arrives from the features' hooks as `typed_per_filter_config`, per virtual
host (the Gateway level), per route, and per weighted cluster (the XBackend level), never in the
Listener, so that a policy change reaches Envoy as a route update and never drains a listener (which
would cut long MCP streams). Routes are emitted in Gateway API precedence, the same order `explain`
uses, because Envoy takes the first route that matches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from controlplane.api.gateway import HeaderModifier, PathModifier, RouteFilter, RouteMatch
from controlplane.graph.view import BackendRefView, ListenerView, RouteRuleView
from controlplane.translate.clusters import backend_cluster_name
from controlplane.translate.context import PortContext, ProxyContext

REDIRECT_CODES = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
                  308: "PERMANENT_REDIRECT"}


def route_config_name(port: int) -> str:
    return f"route-{port}"


def route_configuration(port: PortContext, features: Sequence) -> dict:
    by_domain: dict[str, list[tuple[ListenerView, RouteRuleView]]] = defaultdict(list)
    for listener in port.listeners:
        for attachment in listener.routes:
            for domain in attachment.hostnames or ("*",):
                by_domain[domain].append((listener, attachment.rule))
    vhosts = [_virtual_host(port.proxy, domain, entries, features) for domain, entries in sorted(by_domain.items())]
    config = {"name": route_config_name(port.port), "virtualHosts": vhosts, "ignorePortInHostMatching": True}
    return config | _merged(feature.route_configuration_patch(port.proxy) for feature in features)


def _virtual_host(proxy: ProxyContext, domain: str, entries: list, features: Sequence) -> dict:
    listener = entries[0][0]  # the first listener serving the domain decides its Gateway-level policy
    routes = []
    for _, rule in entries:
        for index, match in enumerate(rule.matches):
            routes.append((rule.match_order(index), _route(proxy, rule, match, features)))
    vhost = {"name": f"{proxy.gateway.key.ref}/{domain}", "domains": [domain],
             "routes": [route for _, route in sorted(routes, key=lambda r: r[0])]}
    add_typed_per_filter_config(vhost, (feature.virtual_host_config(proxy, listener) for feature in features))
    return vhost


def _route(proxy: ProxyContext, rule: RouteRuleView, match: RouteMatch, features: Sequence) -> dict:
    route: dict = {"name": rule.name, "match": _match(match)}
    add_typed_per_filter_config(route, (feature.route_config(proxy, rule) for feature in features))
    filters: dict[str, RouteFilter] = {f.type: f for f in rule.filters}
    if "RequestRedirect" in filters:
        route["redirect"] = _redirect(filters["RequestRedirect"].request_redirect, match)
        return route
    clusters = [_weighted_cluster(proxy, ref, features) for ref in rule.backends if ref.weight != 0]
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


def _weighted_cluster(proxy: ProxyContext, ref: BackendRefView, features: Sequence) -> dict:
    entry: dict = {"name": backend_cluster_name(ref), "weight": ref.weight}
    if ref.backend.hostname:
        entry["hostRewriteLiteral"] = ref.backend.hostname
    add_typed_per_filter_config(entry, (feature.weighted_cluster_config(proxy, ref) for feature in features))
    return entry


def add_typed_per_filter_config(target: dict, parts) -> None:
    """The features' per-filter configs of one virtual host, route or weighted cluster, merged; none: no key."""
    configs = _merged(parts)
    if configs:
        target["typedPerFilterConfig"] = configs


def _merged(parts) -> dict:
    out: dict = {}
    for part in parts:
        out.update(part)
    return out


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
