from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import Secret, SubjectAltNameMatcherSanType

from controlplane.identity.sds import (
    TRUST_BUNDLE_SECRET,
    cert_secret_name,
    tls_certificate_secret,
    validation_context_secret,
)

SVID = "spiffe://example.org/ns/a/sa/b"


def test_tls_certificate_secret_round_trips(ca):
    ident = ca.issue(SVID)
    msg = tls_certificate_secret(cert_secret_name(SVID), ident)
    wire = bytes(msg)
    back = Secret.parse(wire)
    assert back == msg
    assert back.name == SVID
    assert back.tls_certificate.certificate_chain.inline_bytes == ident.chain_pem
    assert back.tls_certificate.private_key.inline_bytes == ident.key_pem


def test_validation_context_with_trust_domain_prefix(ca):
    msg = validation_context_secret(TRUST_BUNDLE_SECRET, ca.bundle_pem, match_uri_prefix="spiffe://example.org/")
    back = Secret.parse(bytes(msg))
    assert back == msg
    vc = back.validation_context
    assert vc.trusted_ca.inline_bytes == ca.bundle_pem
    [matcher] = vc.match_typed_subject_alt_names
    assert matcher.san_type == SubjectAltNameMatcherSanType.URI
    assert matcher.matcher.prefix == "spiffe://example.org/"


def test_validation_context_without_matcher_and_with_exact_peers(ca):
    plain = Secret.parse(bytes(validation_context_secret("b", ca.bundle_pem)))
    assert plain.validation_context.match_typed_subject_alt_names == []
    exact = validation_context_secret("b", ca.bundle_pem, match_uri_exact=[SVID])
    assert [m.matcher.exact for m in exact.validation_context.match_typed_subject_alt_names] == [SVID]
    assert exact.to_dict()["validationContext"]["matchTypedSubjectAltNames"][0]["sanType"] == "URI"
