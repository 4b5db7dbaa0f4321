"""GuardrailPolicy: the model's validation (hostile and half-written specs), the graph's one-per-target
rule, its status, and what the translation of the quickstart gets from it."""

from __future__ import annotations

import pytest
import yaml

from controlplane.api.changes import ChangeSet
from controlplane.api.registry import InvalidResource, parse_object
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.status import policy_status
from controlplane.graph.view import gateway_view
from tests.translate.test_gateway_translation import QUICKSTART_GW, quickstart_graph

parse_resource = parse_object

BACKEND = "{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}"


def doc(spec: str, name: str = "g", created: str = "2024-01-01T00:00:00Z") -> dict:
    return yaml.safe_load(f"""
apiVersion: governance.agentic-cp.dev/v1alpha1
kind: GuardrailPolicy
metadata: {{name: {name}, namespace: quickstart, creationTimestamp: "{created}"}}
spec: {spec}
""")


def test_defaults_are_both_sides_tools_call_and_closed():
    policy = parse_resource(doc(f"{{targetRefs: [{BACKEND}], service: {{address: 'guard:9000'}}}}"))
    spec = policy.spec
    assert (spec.inspect.value, spec.methods, spec.failure_mode.value, spec.service.timeout) == (
        "Both", ["tools/call"], "Closed", "2s")


@pytest.mark.parametrize(("spec", "why"), [
    ("{targetRefs: [], service: {address: 'g:1'}}", "at least 1"),
    (f"{{targetRefs: [{BACKEND}]}}", "service"),
    (f"{{targetRefs: [{BACKEND}], service: {{}}}}", "exactly one"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:1', backendRef: {{name: s, port: 1}}}}}}", "exactly one"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'no-port'}}}}", "pattern"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:99999'}}}}", "between 1 and 65535"),
    (f"{{targetRefs: [{BACKEND}], service: {{backendRef: {{name: s}}}}}}", "port"),
    (f"{{targetRefs: [{BACKEND}], service: {{backendRef: {{kind: Pod, name: s, port: 1}}}}}}", "core Service"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:1', timeout: 11s}}}}", "at most 10s"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:1', timeout: 0ms}}}}", "more than 0"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:1', timeout: 1h}}}}", "pattern"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:1'}}, inspect: Headers}}", "inspect"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:1'}}, failureMode: Maybe}}", "failureMode"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:1'}}, methods: []}}", "at least 1"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:1'}}, methods: [a, a]}}", "unique"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:1'}}, methods: ['bad method']}}", "pattern"),
    (f"{{targetRefs: [{BACKEND}], service: {{address: 'g:1'}}, failOpen: true}}", "failOpen"),
    ("{targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: a}, " + BACKEND[1:-1].join("{}")
     + "], service: {address: 'g:1'}}", "same Kind"),
])
def test_a_broken_spec_is_one_clear_problem(spec, why):
    with pytest.raises(InvalidResource) as info:
        parse_resource(doc(spec))
    assert why in str(info.value), str(info.value)


def _graph(*policies) -> AuthorizationGraph:
    graph = quickstart_graph()
    graph.apply(ChangeSet(upserts=list(policies)))
    return graph


def test_the_oldest_guardrail_on_a_target_is_in_force_and_a_younger_one_is_conflicted():
    old = parse_resource(doc(f"{{targetRefs: [{BACKEND}], service: {{address: '127.0.0.1:9000'}}}}", "old"))
    young = parse_resource(doc(f"{{targetRefs: [{BACKEND}], service: {{address: '127.0.0.1:9001'}}}}", "young",
                               "2025-01-01T00:00:00Z"))
    graph = _graph(young, old)
    view = gateway_view(graph, QUICKSTART_GW)
    guardrails = {ref.backend.guardrail for lst in view.listeners for a in lst.routes for ref in a.rule.backends}
    assert {g.ref for g in guardrails if g} == {"quickstart/old"}
    [young_status] = policy_status(graph, young.key)["ancestors"]
    [condition] = young_status["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "Conflicted")
    assert policy_status(graph, old.key)["ancestors"][0]["conditions"][0]["reason"] == "Accepted"
    missing = parse_resource(doc("{targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: nope}], "
                                 "service: {address: 'g:1'}}", "missing"))
    graph = _graph(missing)
    assert policy_status(graph, missing.key)["ancestors"][0]["conditions"][0]["reason"] == "TargetNotFound"
