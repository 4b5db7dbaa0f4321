"""What Envoy would refuse is refused at admission, and what slips through is withheld alone.

Regexes are checked as Envoy compiles them (RE2 syntax, program size); hostnames never become
regexes. A policy withheld after a NACK grants nothing (its targets keep denying), an ExternalAuth
policy withheld denies everything at its targets, and `explain` agrees with the translation.
"""

from __future__ import annotations

import pytest

from controlplane import isolation
from controlplane.api import regex
from controlplane.api.base import ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import InvalidResource, parse_object
from controlplane.graph import explain
from controlplane.graph.request import Request
from controlplane.graph.status import policy_status
from controlplane.translate.roles.gateway import gateway_resources
from controlplane.xds import resources as types
from tests.translate.test_gateway_translation import QUICKSTART_GW, _secrets, quickstart_graph
from tests.translate.translate_static import envoy_validate, static_bootstrap

GRANTS = ResourceKey("XAccessPolicy", "quickstart", "everything-tool-grants")


def policy(authorization: dict) -> dict:
    return {"apiVersion": "agentic.networking.x-k8s.io/v1alpha1", "kind": "XAccessPolicy",
            "metadata": {"name": "p", "namespace": "quickstart"},
            "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                     "name": "agent-gateway"}],
                     "action": "Allow", "rules": [{"name": "r", "authorization": authorization}]}}


def route(match: dict) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "quickstart"},
            "spec": {"parentRefs": [{"name": "agent-gateway"}], "rules": [{"matches": [match]}]}}


def problems(doc: dict) -> list[str]:
    with pytest.raises(InvalidResource) as err:
        parse_object(doc)
    return [f"{p.field}: {p.message}" for p in err.value.problems]


@pytest.mark.parametrize("pattern, reason", [
    ("(?=x)", "invalid perl operator"),            # Python's re takes lookaheads; RE2 does not
    ("[a-z]{1000}", "RE2 program size of 1004 > max program size of 100"),
    ("a{1001}", "invalid repetition size"),
    ("(unclosed", "missing )"),
])
def test_a_regex_envoy_refuses_is_refused_at_admission_wherever_it_sits(pattern, reason):
    header = {"type": "Inline", "headers": [{"name": "x-a", "type": "RegularExpression", "value": pattern}]}
    path = {"type": "Inline", "paths": [{"type": "RegularExpression", "value": pattern}]}
    assert reason in problems(policy(header))[0] and "spec.rules[0].authorization.headers[0]" in \
        problems(policy(header))[0]
    assert reason in problems(policy(path))[0]
    assert reason in problems(route({"path": {"type": "RegularExpression", "value": pattern}}))[0]
    assert reason in problems(route({"headers": [{"name": "x", "type": "RegularExpression", "value": pattern}]}))[0]
    assert reason in problems(route({"queryParams": [{"name": "q", "type": "RegularExpression",
                                                      "value": pattern}]}))[0]


def test_the_program_size_limit_follows_the_operator(monkeypatch):
    doc = policy({"type": "Inline", "paths": [{"type": "RegularExpression", "value": "[a-z]{200}"}]})
    assert problems(doc)
    monkeypatch.setattr(regex, "_max_program_size", 1000)
    assert parse_object(doc) is not None
    assert regex.re2_problem("/tools/[a-z0-9-]+") is None


