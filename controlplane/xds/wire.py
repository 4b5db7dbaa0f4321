"""Hand-written protobuf wire encoding for the few messages the server emits per push.

Why by hand: betterproto2 validates and re-encodes a whole message tree on every
``bytes(msg)``, which costs far more than Envoy needs to apply the config
(reference/envoy-facts.md). A DiscoveryResponse is only a handful of
length-delimited fields around bytes we already hold, so we concatenate them.
"""

from __future__ import annotations

from collections.abc import Iterable

_WIRE_LEN = 2


def varint(value: int) -> bytes:
    """Encode a non-negative integer as a protobuf base-128 varint."""
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def len_field(field_number: int, data: bytes) -> bytes:
    """Encode one length-delimited field (string, bytes or sub-message)."""
    return varint((field_number << 3) | _WIRE_LEN) + varint(len(data)) + data


def str_field(field_number: int, text: str) -> bytes:
    """Encode a proto3 string field; empty strings are omitted as proto3 does."""
    return len_field(field_number, text.encode()) if text else b""


def encode_any(type_url: str, value: bytes) -> bytes:
    """Encode ``google.protobuf.Any{type_url=1, value=2}``."""
    return str_field(1, type_url) + (len_field(2, value) if value else b"")


def encode_discovery_response(
    *,
    version_info: str,
    resources: Iterable[bytes],
    type_url: str,
    nonce: str,
    control_plane_id: str = "",
) -> bytes:
    """Encode ``envoy.service.discovery.v3.DiscoveryResponse`` from pre-encoded ``Any`` bytes.

    Fields: version_info=1, resources=2 (repeated Any), type_url=4, nonce=5,
    control_plane=6 (``core.v3.ControlPlane{identifier=1}``).
    """
    return (discovery_response_head(version_info=version_info, resources=resources, type_url=type_url)
            + discovery_response_tail(nonce=nonce, control_plane_id=control_plane_id))


def discovery_response_head(*, version_info: str, resources: Iterable[bytes], type_url: str) -> bytes:
    """Fields 1, 2 and 4 of a DiscoveryResponse: the same for every stream sent this push."""
    return b"".join([str_field(1, version_info), *(len_field(2, any_bytes) for any_bytes in resources),
                     str_field(4, type_url)])


def discovery_response_tail(*, nonce: str, control_plane_id: str = "") -> bytes:
    """Fields 5 and 6 of a DiscoveryResponse, per stream. A message is the concatenation of its fields,
    so head + tail is the whole response, in field order (as betterproto2 writes it)."""
    control_plane = len_field(6, str_field(1, control_plane_id)) if control_plane_id else b""
    return str_field(5, nonce) + control_plane


def encode_delta_resource(*, name: str, version: str, any_bytes: bytes) -> bytes:
    """Encode ``envoy.service.discovery.v3.Resource`` from a resource's pre-encoded ``Any``.

    Fields: name=3, version=1, resource=2 (Any); aliases=4, ttl=6 and cache_control=7 are
    never set. Emitted in the proto's declaration order (name, version, resource), which is
    also betterproto2's, so the bytes equal a betterproto2 serialization of the same message.
    """
    return str_field(3, name) + str_field(1, version) + len_field(2, any_bytes)


def encode_delta_discovery_response(
    *,
    system_version_info: str,
    resources: Iterable[bytes],
    type_url: str,
    removed_resources: Iterable[str],
    nonce: str,
    control_plane_id: str = "",
) -> bytes:
    """Encode ``envoy.service.discovery.v3.DeltaDiscoveryResponse`` from encoded ``Resource`` bytes.

    Fields: system_version_info=1, resources=2 (repeated Resource), type_url=4,
    removed_resources=6 (repeated string), nonce=5, control_plane=7
    (``core.v3.ControlPlane{identifier=1}``), in declaration order.
    """
    parts = [str_field(1, system_version_info)]
    parts.extend(len_field(2, resource) for resource in resources)
    parts.append(str_field(4, type_url))
    parts.extend(len_field(6, name.encode()) for name in removed_resources)
    parts.append(str_field(5, nonce))
    if control_plane_id:
        parts.append(len_field(7, str_field(1, control_plane_id)))
    return b"".join(parts)
