"""Serialize each distinct resource once and share the bytes.

betterproto2's serializer is slow (reference/envoy-facts.md: about 0.6 s for a 250 KB RBAC config), so a
resource is keyed by the hash of its canonical JSON: an unchanged resource, or the same resource in
another Gateway's config, reuses the bytes (and the content-hash version) built the first time.
Entries not used by the latest build are dropped, so the cache holds one world, not history.

A RouteConfiguration, which carries the policies and grows with them, is not serialized whole: each
Route and each virtual host's other fields are serialized (and cached) on their own and the parent's
bytes are assembled from them. Protobuf's wire format allows it: a message is the concatenation of
its fields, and a repeated field is the concatenation of its entries. So a one-policy edit serializes
the one route that changed. Each part's canonical JSON is hashed once per build, and the whole's cache
key and version are hashed from its parts' keys: neither the whole's text nor its (megabytes of)
body is hashed again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from controlplane.xds import assembly
from controlplane.xds import resources as types
from controlplane.xds.resources import Resource, XdsResource, message_class
from controlplane.xds.wire import len_field

VIRTUAL_HOSTS_FIELD = 2  # envoy.config.route.v3.RouteConfiguration.virtual_hosts
ROUTES_FIELD = 3  # envoy.config.route.v3.VirtualHost.routes
VIRTUAL_HOST_TYPE = "type.googleapis.com/envoy.config.route.v3.VirtualHost"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.Route"


class SerializingCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[XdsResource, frozenset[str]]] = {}  # key -> (resource, its parts' keys)
        self._parts: dict[str, bytes] = {}
        self._below: dict[str, frozenset[str]] = {}  # part key -> the keys of the parts it was built from
        self._collectors: list[set[str]] = []  # while parts are built: the keys each one uses
        self._used: set[str] = set()
        self.hits = 0
        self.misses = 0

    def begin(self) -> None:
        """Start a build: entries not requested (or kept) before `end()` are evicted."""
        self._used = set()

    def end(self) -> None:
        self._entries = {k: v for k, v in self._entries.items() if k in self._used}
        self._parts = {k: v for k, v in self._parts.items() if k in self._used}
        self._below = {k: v for k, v in self._below.items() if k in self._used}

    def keep(self, keys: set[str]) -> None:
        """Keep the entries behind `keys` (from `get_tracked`) through this build without rebuilding them."""
        self._used |= keys

    def get_tracked(self, resources: list[Resource]) -> tuple[list[XdsResource], set[str]]:
        """`get` for each resource, and the cache keys they used, for `keep` in a later build."""
        before = set(self._used)
        self._used = set()
        built = [self.get(r) for r in resources]
        used, self._used = self._used, before | self._used
        return built, used

    def get(self, resource: Resource) -> XdsResource:
        if not isinstance(resource.payload, dict):
            return XdsResource.from_message(resource.name, resource.payload)
        if resource.type_url == types.ROUTE:
            plan = _RouteConfigurationPlan(resource)
            key = plan.key
        else:
            plan, key = None, _fingerprint(resource)
        parts: set[str] = set()
        cached = self._entries.get(key)
        if cached is not None:
            self.hits += 1
            self._used |= {key, *cached[1]}
            return cached[0]
        self.misses += 1
        if plan is not None:
            self._collectors.append(parts)
            try:
                body = plan.assemble(self._part)
            finally:
                self._collectors.pop()
            built = XdsResource(resource.type_url, resource.name, body, version=key[:16])
        else:
            built = to_xds_resource(resource)
        self._entries[key] = (built, frozenset(parts))
        self._used.add(key)
        return built

    def _part(self, key: str, type_url: str, payload: dict) -> bytes:
        """The bytes of one sub-message, serialized once per distinct content (`key`, its fingerprint);
        a route's own parts down to each RBAC policy are cached too (assembly.py)."""
        cached = self._parts.get(key)
        keys = {key} | self._below.get(key, frozenset()) if cached is not None else {key}
        self._used |= keys
        for collector in self._collectors:
            collector |= keys
        if cached is not None:
            return cached
        self._collectors.append(below := set())
        try:
            self._parts[key] = assembly.encode(type_url, payload, part=self._nested_part, leaf=_serialize)
        finally:
            self._collectors.pop()
        self._below[key] = frozenset(below)
        for collector in self._collectors:
            collector |= below
        return self._parts[key]

    def _nested_part(self, type_url: str, payload: dict) -> bytes:
        return self._part(_fingerprint(Resource(type_url, "", payload)), type_url, payload)


class _RouteConfigurationPlan:
    """A RouteConfiguration cut into its parts (each virtual host's own fields, each route, the rest),
    each fingerprinted once; the whole's key is built from the parts' keys, never from the whole text."""

    def __init__(self, resource: Resource) -> None:
        payload = resource.payload
        self.rest = _keyed(types.ROUTE, {k: v for k, v in payload.items() if k != "virtualHosts"})
        self.virtual_hosts = [
            (_keyed(VIRTUAL_HOST_TYPE, {k: v for k, v in vhost.items() if k != "routes"}),
             [_keyed(ROUTE_TYPE, route) for route in vhost.get("routes", [])])
            for vhost in payload.get("virtualHosts", [])]
        outline = [resource.type_url, resource.name, self.rest[0],
                   [[vhost[0], [route[0] for route in routes]] for vhost, routes in self.virtual_hosts]]
        self.key = hashlib.sha256(json.dumps(outline, separators=(",", ":")).encode()).hexdigest()

    def assemble(self, part) -> bytes:
        """The RouteConfiguration's bytes from its parts' bytes (`part(key, type_url, payload)`)."""
        vhosts = [part(*vhost) + b"".join(len_field(ROUTES_FIELD, part(*route)) for route in routes)
                  for vhost, routes in self.virtual_hosts]
        return part(*self.rest) + b"".join(len_field(VIRTUAL_HOSTS_FIELD, vh) for vh in vhosts)


def _keyed(type_url: str, payload: dict) -> tuple[str, str, dict]:
    return _fingerprint(Resource(type_url, "", payload)), type_url, payload


def to_xds_resource(resource: Resource) -> XdsResource:
    return XdsResource(resource.type_url, resource.name, _serialize(resource.type_url, resource.payload))


def _serialize(type_url: str, payload: dict) -> bytes:
    _register_types(payload)
    return bytes(message_class(type_url).from_dict(payload))


def _fingerprint(resource: Resource) -> str:
    text = json.dumps([resource.type_url, resource.name, resource.payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _register_types(value: Any) -> None:
    """betterproto2 resolves `Any` only for imported classes: import every `@type` named in the payload."""
    if isinstance(value, dict):
        if "@type" in value:
            message_class(value["@type"])
        for item in value.values():
            _register_types(item)
    elif isinstance(value, list):
        for item in value:
            _register_types(item)
