"""The verified identity of an xDS client: the URI SAN of its mTLS certificate.

A Node is client-asserted, so authorization must rest on what the TLS handshake
proved. gRPC exposes the verified peer certificate in the auth context; we read its
URI SAN (a SPIFFE ID) and hand it to the server's ``authorize`` callable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography import x509


def uri_san(pem: bytes) -> str | None:
    """The first URI subject alternative name of a PEM certificate, or None."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def peer_identity(auth_context: Mapping[str, Sequence[bytes]]) -> str | None:
    """The URI SAN of the peer certificate in a gRPC auth context; None without mTLS."""
    certs = auth_context.get("x509_pem_cert") or ()
    for pem in certs:
        identity = uri_san(pem)
        if identity:
            return identity
    return None
