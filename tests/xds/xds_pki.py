"""Throwaway test PKI: a CA, a server certificate for 127.0.0.1, and SPIFFE client certificates."""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool, sans: list) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class TestPki:
    """Keys and PEM certificates; ``issue(spiffe_id)`` returns (cert_pem, key_pem)."""

    __test__ = False

    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_pem = _cert("test-ca", self.ca_key, None, self.ca_key, ca=True, sans=[])
        self.ca_name = x509.load_pem_x509_certificate(self.ca_pem).subject
        key = ec.generate_private_key(ec.SECP256R1())
        self.server_cert = _cert(
            "xds",
            key,
            self.ca_name,
            self.ca_key,
            ca=False,
            sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )
        self.server_key = _pem_key(key)

    def issue(self, spiffe_id: str) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(
            "client",
            key,
            self.ca_name,
            self.ca_key,
            ca=False,
            sans=[x509.UniformResourceIdentifier(spiffe_id)],
        )
        return cert, _pem_key(key)
