"""Envoy ``Secret`` resources (SDS) for SVIDs and trust bundles.

Secrets travel inline (``inline_bytes``) over ADS, so the key never touches the proxy's disk and a rotation
is one SDS push: Envoy swaps cert and key together because they arrive in one message (the atomicity that
two watched files cannot give). Names are stable so listeners and clusters can reference them before the
secret exists: a listener's ``sds_config: {ads: {}}`` with ``cert_secret_name(id)`` and
``TRUST_BUNDLE_SECRET``.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy_data_plane.envoy.config.core.v3 import DataSource
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    GenericSecret,
    Secret,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    TlsCertificate,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher

from controlplane.identity.ca import IssuedIdentity
from controlplane.identity.spiffe import parse_spiffe_id

__all__ = [
    "SECRET_TYPE_URL",
    "SERVER_CERT_SECRET",
    "TRUST_BUNDLE_SECRET",
    "WORKLOAD_CERT_SECRET",
    "cert_secret_name",
    "credential_secret",
    "tls_certificate_secret",
    "uri_san_matchers",
    "validation_context_secret",
]

SECRET_TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
SERVER_CERT_SECRET = "gateway-cert"
WORKLOAD_CERT_SECRET = "workload-cert"  # a sidecar's SVID: served inbound, presented outbound
TRUST_BUNDLE_SECRET = "spiffe-trust-bundle"


def cert_secret_name(spiffe_id: str) -> str:
    """The SDS name of the SVID for ``spiffe_id``: the ID itself, so config dumps say whose cert it is."""
    parse_spiffe_id(spiffe_id)
    return spiffe_id


def tls_certificate_secret(name: str, identity: IssuedIdentity) -> Secret:
    """A ``Secret`` carrying ``identity``'s chain and key inline."""
    return Secret(
        name=name,
        tls_certificate=TlsCertificate(
            certificate_chain=DataSource(inline_bytes=identity.chain_pem),
            private_key=DataSource(inline_bytes=identity.key_pem),
        ),
    )


def uri_san_matchers(*, prefix: str | None = None, exact: Iterable[str] = ()) -> list[SubjectAltNameMatcher]:
    """URI SAN matchers: any of ``exact`` IDs, or any ID under ``prefix`` (e.g. ``spiffe://<td>/``)."""
    matchers = [StringMatcher(exact=e) for e in exact]
    if prefix is not None:
        matchers.append(StringMatcher(prefix=prefix))
    return [SubjectAltNameMatcher(san_type=SubjectAltNameMatcherSanType.URI, matcher=m) for m in matchers]


def validation_context_secret(
    name: str,
    bundle_pem: bytes,
    *,
    match_uri_prefix: str | None = None,
    match_uri_exact: Iterable[str] = (),
) -> Secret:
    """A ``Secret`` with the trust bundle and, optionally, which peer SPIFFE IDs to accept.

    Without a matcher, any certificate the bundle vouches for is accepted; the SAN check narrows that to a
    trust domain (prefix) or named peers (exact). Authorization of individual callers is RBAC's job.
    """
    return Secret(
        name=name,
        validation_context=CertificateValidationContext(
            trusted_ca=DataSource(inline_bytes=bundle_pem),
            match_typed_subject_alt_names=uri_san_matchers(prefix=match_uri_prefix, exact=match_uri_exact),
        ),
    )


def credential_secret(name: str, value: bytes) -> Secret:
    """A ``Secret`` carrying a credential an egress injects (``generic_secret``): served over SDS only,
    redacted from config dumps by field name (admin/redact.py: ``secret``)."""
    return Secret(name=name, generic_secret=GenericSecret(secret=DataSource(inline_bytes=value)))
