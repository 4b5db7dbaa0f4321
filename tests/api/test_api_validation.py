"""Every validation rule with a valid and an invalid manifest (tests/manifests), and upstream's examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from controlplane.api import agentic
from controlplane.api.registry import InvalidResource, parse_object
from tests.conftest import MANIFESTS, upstream_dir


def _documents(path: Path):
    """(index, expectation comment, document) for each YAML document of a file."""
    chunks = re.split(r"^---\s*$", path.read_text(), flags=re.MULTILINE)
    for index, chunk in enumerate(chunks):
        expect = re.search(r"^# expect: (.+?) \| (.+)$", chunk, flags=re.MULTILINE)
        yield index, (expect.groups() if expect else None), yaml.safe_load(chunk)


VALID = [(p.name, i, doc) for p in sorted((MANIFESTS / "valid").glob("*.yaml")) for i, _, doc in _documents(p)]
INVALID = [(p.name, i, exp, doc) for p in sorted((MANIFESTS / "invalid").glob("*.yaml"))
           for i, exp, doc in _documents(p)]


@pytest.mark.parametrize("name,index,doc", VALID, ids=[f"{n}:{i}" for n, i, _ in VALID])
def test_valid_manifest_parses(name, index, doc):
    assert parse_object(doc, origin=name, doc_index=index) is not None


@pytest.mark.parametrize("name,index,expect,doc", INVALID, ids=[f"{d['metadata']['name']}" for *_, d in INVALID])
def test_invalid_manifest_is_rejected_with_field_and_message(name, index, expect, doc):
    assert expect is not None, f"{name}:{index} has no '# expect:' comment"
    field, message = expect
    with pytest.raises(InvalidResource) as err:
        parse_object(doc, origin=name, doc_index=index)
    problems = err.value.problems
    assert any(p.field == field and message in p.message for p in problems), [str(p) for p in problems]
    line = str(problems[0])
    assert line.startswith(f"{name}:{index}: {doc['kind']} {doc['metadata']['namespace']}/{doc['metadata']['name']}: ")


def test_every_invalid_case_is_rejected_by_a_different_rule():
    expectations = [exp for *_, exp, _ in INVALID]
    assert len(set(expectations)) >= len(expectations) - 2  # no copy-pasted cases


@pytest.mark.parametrize("kind", ["valid", "invalid"])
def test_upstream_crd_examples(kind):
    folder = upstream_dir() / "crd-examples" / kind
    for path in sorted(folder.glob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if kind == "valid":
                assert parse_object(doc, origin=path.name, doc_index=index) is not None
            else:
                with pytest.raises(InvalidResource):
                    parse_object(doc, origin=path.name, doc_index=index)


def test_every_upstream_manifest_of_our_kinds_is_valid():
    root = upstream_dir()
    count = 0
    for folder in ("e2e-testdata", "conformance-testdata", "quickstart"):
        for path in sorted((root / folder).glob("*.yaml")):
            for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
                count += parse_object(doc, origin=path.name, doc_index=index) is not None
    assert count > 40


def test_non_mapping_and_unknown_kinds():
    with pytest.raises(InvalidResource) as err:
        parse_object(["a"], origin="f.yaml", doc_index=3)
    assert str(err.value.problems[0]).startswith("f.yaml:3: ")
    assert parse_object({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}) is None
    with pytest.raises(InvalidResource) as err:
        parse_object({"apiVersion": "agentic.networking.x-k8s.io/v9", "kind": "XBackend", "metadata": {"name": "x"}})
    assert err.value.problems[0].field == "apiVersion"


def _v0(rules):
    return {"apiVersion": "agentic.networking.x-k8s.io/v0alpha0", "kind": "XAccessPolicy",
            "metadata": {"name": "legacy", "namespace": "ns"},
            "spec": {"targetRefs": [{"group": "agentic.networking.x-k8s.io", "kind": "XBackend", "name": "b"}],
                     "rules": rules}}


SA = {"type": "ServiceAccount", "serviceAccount": {"name": "a"}}


def test_v0alpha0_inline_tools_convert_to_tools_call_params():
    policy = parse_object(_v0([{"name": "r", "source": SA, "authorization": {"type": "InlineTools",
                                                                              "tools": ["get-sum", "echo"]}}]))
    assert isinstance(policy, agentic.XAccessPolicy) and policy.api_version.endswith("v1alpha1")
    assert policy.spec.action is agentic.Action.ALLOW
    auth = policy.spec.rules[0].authorization
    assert auth.type is agentic.AuthorizationType.INLINE
    assert [(m.name, m.params) for m in auth.mcp.methods] == [("tools/call", ["get-sum", "echo"])]
    assert auth.mcp.base_protocol is agentic.BaseProtocolOption.MATCH


def test_v0alpha0_empty_tool_list_allows_no_tool():
    policy = parse_object(_v0([{"name": "r", "source": SA, "authorization": {"type": "InlineTools", "tools": []}}]))
    mcp = policy.spec.rules[0].authorization.mcp
    assert mcp.methods is None and mcp.base_protocol is agentic.BaseProtocolOption.MATCH


def test_v0alpha0_external_auth_rule_becomes_the_policy_action():
    ext = {"protocol": "GRPC", "backendRef": {"name": "authz", "port": 50051}, "grpc": {}}
    policy = parse_object(_v0([{"name": "ext", "source": SA, "authorization": {"type": "ExternalAuth",
                                                                                "externalAuth": ext}}]))
    assert policy.spec.action is agentic.Action.EXTERNAL_AUTH
    assert policy.spec.external_auth.backend_ref.name == "authz"
    assert [r.name for r in policy.spec.rules] == ["ext"] and policy.spec.rules[0].authorization is None


def test_v0alpha0_cel_keeps_expression_and_mixed_external_auth_is_refused():
    policy = parse_object(_v0([{"name": "c", "source": SA, "authorization": {"type": "CEL",
                                                                              "cel": {"expression": "true"}}}]))
    assert policy.spec.rules[0].authorization.cel.expression == "true"
    ext = {"protocol": "GRPC", "backendRef": {"name": "authz", "port": 50051}, "grpc": {}}
    mixed = _v0([{"name": "ext", "source": SA, "authorization": {"type": "ExternalAuth", "externalAuth": ext}},
                 {"name": "tools", "source": SA, "authorization": {"type": "InlineTools", "tools": ["a"]}}])
    with pytest.raises(InvalidResource) as err:
        parse_object(mixed)
    assert "split it" in err.value.problems[0].message


def test_cel_that_envoy_cannot_enforce_fails_admission():
    from controlplane.api.cel import CELError, compile_expression

    compile_expression("request.headers['x'].startsWith('a') && has(request.headers.y)")
    with pytest.raises(CELError, match="not supported in enforcement"):
        compile_expression("request.headers.exists(h, h == 'x')")
