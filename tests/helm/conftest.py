"""Fixtures for the Helm chart tests; the helpers themselves are in helm_support.py."""

from __future__ import annotations

import pytest

from tests.helm.helm_support import CUSTOM_VALUES, find, render


@pytest.fixture(scope="session")
def default_objects() -> list[dict]:
    return render()


@pytest.fixture(scope="session")
def custom_objects() -> list[dict]:
    return render(CUSTOM_VALUES)


@pytest.fixture(scope="session")
def chart_crds(default_objects) -> list[dict]:
    """The CRDs as the chart renders them (what `helm install` and `helm upgrade` apply)."""
    return find(default_objects, "CustomResourceDefinition")
