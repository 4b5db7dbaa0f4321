"""The mesh's certificate authority: one self-signed root per state dir, and X.509-SVID issuance.

Why a local root rather than a Kubernetes signer: the control plane must work on a laptop (directory
source, no API server) and in tests, and Envoy only needs a PEM bundle to trust. The root is created on
first start and reused afterwards, so restarting the control plane never invalidates certificates that
Envoys already hold.

Leaf certificates follow upstream kube-agentic-networking's signer (reference 2.6): ECDSA P-256, URI SAN =
the SPIFFE ID, KeyUsage digitalSignature, EKU clientAuth + serverAuth, notBefore = now - 2 min (clock skew
between machines), lifetime 24 h by default. The root signs leaves directly, so a leaf's chain is the leaf.

An xDS proxy's credential carries one more thing, its xDS role: a subject OU ``xds-client:<role>``
(``gateway`` or ``sidecar``). Workload SVIDs have none, so an agent's certificate, which names the same
kind of SPIFFE ID, cannot pass as a proxy and read a proxy's config (keys, policy) over xDS. The URI SAN
stays the only SAN-borne identity: an SVID keeps exactly one URI SAN.

Concurrency: after loading, a CertificateAuthority holds only immutable objects and ``issue`` shares no
mutable state, so it may be called from any thread or task.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.identity.files import atomic_write
from controlplane.identity.spiffe import parse_spiffe_id, trust_domain_id, validate_trust_domain

__all__ = [
    "XDS_ROLE_PREFIX", "CaStateError", "CertificateAuthority", "IssuedIdentity", "TrustDomainMismatch",
    "stored_trust_domain", "xds_roles_of_cert",
]

CA_DIR = "ca"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
TRUST_DOMAIN_FILE = "trust-domain"
ROOT_LIFETIME = timedelta(days=3650)
BACKDATE = timedelta(minutes=2)
XDS_ROLE_PREFIX = "xds-client:"


class CaStateError(RuntimeError):
    """The CA files under the state dir are incomplete or unreadable."""


class TrustDomainMismatch(CaStateError):
    """The state dir holds a CA for another trust domain; reusing it would mint unverifiable IDs."""


@dataclass(frozen=True)
class IssuedIdentity:
    """One X.509-SVID with its key. PEM fields are bytes, ready for files, gRPC and Envoy inline_bytes."""

    spiffe_id: str
    cert_pem: bytes
    key_pem: bytes
    chain_pem: bytes
    not_before: datetime
    not_after: datetime
    xds_role: str | None = None  # the xDS role the certificate grants (proxies only)

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def stored_trust_domain(state_dir: Path) -> str | None:
    """The trust domain the CA kept in ``state_dir`` was made for; None when the state dir holds no CA yet.

    Callers that take an optional ``--trust-domain`` default to it, so a state dir keeps its trust domain
    without the flag being repeated (``load_or_create`` refuses any other)."""
    path = Path(state_dir) / CA_DIR / TRUST_DOMAIN_FILE
    return path.read_text().strip() if path.exists() else None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def xds_roles_of_cert(cert_pem: bytes) -> frozenset[str]:
    """The xDS roles a PEM certificate grants (subject OUs ``xds-client:<role>``); empty for a workload."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return frozenset(str(u.value)[len(XDS_ROLE_PREFIX):] for u in units
                     if str(u.value).startswith(XDS_ROLE_PREFIX))


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _serial() -> int:
    return secrets.randbits(126) | 1


