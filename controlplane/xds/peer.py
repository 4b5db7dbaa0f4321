"""The verified identity of an xDS client: the URI SAN of its mTLS certificate, and its xDS roles.

A Node is client-asserted, so authorization must rest on what the TLS handshake
proved. gRPC exposes the verified peer certificate in the auth context; we read its
URI SAN (a SPIFFE ID) and the xDS roles it grants (identity/ca.py) and hand them to the
server's ``authorize`` callable as one ``VerifiedPeer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

from cryptography import x509

from controlplane.identity.ca import xds_roles_of_cert


class VerifiedPeer(str):
    """A client's SPIFFE ID (it compares and prints as that string) plus the xDS roles its certificate
    grants, so ``authorize(peer_identity, node)`` hooks that only know strings keep working."""

    xds_roles: frozenset[str]

    def __new__(cls, spiffe_id: str, xds_roles: frozenset[str] = frozenset()) -> Self:
        peer = super().__new__(cls, spiffe_id)
        peer.xds_roles = frozenset(xds_roles)
        return peer


def uri_san(pem: bytes) -> str | None:
    """The first URI subject alternative name of a PEM certificate, or None."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def peer_identity(auth_context: Mapping[str, Sequence[bytes]]) -> VerifiedPeer | None:
    """The URI SAN and xDS roles of the peer certificate in a gRPC auth context; None without mTLS."""
    certs = auth_context.get("x509_pem_cert") or ()
    for pem in certs:
        identity = uri_san(pem)
        if identity:
            return VerifiedPeer(identity, xds_roles_of_cert(pem))
    return None
