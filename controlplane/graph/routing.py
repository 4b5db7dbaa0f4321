"""Gateway API routing semantics: hostname intersection, rule matching and match precedence.

The precedence is Gateway API's (HTTPRoute spec, "rule precedence"): an exact path over a prefix,
a longer prefix over a shorter one, then a method match, then more header matches, then more query
matches; ties go to the oldest route, then to namespace/name, then to rule and match order. Envoy
takes the first route that matches, so the translator emits routes in this same order.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from controlplane.api.gateway import RouteMatch

_NO_TIMESTAMP = datetime.max.replace(tzinfo=UTC)


def hostnames_intersect(listener_hostname: str | None, route_hostnames: list[str]) -> tuple[str, ...] | None:
    """Hostnames both accept; () means any; None means the route does not attach to the listener."""
    if not route_hostnames:
        return (listener_hostname,) if listener_hostname else ()
    if not listener_hostname:
        return tuple(route_hostnames)
    matched = [h for h in route_hostnames if _host_overlap(listener_hostname, h)]
    if not matched:
        return None
    narrowed = {h if not h.startswith("*.") or listener_hostname.startswith("*.") else listener_hostname
                for h in matched}
    return tuple(sorted(narrowed))


def _host_overlap(a: str, b: str) -> bool:
    return _wildcard_covers(a, b) or _wildcard_covers(b, a)


def _wildcard_covers(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    return pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1


def host_matches(hostnames: tuple[str, ...], host: str) -> bool:
    if not hostnames or not host:
        return True
    bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return any(_wildcard_covers(h, bare) for h in hostnames)


def match_precedence(match: RouteMatch) -> tuple:
    """Sort key, lower first."""
    path = match.path
    exact = path is not None and path.type == "Exact"
    prefix_len = len(path.value) if path is not None and path.type == "PathPrefix" else 0
    return (not exact, -prefix_len, match.method is None, -len(match.headers), -len(match.query_params))


def route_order(route: dict, match: RouteMatch, match_index: int) -> tuple:
    """The position of one match of one route rule (a route node's attributes) among all on a listener."""
    return (match_precedence(match), route_age(route["created"]), route["route"], route["rule"], match_index)


def route_age(created: datetime | None) -> datetime:
    if created is None:
        return _NO_TIMESTAMP
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def request_matches(match: RouteMatch, *, path: str, method: str, headers: dict[str, str]) -> bool:
    parts = urlsplit(path)
    if match.path is not None and not path_matches(match.path.type, match.path.value, parts.path):
        return False
    if match.method is not None and match.method != method:
        return False
    lowered = {k.lower(): v for k, v in headers.items()}
    for header in match.headers:
        if not value_matches(header.type, header.value, lowered.get(header.name.lower())):
            return False
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return all(value_matches(q.type, q.value, query.get(q.name)) for q in match.query_params)


def path_matches(kind: str, value: str, path: str) -> bool:
    if kind == "Exact":
        return path == value
    if kind == "RegularExpression":
        return re.fullmatch(value, path) is not None
    prefix = value.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def value_matches(kind: str, expected: str, actual: str | None) -> bool:
    if actual is None:
        return False
    return actual == expected if kind == "Exact" else re.fullmatch(expected, actual) is not None
