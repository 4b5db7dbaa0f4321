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


def test_unvalidated_form_is_the_same_string_and_never_raises():
    assert spiffe_id("example.org", "team-a", "agent", validate=False) == spiffe_id("example.org", "team-a", "agent")
    assert spiffe_id("Example.org", "ns", "a/b", validate=False) == "spiffe://Example.org/ns/ns/sa/a/b"


def test_policy_naming_an_odd_service_account_resolves_without_raising():
    """The API does not check ServiceAccount names against SPIFFE's rules; the graph must not fail on them."""
    from controlplane.api.registry import parse_object
    from controlplane.graph.rules import resolve_rules

    policy = parse_object({
        "apiVersion": "agentic.networking.x-k8s.io/v1alpha1", "kind": "XAccessPolicy",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
                 "action": "Allow",
                 "rules": [{"name": "odd", "source": {"type": "ServiceAccount", "serviceAccount": {"name": "a/b"}}},
                           {"name": "empty", "source": {"type": "ServiceAccount", "serviceAccount": {"name": ""}}}]},
    })
    assert [r.principal for r in resolve_rules(policy, "Cluster.Local")] == [
        "spiffe://Cluster.Local/ns/ns/sa/a/b", "spiffe://Cluster.Local/ns/ns/sa/"]
