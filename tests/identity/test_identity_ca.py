import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from controlplane.identity.ca import (
    CaStateError,
    CertificateAuthority,
    TrustDomainMismatch,
    stored_trust_domain,
)

SVID = "spiffe://example.org/ns/team-a/sa/agent"


def _verify_client(ca: CertificateAuthority, pem: bytes, *, at: datetime | None = None):
    """RFC 5280 path validation with cryptography's verifier, as a TLS server would do for a client."""
    store = verification.Store(x509.load_pem_x509_certificates(ca.bundle_pem))
    builder = verification.PolicyBuilder().store(store)
    if at is not None:
        builder = builder.time(at)
    leaf, *chain = x509.load_pem_x509_certificates(pem)
    return builder.build_client_verifier().verify(leaf, chain)


def test_first_start_creates_files_with_safe_modes(tmp_path):
    CertificateAuthority.load_or_create(tmp_path, trust_domain="example.org")
    ca_dir = tmp_path / "ca"
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca-key.pem", "ca.pem", "trust-domain"]
    assert stat.S_IMODE((ca_dir / "ca-key.pem").stat().st_mode) == 0o600
    assert (ca_dir / "trust-domain").read_text().strip() == "example.org"
    assert not [p for p in tmp_path.iterdir() if p.name != "ca"], "no temp dirs left behind"


def test_second_start_reuses_the_same_root(tmp_path):
    first = CertificateAuthority.load_or_create(tmp_path, trust_domain="example.org")
    leaf = first.issue(SVID)
    second = CertificateAuthority.load_or_create(tmp_path, trust_domain="example.org")
    assert second.bundle_pem == first.bundle_pem
    _verify_client(second, leaf.cert_pem)  # certs issued before a restart still verify


def test_other_trust_domain_for_existing_state_is_an_error(tmp_path):
    CertificateAuthority.load_or_create(tmp_path, trust_domain="example.org")
    with pytest.raises(TrustDomainMismatch, match="example.org"):
        CertificateAuthority.load_or_create(tmp_path, trust_domain="other.org")


def test_stored_trust_domain_of_a_fresh_dir_is_none(tmp_path):
    assert stored_trust_domain(tmp_path) is None
    assert stored_trust_domain(tmp_path / "not-yet-created") is None


def test_stored_trust_domain_is_the_one_the_ca_was_made_for(tmp_path):
    CertificateAuthority.load_or_create(tmp_path, trust_domain="example.org")
    assert stored_trust_domain(tmp_path) == "example.org"


def test_stored_trust_domain_survives_a_refused_mismatch(tmp_path):
    CertificateAuthority.load_or_create(tmp_path, trust_domain="example.org")
    with pytest.raises(TrustDomainMismatch):
        CertificateAuthority.load_or_create(tmp_path, trust_domain="other.org")
    assert stored_trust_domain(tmp_path) == "example.org"


def test_broken_state_is_reported(tmp_path):
    CertificateAuthority.load_or_create(tmp_path, trust_domain="example.org")
    (tmp_path / "ca" / "ca-key.pem").write_text("garbage")
    with pytest.raises(CaStateError):
        CertificateAuthority.load_or_create(tmp_path, trust_domain="example.org")


def test_root_certificate_shape(ca):
    root = ca.certificate
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    san = root.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org"]
    assert root.not_valid_after_utc - root.not_valid_before_utc > timedelta(days=3649)


def test_issued_svid_verifies_and_carries_the_spiffe_id(ca):
    ident = ca.issue(SVID, dns_names=["agent.team-a.svc"], ip_addresses=["10.0.0.7"])
    verified = _verify_client(ca, ident.chain_pem)
    assert x509.UniformResourceIdentifier(SVID) in verified.subjects
    cert = ident.certificate()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SVID]
    assert san.get_values_for_type(x509.DNSName) == ["agent.team-a.svc"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    assert ident.chain_pem == ident.cert_pem  # root-signed: nothing to append


def test_validity_window_is_backdated_and_bounded(ca):
    now = datetime(2030, 1, 1, tzinfo=UTC)
    ident = ca.issue(SVID, ttl=timedelta(hours=1), now=now)
    assert ident.not_before == now - timedelta(minutes=2)
    assert ident.not_after == now + timedelta(hours=1)
    _verify_client(ca, ident.cert_pem, at=now)
    with pytest.raises(verification.VerificationError):
        _verify_client(ca, ident.cert_pem, at=now + timedelta(hours=2))


def test_impostor_ca_is_not_trusted(ca, other_ca):
    with pytest.raises(verification.VerificationError):
        _verify_client(ca, other_ca.issue(SVID).cert_pem)


def test_issue_refuses_foreign_or_invalid_ids(ca):
    with pytest.raises(ValueError, match="outside trust domain"):
        ca.issue("spiffe://other.org/ns/a/sa/b")
    with pytest.raises(ValueError):
        ca.issue("spiffe://example.org/ns/../sa/b")
