"""Fixtures for the Helm chart tests; the helpers themselves are in helm_support.py."""

from __future__ import annotations

import pytest

from tests.helm.crd_validation import load_crds
from tests.helm.helm_support import CHART_CRDS_DIR, CUSTOM_VALUES, render


@pytest.fixture(scope="session")
def default_objects() -> list[dict]:
    return render()


@pytest.fixture(scope="session")
def custom_objects() -> list[dict]:
    return render(CUSTOM_VALUES)


@pytest.fixture(scope="session")
def chart_crds() -> list[dict]:
    return load_crds(CHART_CRDS_DIR)
