"""What the identity API signs: a CSR checked against the caller's proven identity and the server's policy.

Why a policy of its own: the certificate service (certificate_service.py) is reachable by any holder of
one of our SVIDs, so everything a CSR asks for is a claim to check, never to trust. The CSR must be a
well-formed PKCS#10 whose self-signature verifies, hold a key Envoy and gRPC accept (ECDSA P-256/P-384,
RSA >= 2048), and name exactly one SAN: a URI equal to the proven SPIFFE ID. DNS/IP SANs, another ID, or
a second one are refused, so a workload can never leave with a certificate for anything but itself. The
subject is ignored (the CA writes its own), and the lifetime is the server's to bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["CsrRefused", "IdentityMismatch", "SigningPolicy", "checked_csr"]

_CURVES = (ec.SECP256R1, ec.SECP384R1)
_MIN_RSA_BITS = 2048


class CsrRefused(ValueError):
    """The CSR or the requested validity is not one the server signs (INVALID_ARGUMENT)."""


class IdentityMismatch(PermissionError):
    """The CSR asks for an identity other than the one the caller proved (PERMISSION_DENIED)."""


@dataclass(frozen=True)
class SigningPolicy:
    """How long the identity API's certificates live: ``default_ttl`` when none is asked, at most
    ``max_ttl`` (longer requests are refused, as Istio's CA refuses them), at least ``min_ttl``."""

    default_ttl: timedelta = timedelta(hours=24)
    max_ttl: timedelta = timedelta(hours=24)
    min_ttl: timedelta = timedelta(minutes=1)

    def ttl(self, requested_seconds: int) -> timedelta:
        if requested_seconds == 0:
            return self.default_ttl
        requested = timedelta(seconds=requested_seconds)
        if not self.min_ttl <= requested <= self.max_ttl:
            raise CsrRefused(f"validity_duration {requested_seconds}s is outside the server's bounds "
                             f"[{int(self.min_ttl.total_seconds())}s, {int(self.max_ttl.total_seconds())}s]")
        return requested


def checked_csr(csr_pem: str, proven_id: str) -> x509.CertificateSigningRequest:
    """The parsed CSR when it may be signed for ``proven_id``; raises CsrRefused or IdentityMismatch."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as err:
        raise CsrRefused(f"the csr is not a PEM PKCS#10 request: {err}") from None
    if not csr.is_signature_valid:
        raise CsrRefused("the csr's signature does not verify with its own key")
    _check_key(csr.public_key())
    requested = _requested_id(csr)
    if requested != proven_id:
        raise IdentityMismatch(f"the csr asks for {requested}, but the caller proved {proven_id}")
    return csr


def _check_key(key) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES):
        return
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS:
        return
    raise CsrRefused(f"unsupported key {type(key).__name__} "
                     f"{getattr(key, 'curve', None) and key.curve.name or getattr(key, 'key_size', '')}: "
                     f"want ECDSA P-256/P-384 or RSA >= {_MIN_RSA_BITS} bits")


def _requested_id(csr: x509.CertificateSigningRequest) -> str:
    try:
        names = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        names = []
    if len(names) != 1 or not isinstance(names[0], x509.UniformResourceIdentifier):
        raise CsrRefused(f"the csr must carry exactly one SAN, the SPIFFE ID URI; it has {len(names)}: "
                         + ", ".join(str(n.value) for n in names))
    return names[0].value
