"""The client side of the identity API: a fresh key, a CSR for the identity we already hold, an SVID back.

Used by `agentic-cp identity request` (agents that hold their own SVIDs, CLIs). The proof of identity is
the credential folder's cert.pem/key.pem (a bootstrap credential or the previous SVID), presented as the
mTLS client certificate; bundle.pem is what the server's certificate must chain to. The new key never
leaves this process: only its CSR is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controlplane.identity.files import BUNDLE_FILE, CERT_FILE, KEY_FILE
from controlplane.identity.xds_auth import spiffe_ids_of_cert
from controlplane.protos.agentic_cp.identity.v1 import CertificateServiceStub, CreateCertificateRequest

__all__ = ["ReceivedIdentity", "build_csr", "proven_identity", "request_certificate"]


@dataclass(frozen=True)
class ReceivedIdentity:
    """An SVID the service signed, shaped for ``files.write_identity`` (key_pem, chain_pem) plus its bundle."""

    spiffe_id: str
    key_pem: bytes
    chain_pem: bytes
    bundle_pem: bytes
    certificate: x509.Certificate


def build_csr(key: ec.EllipticCurvePrivateKey, spiffe_id: str) -> bytes:
    """A PEM CSR whose one SAN is ``spiffe_id``, signed by ``key``."""
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM))


def proven_identity(credentials: Path) -> str:
    """The SPIFFE ID the credential folder's certificate carries (the one we may ask for)."""
    ids = spiffe_ids_of_cert((credentials / CERT_FILE).read_bytes())
    if len(ids) != 1:
        raise ValueError(f"{credentials / CERT_FILE} carries {len(ids)} SPIFFE IDs; an SVID carries one")
    return ids[0]


def request_certificate(address: str, credentials: Path, *, ttl: timedelta | None = None,
                        timeout: float = 10.0, spiffe_id: str | None = None) -> ReceivedIdentity:
    """Ask the service at ``address`` for an SVID. ``spiffe_id`` defaults to the proven one (asking for
    another is refused by the server; the parameter exists so that refusal can be shown)."""
    credentials = Path(credentials)
    wanted = spiffe_id or proven_identity(credentials)
    key = ec.generate_private_key(ec.SECP256R1())
    request = CreateCertificateRequest(csr=build_csr(key, wanted).decode(),
                                       validity_duration=int(ttl.total_seconds()) if ttl else 0)
    channel_credentials = grpc.ssl_channel_credentials(
        root_certificates=(credentials / BUNDLE_FILE).read_bytes(),
        private_key=(credentials / KEY_FILE).read_bytes(),
        certificate_chain=(credentials / CERT_FILE).read_bytes())
    with grpc.secure_channel(address, channel_credentials) as channel:
        # The generated sync stub takes no deadline; waiting for the TLS handshake first bounds the wait
        # for a server that is down or refuses our certificate.
        grpc.channel_ready_future(channel).result(timeout=timeout)
        response = CertificateServiceStub(channel).create_certificate(request)
    return _received(wanted, key, list(response.cert_chain))


def _received(spiffe_id: str, key: ec.EllipticCurvePrivateKey, chain: list[str]) -> ReceivedIdentity:
    """The files' contents: cert.pem = the leaf and any intermediates, bundle.pem = the root (last)."""
    if len(chain) < 2:
        raise ValueError(f"the service answered a chain of {len(chain)} certificates; want leaf ... root")
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    if leaf.public_key() != key.public_key() or spiffe_ids_of_cert(chain[0].encode()) != [spiffe_id]:
        raise ValueError("the service signed a certificate that is not for our key and identity")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ReceivedIdentity(spiffe_id=spiffe_id, key_pem=key_pem, chain_pem="".join(chain[:-1]).encode(),
                            bundle_pem=chain[-1].encode(), certificate=leaf)
