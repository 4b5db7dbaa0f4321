"""Fixtures for identity tests: a throwaway CA (Envoy comes from tests.support.envoy)."""

from __future__ import annotations

import pytest

from controlplane.identity.ca import CertificateAuthority

TRUST_DOMAIN = "example.org"


@pytest.fixture
def trust_domain() -> str:
    return TRUST_DOMAIN


@pytest.fixture(scope="session")
def ca() -> CertificateAuthority:
    """One in-memory CA for the session: tests that need persistence build their own."""
    return CertificateAuthority.create(trust_domain=TRUST_DOMAIN)


@pytest.fixture(scope="session")
def other_ca() -> CertificateAuthority:
    """A CA of the same trust domain that nobody trusts: an impostor."""
    return CertificateAuthority.create(trust_domain=TRUST_DOMAIN)
