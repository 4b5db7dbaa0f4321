"""What the identity API agrees to sign (identity/csr.py): the proven ID only, sound CSRs, bounded lifetimes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from controlplane.identity.certificate_client import build_csr
from controlplane.identity.csr import CsrRefused, IdentityMismatch, SigningPolicy, checked_csr

AGENT = "spiffe://example.org/ns/agents/sa/planner"
OTHER = "spiffe://example.org/ns/tools/sa/db"


def _csr(key, sans) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def test_a_csr_for_the_proven_identity_is_accepted():
    key = ec.generate_private_key(ec.SECP256R1())
    csr = checked_csr(build_csr(key, AGENT).decode(), AGENT)
    assert csr.public_key() == key.public_key()


def test_a_csr_for_another_identity_is_refused():
    pem = build_csr(ec.generate_private_key(ec.SECP256R1()), OTHER).decode()
    with pytest.raises(IdentityMismatch, match="asks for spiffe://example.org/ns/tools/sa/db"):
        checked_csr(pem, AGENT)


@pytest.mark.parametrize("pem", ["", "not a csr", ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                                    "-----END CERTIFICATE REQUEST-----\n")])
def test_a_malformed_csr_is_refused(pem):
    with pytest.raises(CsrRefused, match="not a PEM PKCS#10"):
        checked_csr(pem, AGENT)


def test_a_csr_whose_signature_does_not_verify_is_refused():
    csr = x509.load_pem_x509_csr(build_csr(ec.generate_private_key(ec.SECP256R1()), AGENT))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature's last INTEGER
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CsrRefused, match="signature does not verify"):
        checked_csr(tampered, AGENT)


@pytest.mark.parametrize("key", [rsa.generate_private_key(65537, 1024), ed25519.Ed25519PrivateKey.generate(),
                                 ec.generate_private_key(ec.SECP521R1())], ids=["rsa1024", "ed25519", "p521"])
def test_keys_outside_what_envoy_and_grpc_take_are_refused(key):
    with pytest.raises(CsrRefused, match="unsupported key"):
        checked_csr(_csr(key, [x509.UniformResourceIdentifier(AGENT)]), AGENT)


def test_rsa_2048_and_p384_are_accepted():
    for key in (rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP384R1())):
        assert checked_csr(_csr(key, [x509.UniformResourceIdentifier(AGENT)]), AGENT)


@pytest.mark.parametrize("sans", [
    [], [x509.DNSName("db.tools.svc")],
    [x509.UniformResourceIdentifier(AGENT), x509.DNSName("planner.agents.svc")],
    [x509.UniformResourceIdentifier(AGENT), x509.UniformResourceIdentifier(OTHER)],
], ids=["none", "dns-only", "uri-and-dns", "two-uris"])
def test_only_one_san_the_spiffe_id_is_signed(sans):
    with pytest.raises(CsrRefused, match="exactly one SAN"):
        checked_csr(_csr(ec.generate_private_key(ec.SECP256R1()), sans), AGENT)


def test_the_policy_bounds_the_lifetime():
    policy = SigningPolicy(default_ttl=timedelta(hours=1), max_ttl=timedelta(hours=2), min_ttl=timedelta(minutes=1))
    assert policy.ttl(0) == timedelta(hours=1)
    assert policy.ttl(600) == timedelta(minutes=10)
    assert policy.ttl(7200) == timedelta(hours=2)
    for outside in (7201, 59, -5):
        with pytest.raises(CsrRefused, match="outside the server's bounds"):
            policy.ttl(outside)
