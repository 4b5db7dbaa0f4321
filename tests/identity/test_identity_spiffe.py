import pytest

from controlplane.identity.spiffe import (
    InvalidSpiffeId,
    parse_spiffe_id,
    spiffe_id,
    trust_domain_id,
    workload_of,
)


def test_spiffe_id_is_the_kubernetes_convention():
    assert spiffe_id("example.org", "team-a", "agent") == "spiffe://example.org/ns/team-a/sa/agent"
    assert trust_domain_id("example.org") == "spiffe://example.org"


@pytest.mark.parametrize("args", [
    ("Example.org", "ns", "sa"),  # upper-case trust domain
    ("example.org", "", "sa"),
    ("example.org", "ns", "a/b"),
    ("example.org", "..", "sa"),
    ("", "ns", "sa"),
])
def test_spiffe_id_rejects_bad_parts(args):
    with pytest.raises(InvalidSpiffeId):
        spiffe_id(*args)


def test_parse_splits_trust_domain_and_path():
    assert parse_spiffe_id("spiffe://example.org/ns/a/sa/b") == ("example.org", "/ns/a/sa/b")
    assert parse_spiffe_id("spiffe://example.org") == ("example.org", "")


@pytest.mark.parametrize("bad", [
    "spiffe://example.org/",
    "spiffe://Example.org/ns/a",
    "spiffe://example.org//a",
    "spiffe://example.org/a/../b",
    "spiffe://example.org/a?b",
    "spiffe://example.org/a%20b",
    "https://example.org/a",
    "spiffe://",
    "",
    None,
])
def test_parse_rejects_ambiguous_ids(bad):
    with pytest.raises(InvalidSpiffeId):
        parse_spiffe_id(bad)


def test_workload_of():
    assert workload_of("spiffe://example.org/ns/team-a/sa/agent") == ("team-a", "agent")
    assert workload_of("spiffe://example.org/ns/team-a") is None
    assert workload_of("spiffe://example.org/x/team-a/sa/agent") is None
    assert workload_of("not an id") is None