def _build_root(trust_domain: str, key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    """A self-signed root that may sign leaves only (path length 0) and names its trust domain."""
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agentic-cp"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"agentic-cp root CA {trust_domain}"),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(trust_domain_id(trust_domain))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )


def _leaf_sans(spiffe_id: str, dns_names: Iterable[str], ip_addresses: Iterable[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
    sans += [x509.DNSName(d) for d in dict.fromkeys(dns_names)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(str(i) for i in ip_addresses)]
    return sans


_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
)


class CertificateAuthority:
    """A root key and certificate for one trust domain. Build with ``load_or_create``, ``create`` or
    ``from_pem`` (which ``ca_secret.load_or_create_from_secret`` uses for a CA shared by replicas)."""

    def __init__(self, *, trust_domain: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey):
        self.trust_domain = validate_trust_domain(trust_domain)
        self.certificate = certificate
        self._key = key
        self._bundle_pem = _cert_pem(certificate)

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def create(cls, *, trust_domain: str, now: datetime | None = None) -> CertificateAuthority:
        """A fresh in-memory CA (tests, one-shot tools). Nothing is written."""
        validate_trust_domain(trust_domain)
        key = _new_key()
        return cls(trust_domain=trust_domain, certificate=_build_root(trust_domain, key, now or _utcnow()),
                   key=key)

    @classmethod
    def load_or_create(cls, state_dir: Path, *, trust_domain: str) -> CertificateAuthority:
        """The CA kept under ``<state_dir>/ca/``: created on first call, the same root on every later one.

        Creation writes into a temporary sibling directory and renames it to ``ca/`` in one step, so a
        crash never leaves half a CA behind, and of two processes racing the first start, one wins and
        both end up using its root.
        """
        validate_trust_domain(trust_domain)
        ca_dir = Path(state_dir) / CA_DIR
        if not ca_dir.exists():
            cls._create_dir(ca_dir, trust_domain=trust_domain)
        return cls._load_dir(ca_dir, trust_domain=trust_domain)

    @classmethod
    def _create_dir(cls, ca_dir: Path, *, trust_domain: str) -> None:
        ca_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=ca_dir.parent, prefix=".ca-"))
        try:
            ca = cls.create(trust_domain=trust_domain)
            atomic_write(tmp / CA_KEY_FILE, ca.key_pem(), mode=0o600)
            atomic_write(tmp / CA_CERT_FILE, ca.bundle_pem)
            atomic_write(tmp / TRUST_DOMAIN_FILE, (trust_domain + "\n").encode())
            os.chmod(tmp, 0o700)
            os.rename(tmp, ca_dir)
        except OSError:
            if not ca_dir.exists():  # not a lost race: a real failure
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def _load_dir(cls, ca_dir: Path, *, trust_domain: str) -> CertificateAuthority:
        try:
            stored_td = (ca_dir / TRUST_DOMAIN_FILE).read_text().strip()
            cert_pem, key_pem = (ca_dir / CA_CERT_FILE).read_bytes(), (ca_dir / CA_KEY_FILE).read_bytes()
        except OSError as exc:
            raise CaStateError(f"cannot load the CA from {ca_dir}: {exc}") from exc
        if stored_td != trust_domain:
            raise TrustDomainMismatch(
                f"state dir {ca_dir.parent} holds a CA for trust domain {stored_td!r}, not {trust_domain!r}; "
                f"use --trust-domain {stored_td} or another --state-dir"
            )
        return cls.from_pem(trust_domain=trust_domain, cert_pem=cert_pem, key_pem=key_pem, origin=str(ca_dir))

    @classmethod
    def from_pem(
        cls, *, trust_domain: str, cert_pem: bytes, key_pem: bytes, origin: str = "PEM"
    ) -> CertificateAuthority:
        """A CA from its root certificate and key as stored elsewhere (a directory, a Kubernetes Secret).

        Raises CaStateError, naming ``origin``, when either does not parse or the key is not the cert's.
        """
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except ValueError as exc:
            raise CaStateError(f"cannot load the CA from {origin}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise CaStateError(f"{origin}: {CA_KEY_FILE} does not match {CA_CERT_FILE}")
        return cls(trust_domain=trust_domain, certificate=cert, key=key)

    # -- use ----------------------------------------------------------------------------------------
    @property
    def bundle_pem(self) -> bytes:
        """The trust bundle (the root certificate, PEM) that every peer validates SVIDs against."""
        return self._bundle_pem

    def key_pem(self) -> bytes:
        """The root's private key (PKCS#8 PEM), for storing the CA where other replicas load it from."""
        return _key_pem(self._key)

    def issue(
        self,
        spiffe_id: str,
        *,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
        ttl: timedelta = timedelta(hours=24),
        now: datetime | None = None,
        xds_role: str | None = None,
    ) -> IssuedIdentity:
        """Sign a new key pair for ``spiffe_id`` (which must belong to this trust domain).

        ``xds_role`` (``gateway``/``sidecar``) marks a proxy's credential: only such a certificate may
        open an xDS stream as a node of that role.

        ``now`` exists for tests and for the rotation manager's injected clock. The leaf never outlives
        the root: a leaf valid after its issuer would fail verification at the end anyway.
        """
        key = _new_key()
        cert = self._checked_leaf(key.public_key(), spiffe_id, _leaf_sans(spiffe_id, dns_names, ip_addresses),
                                  ttl=ttl, now=now, xds_role=xds_role)
        pem = _cert_pem(cert)
        return IssuedIdentity(spiffe_id=spiffe_id, cert_pem=pem, key_pem=_key_pem(key), chain_pem=pem,
                              not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                              xds_role=xds_role)

    def sign_public_key(self, public_key, spiffe_id: str, *, ttl: timedelta,
                        now: datetime | None = None) -> x509.Certificate:
        """A workload SVID for a key the caller holds (a CSR's): the identity API's signing step. Never an
        xDS role: a certificate got this way cannot open a proxy's xDS stream."""
        return self._checked_leaf(public_key, spiffe_id, _leaf_sans(spiffe_id, (), ()), ttl=ttl, now=now)

    def _checked_leaf(self, public_key, spiffe_id: str, sans, *, ttl: timedelta, now: datetime | None,
                      xds_role: str | None = None) -> x509.Certificate:
        td, _ = parse_spiffe_id(spiffe_id)
        if td != self.trust_domain:
            raise ValueError(f"{spiffe_id} is outside trust domain {self.trust_domain!r}")
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        now = now or _utcnow()
        not_after = min(now + ttl, self.certificate.not_valid_after_utc)
        return self._sign_leaf(public_key, spiffe_id, sans, not_before=now - BACKDATE, not_after=not_after,
                               xds_role=xds_role)

    def _sign_leaf(self, public_key, spiffe_id, sans, *, not_before: datetime, not_after: datetime,
                   xds_role: str | None = None) -> x509.Certificate:
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain)]
        if xds_role:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, XDS_ROLE_PREFIX + xds_role))
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, spiffe_id.rsplit("/", 1)[-1][:64]))
        subject = x509.Name(attributes)
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(_serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_LEAF_KEY_USAGE, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(self._key, hashes.SHA256())
        )