def test_long_hostnames_are_matched_without_regexes(tmp_path):
    graph = quickstart_graph()
    host = ".".join(["a" * 63, "b" * 63, "c" * 63, "example"])  # as a regex: RE2 program size over 200
    doc = policy({"type": "Inline", "hosts": [host, "*.example.com"]})
    doc["metadata"]["name"] = "hosts"
    graph.apply(ChangeSet(upserts=[parse_object(doc)]))
    resources = gateway_resources(graph, QUICKSTART_GW, secrets=[])
    routes = str([r.payload for r in resources if r.type_url == types.ROUTE])
    assert "safeRegex" not in routes and f"'exact': '{host}'" in routes and "'suffix': '.example.com'" in routes
    result = envoy_validate(static_bootstrap(resources + _secrets()), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def decide(graph, agent: str, tool: str) -> str:
    request = Request(source=f"spiffe://cluster.local/ns/quickstart/sa/{agent}", port=10443, path="/tools/mcp",
                      mcp_method="tools/call", tool=tool)
    return explain.explain_gateway(graph, QUICKSTART_GW, request).decision


def backend_rbac(graph) -> str:
    return str([r.payload for r in gateway_resources(graph, QUICKSTART_GW, secrets=[])
                if r.type_url == types.ROUTE])


def test_a_withheld_allow_policy_grants_nothing_and_its_target_keeps_denying(tmp_path):
    graph = quickstart_graph()
    assert decide(graph, "math-agent", "get-sum") == "allow"
    assert graph.withhold({GRANTS}, "refused") == {GRANTS}
    assert decide(graph, "math-agent", "get-sum") == "deny"  # not "no policy here: allow"
    assert "'policies': {}" in backend_rbac(graph) and "math-tools" not in backend_rbac(graph)
    result = envoy_validate(static_bootstrap(gateway_resources(graph, QUICKSTART_GW, secrets=_secrets())), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    status = policy_status(graph, GRANTS)["ancestors"][0]["conditions"][0]
    assert (status["status"], status["reason"]) == ("False", "Invalid") and "refused" in status["message"]
    assert graph.withhold({GRANTS}, "again") == set()  # already withheld: nothing to recompute


def test_the_next_version_of_a_withheld_policy_gets_a_fresh_chance():
    graph = quickstart_graph()
    graph.withhold({GRANTS}, "refused")
    old = graph.get(GRANTS)
    edited = old.model_copy(update={"spec": old.spec.model_copy(update={"rules": old.spec.rules[:2]})})
    graph.apply(ChangeSet(upserts=[edited]))
    assert GRANTS not in graph.withheld and decide(graph, "math-agent", "get-sum") == "allow"


def test_a_withheld_external_auth_policy_denies_everything_at_its_target():
    graph = quickstart_graph()
    doc = {"apiVersion": "agentic.networking.x-k8s.io/v1alpha1", "kind": "XAccessPolicy",
           "metadata": {"name": "authz", "namespace": "quickstart"},
           "spec": {"targetRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend",
                                    "name": "everything-mcp"}],
                    "action": "ExternalAuth",
                    "externalAuth": {"backendRef": {"name": "authz", "port": 9000}, "protocol": "GRPC", "grpc": {}}}}
    graph.apply(ChangeSet(upserts=[parse_object(doc)]))
    assert decide(graph, "math-agent", "get-sum") == "allow"  # pending the authorizer
    graph.withhold({ResourceKey("XAccessPolicy", "quickstart", "authz")}, "refused")
    assert decide(graph, "math-agent", "get-sum") == "deny"
    assert "ext_authz.backend" not in backend_rbac(graph) and "'policies': {}" in backend_rbac(graph)


def test_culprits_are_the_policies_the_error_quotes_else_the_last_changed(monkeypatch):
    graph = quickstart_graph()
    good = graph.get(GRANTS)
    monkeypatch.setattr(regex, "_max_program_size", 1000)  # as if it slipped through admission
    bad = parse_object(policy({"type": "Inline", "headers": [
        {"name": "x-a", "type": "RegularExpression", "value": "[a-z]{150}"}]}))
    error = "regex '[a-z]{150}' RE2 program size of 154 > max program size of 100"
    assert isolation.culprits(error, [good, bad], recent=set()) == {bad.key}
    assert isolation.culprits("Proto constraint validation failed", [good, bad], recent={good.key}) == {good.key}
    assert isolation.culprits("something else", [good, bad], recent=set()) == set()
