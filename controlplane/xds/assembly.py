"""A route's bytes built from its parts' bytes, down to each RBAC policy.

Per-target policy sits deep in a route (weighted cluster -> typed_per_filter_config -> RBACPerRoute ->
policies), so serializing a changed route whole re-encodes every rule of every policy on it. Here a
message on that path is cut into its own fields (serialized as one cached part) and the fields on the
path, each appended as `tag + length + bytes` of its own cached parts: the wire format allows a
message's fields in any order, and a map or repeated field as a concatenation of its entries. So an
edit of one policy serializes that policy's Policy messages and re-frames the few messages above them.
The result parses to the same message as betterproto2's serialization of the whole (tests check it).
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.xds import rbac_encoding
from controlplane.xds.wire import encode_any, len_field, str_field

ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.Route"
VIRTUAL_HOST_TYPE = "type.googleapis.com/envoy.config.route.v3.VirtualHost"
ROUTE_ACTION_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteAction"
WEIGHTED_CLUSTER_TYPE = "type.googleapis.com/envoy.config.route.v3.WeightedCluster"
CLUSTER_WEIGHT_TYPE = "type.googleapis.com/envoy.config.route.v3.WeightedCluster.ClusterWeight"
ANY_TYPE = "type.googleapis.com/google.protobuf.Any"
TYPED_CONFIG_MAP = "map<string, Any>"

#: per message type, the proto3 JSON fields assembled from parts: (field number, what they hold)
ASSEMBLED = {
    VIRTUAL_HOST_TYPE: {"typedPerFilterConfig": (15, TYPED_CONFIG_MAP)},
    ROUTE_TYPE: {"route": (2, ROUTE_ACTION_TYPE), "typedPerFilterConfig": (13, TYPED_CONFIG_MAP)},
    ROUTE_ACTION_TYPE: {"weightedClusters": (3, WEIGHTED_CLUSTER_TYPE)},
    WEIGHTED_CLUSTER_TYPE: {"clusters": (1, CLUSTER_WEIGHT_TYPE)},
    CLUSTER_WEIGHT_TYPE: {"typedPerFilterConfig": (10, TYPED_CONFIG_MAP)},
}

Part = Callable[[str, dict], bytes]  # (type URL, proto3 JSON) -> bytes, cached by content


def encode(type_url: str, payload: dict, *, part: Part, leaf: Part) -> bytes:
    """`payload`'s bytes: `leaf` (a plain serialization) unless it holds fields assembled from `part`s."""
    fields = ASSEMBLED.get(type_url, {})
    nested = [key for key in fields if key in payload]
    if not nested:
        return leaf(type_url, payload)
    rest = {k: v for k, v in payload.items() if k not in fields}
    out = [part(type_url, rest)]
    for key in nested:
        number, holds = fields[key]
        out += [len_field(number, value) for value in _values(holds, payload[key], part)]
    return b"".join(out)


def _values(holds: str, value, part: Part) -> list[bytes]:
    if holds == TYPED_CONFIG_MAP:
        return [str_field(1, name) + len_field(2, _any(config, part)) for name, config in value.items()]
    if isinstance(value, list):
        return [part(holds, item) for item in value]
    return [part(holds, value)]


def _any(config: dict, part: Part) -> bytes:
    if config.get("@type") == rbac_encoding.RBAC_PER_ROUTE_TYPE and rbac_encoding.encodable(config):
        body = rbac_encoding.encode_rbac_per_route(config, lambda p: part(rbac_encoding.POLICY_TYPE, p))
        return encode_any(rbac_encoding.RBAC_PER_ROUTE_TYPE, body)
    return part(ANY_TYPE, config)
