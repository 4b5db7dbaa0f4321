"""Serialized xDS resources: serialize once, hash once, share the bytes with every stream.

A resource is immutable: its body is the Envoy message already encoded, its version
is a content hash of (type URL, body), and the ``google.protobuf.Any`` wrapper that a
DiscoveryResponse carries is encoded once here. Pushing to a thousand proxies then
costs a thousand byte concatenations, not a thousand betterproto2 serializations.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from typing import Any as _Any

from controlplane.xds.wire import encode_any

TYPE_PREFIX = "type.googleapis.com/"
LISTENER = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

#: Short names used in metric labels and logs. Unknown types map to "other" so label
#: cardinality stays bounded whatever a client asks for.
SHORT_NAMES = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds", SECRET: "sds"}


@dataclass(frozen=True)
class Resource:
    """One Envoy resource as translation builds it, before serialization (xds/serialize.py)."""

    type_url: str
    name: str
    payload: _Any  # proto3 JSON dict, or an envoy-data-plane message


def short_name(type_url: str) -> str:
    """Return cds/eds/lds/rds/sds for the known types, "other" for anything else."""
    return SHORT_NAMES.get(type_url, "other")


class XdsResource:
    """One named, serialized Envoy resource. Immutable; equal when type, name and body are equal."""

    __slots__ = ("any_bytes", "body", "name", "type_url", "version")

    type_url: str
    name: str
    body: bytes
    version: str
    any_bytes: bytes

    def __init__(self, type_url: str, name: str, body: bytes, *, version: str | None = None) -> None:
        """`version`: a content hash the caller already holds (e.g. from the parts' keys), so a large
        body is not hashed again; by default a hash of (type URL, body)."""
        if not type_url or not name:
            raise ValueError("an xDS resource needs a type URL and a name")
        digest = version or hashlib.sha256(type_url.encode() + b"\0" + body).hexdigest()[:16]
        for attr, value in (
            ("type_url", type_url),
            ("name", name),
            ("body", bytes(body)),
            ("version", digest),
            ("any_bytes", encode_any(type_url, body)),
        ):
            object.__setattr__(self, attr, value)

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError("XdsResource is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, XdsResource):
            return NotImplemented
        return (self.type_url, self.name, self.body) == (other.type_url, other.name, other.body)

    def __hash__(self) -> int:
        return hash((self.type_url, self.name, self.version))

    def __repr__(self) -> str:
        return f"XdsResource({short_name(self.type_url)}:{self.name}@{self.version}, {len(self.body)}B)"

    @classmethod
    def from_message(cls, name: str, message: _Any) -> XdsResource:
        """Serialize a betterproto2 message once and infer its type URL from the message pool."""
        return cls(type_url_of(message), name, bytes(message))


def type_url_of(message: _Any) -> str:
    """The ``type.googleapis.com/<full proto name>`` of a betterproto2 message instance."""
    from envoy_data_plane.message_pool import default_message_pool

    try:
        return default_message_pool.type_to_url[type(message)]
    except KeyError:
        raise TypeError(f"{type(message).__qualname__} is not a registered protobuf message") from None


def message_class(type_url: str) -> type:
    """Find the betterproto2 class for a type URL, importing its envoy-data-plane module if needed.

    betterproto2 registers a class in the message pool only when its module is imported,
    so debug views that parse arbitrary bodies (and nested ``Any`` values) import lazily.
    """
    from envoy_data_plane.message_pool import default_message_pool

    pool = default_message_pool.url_to_type
    if type_url not in pool:
        package = type_url.removeprefix(TYPE_PREFIX).rpartition(".")[0]
        try:
            importlib.import_module(f"envoy_data_plane.{package}")
        except ImportError:
            pass
    try:
        return pool[type_url]
    except KeyError:
        raise TypeError(f"no message class known for {type_url}") from None
