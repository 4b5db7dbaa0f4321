"""The chart's CRDs: the same API as upstream's, and the examples it must accept and reject.

Each XAccessPolicy/XBackend document is checked by `crd_validation.validate_against_crd`, which
applies the CRD's OpenAPI schema and evaluates every `x-kubernetes-validations` CEL rule.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import celpy
import pytest
import yaml

from tests.helm.crd_validation import (
    crd_matches,
    crd_problems,
    load_crds,
    validate_against_crd,
    validate_with_crds,
)
from tests.helm.helm_support import (
    CHART_CRDS_DIR,
    CHART_DIR,
    PROJECT_MANIFESTS_DIR,
    UPSTREAM_DIR,
    find,
    helm_python,
    one,
    render,
)

GROUP = "agentic.networking.x-k8s.io"
KINDS = ("XAccessPolicy", "XBackend", "RateLimitPolicy", "GuardrailPolicy")
OUR_GROUP = "governance.agentic-cp.dev"  # this project's own kinds: their CRDs are written here, not copied
OUR_CRD_FILES = ("governance.agentic-cp.dev_ratelimitpolicies.yaml", "governance.agentic-cp.dev_guardrailpolicies.yaml")
OUR_KINDS = ("RateLimitPolicy", "GuardrailPolicy")
UPSTREAM_CRD_FILES = ("agentic.networking.x-k8s.io_xaccesspolicies.yaml", "agentic.networking.x-k8s.io_xbackends.yaml")
# A manifest under tests/manifests/invalid/ that only the control plane rejects (e.g. a limit the
# controller enforces), while the CRD accepts it, says so with this comment.
CRD_ACCEPTED_MARKER = "# crd: accepted"

# What the project serves: kind -> (plural, {version: storage}, namespaced, status subresource).
SERVED = {
    "XAccessPolicy": ("xaccesspolicies", {"v0alpha0": False, "v1alpha1": True}, True, True),
    "XBackend": ("xbackends", {"v0alpha0": True}, True, True),
    "RateLimitPolicy": ("ratelimitpolicies", {"v1alpha1": True}, True, True),
    "GuardrailPolicy": ("guardrailpolicies", {"v1alpha1": True}, True, True),
}


def _custom_resources(path: Path) -> list[tuple[int, dict, str]]:
    """(index, document, the comment lines above it) for each XAccessPolicy/XBackend of a file."""
    out = []
    chunks = [c for c in re.split(r"(?m)^---[ \t]*$", path.read_text()) if c.strip()]
    for index, chunk in enumerate(chunks):
        doc = yaml.safe_load(chunk)
        if isinstance(doc, dict) and doc.get("kind") in KINDS:
            comments = "\n".join(line for line in chunk.splitlines() if line.lstrip().startswith("#"))
            out.append((index, doc, comments))
    return out


def _example_files(folder: Path) -> list:
    """Example files holding at least one XAccessPolicy/XBackend (the CRDs say nothing about other kinds)."""
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")) if folder.is_dir() else []
    files = [f for f in files if _custom_resources(f)]
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no example manifests in {folder}"))]
    return [pytest.param(f, id=f.name) for f in files]


def _describe(path: Path, index: int, doc: dict) -> str:
    return f"{path.name}:{index}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"


def _check_valid(path: Path, chart_crds: list[dict]) -> None:
    problems = []
    for index, doc, _ in _custom_resources(path):
        problems += [f"{_describe(path, index, doc)}: {e}" for e in validate_with_crds(chart_crds, doc)]
    assert problems == []


def _check_invalid(path: Path, chart_crds: list[dict]) -> None:
    """Every XAccessPolicy/XBackend of an invalid example is rejected, at the field its
    `# expect: FIELD | message` comment names (or below it), when it has one."""
    documents = _custom_resources(path)
    failures = []
    for index, doc, comments in documents:
        where = _describe(path, index, doc)
        crd = next((c for c in chart_crds if crd_matches(c, doc)), None)
        problems = crd_problems(crd, doc) if crd else [("apiVersion", "no CRD defines this kind")]
        print(f"{where} rejected by: " + "; ".join(f"{p}: {m}" for p, m in problems))
        if CRD_ACCEPTED_MARKER in comments:
            if problems:
                failures.append(f"{where}: marked '{CRD_ACCEPTED_MARKER}' but rejected: {problems}")
            continue
        if not problems:
            failures.append(f"{where}: accepted by the CRD")
            continue
        expected = re.search(r"#\s*expect:\s*([^|\s]+)", comments)
        if expected and not any(_at_or_below(p, expected.group(1)) for p, _ in problems):
            failures.append(f"{where}: expected a problem at {expected.group(1)}, got {problems}")
    assert failures == []


def _at_or_below(path: str, field: str) -> bool:
    return path == field or path.startswith((f"{field}.", f"{field}["))


# --- the API itself -------------------------------------------------------------------------------------


def test_chart_crds_are_the_served_kinds_and_versions(chart_crds):
    assert sorted(c["spec"]["names"]["kind"] for c in chart_crds) == sorted(SERVED)
    for crd in chart_crds:
        kind = crd["spec"]["names"]["kind"]
        plural, versions, namespaced, status = SERVED[kind]
        group = OUR_GROUP if kind in OUR_KINDS else GROUP
        assert crd["metadata"]["name"] == f"{plural}.{group}"
        assert crd["spec"]["group"] == group
        assert crd["spec"]["names"]["plural"] == plural
        assert (crd["spec"]["scope"] == "Namespaced") is namespaced
        assert {v["name"]: v["storage"] for v in crd["spec"]["versions"]} == versions
        assert all(v["served"] for v in crd["spec"]["versions"])
        assert all(("status" in v.get("subresources", {})) is status for v in crd["spec"]["versions"])
        assert "status" not in crd  # Helm would try to write the controller-gen stub


def test_chart_crds_agree_with_the_control_plane_models(chart_crds):
    agentic = pytest.importorskip("controlplane.api.agentic", reason="the API models are not importable")
    for class_name, kind in (("XAccessPolicy", "XAccessPolicy"), ("XAccessPolicyV0", "XAccessPolicy"),
                             ("XBackend", "XBackend")):
        model = getattr(agentic, class_name, None)
        if model is None:
            continue
        [crd] = [c for c in chart_crds if c["spec"]["names"]["kind"] == kind]
        assert (model.API_GROUP, model.KIND) == (crd["spec"]["group"], kind)
        assert getattr(model, "NAMESPACED", True) is (crd["spec"]["scope"] == "Namespaced")


def test_cluster_role_covers_every_crd_and_its_status(chart_crds, default_objects):
    grants = {(g, r, v) for rule in one(default_objects, "ClusterRole", "agentic-cp")["rules"] for g in rule["apiGroups"]
              for r in rule["resources"] for v in rule["verbs"]}
    for crd in chart_crds:
        plural, group = crd["spec"]["names"]["plural"], crd["spec"]["group"]
        assert {(group, plural, v) for v in ("get", "list", "watch")} <= grants
        assert (group, f"{plural}/status", "patch") in grants  # status_writer.py: merge PATCH
        assert not {(group, plural, v) for v in ("create", "update", "patch", "delete")} & grants


def test_crds_are_templates_so_helm_upgrade_applies_them(chart_crds):
    """Helm applies crds/ on first install only; the chart has none and renders its CRDs as templates,
    kept on uninstall (deleting a CRD deletes every policy in the cluster)."""
    chart = helm_python.Chart.load(CHART_DIR)
    assert chart.crds == [] and not (CHART_DIR / "crds").exists()
    assert sorted(c["metadata"]["name"] for c in chart_crds) == sorted(
        f"{plural}.{OUR_GROUP if kind in OUR_KINDS else GROUP}" for kind, (plural, *_) in SERVED.items())
    for crd in chart_crds:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_crds_can_be_left_out():
    assert find(render({"crds": {"install": False}}), "CustomResourceDefinition") == []


def test_helm_upgrade_upgrades_a_changed_crd(tmp_path):
    """An upgrade applies the release's rendered manifest; so a CRD changed between two chart versions
    reaches the cluster exactly when the two renders differ. Here the second chart's upstream XBackend
    file gains a field, as a sync from a newer upstream would."""
    before = _crd(find(render(), "CustomResourceDefinition"), "XBackend")
    newer = tmp_path / "agentic-cp"
    shutil.copytree(CHART_DIR, newer)
    source = newer / "files" / "crds" / "agentic.networking.x-k8s.io_xbackends.yaml"
    text = source.read_text()
    anchor = "                  serviceName:\n"
    assert text.count(anchor) == 1
    source.write_text(text.replace(anchor, "                  timeout:\n                    type: string\n" + anchor))
    after = _crd(find(render(chart_dir=newer), "CustomResourceDefinition"), "XBackend")
    mcp = ["spec", "versions", 0, "schema", "openAPIV3Schema", "properties", "spec", "properties", "mcp", "properties"]
    assert "timeout" not in _dig(before, mcp) and _dig(after, mcp)["timeout"] == {"type": "string"}
    assert after["spec"]["versions"][0]["additionalPrinterColumns"] == before["spec"]["versions"][0][
        "additionalPrinterColumns"]
    print("\nrendered XBackend CRD, mcp fields before:", sorted(_dig(before, mcp)), "after:", sorted(_dig(after, mcp)))


def _dig(obj, path):
    for key in path:
        obj = obj[key]
    return obj


def test_printer_columns_show_accepted_targets_and_age(chart_crds):
    for crd in chart_crds:
        for version in crd["spec"]["versions"]:
            columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
            assert columns["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
            assert '?(@.type=="Accepted")' in columns["Accepted"]["jsonPath"]
    policy = _crd(chart_crds, "XAccessPolicy")
    for version in policy["spec"]["versions"]:
        columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
        assert columns["Targets"] == ".spec.targetRefs[*].name"
        assert columns["Accepted"] == '.status.ancestors[*].conditions[?(@.type=="Accepted")].status'
        # Each path names fields the version's schema has (a wrong path shows an empty column, silently).
        schema = version["schema"]["openAPIV3Schema"]["properties"]
        assert "targetRefs" in schema["spec"]["properties"] and "ancestors" in schema["status"]["properties"]
    backend = _crd(chart_crds, "XBackend")["spec"]["versions"][0]
    mcp = backend["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["mcp"]["properties"]
    for column in backend["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".spec.mcp."):
            assert column["jsonPath"].removeprefix(".spec.mcp.") in mcp


def test_chart_crd_sources_are_upstream_bytes_with_credit():
    assert sorted(p.name for p in CHART_CRDS_DIR.glob("*.yaml")) == sorted((*UPSTREAM_CRD_FILES, *OUR_CRD_FILES))
    notice = (CHART_CRDS_DIR / "NOTICE").read_text()
    assert "kubernetes-sigs/kube-agentic-networking" in notice and "Apache License" in notice


@pytest.mark.skipif(not (UPSTREAM_DIR / "crds").is_dir(), reason=f"upstream CRDs not found at {UPSTREAM_DIR}")
@pytest.mark.parametrize("name", UPSTREAM_CRD_FILES)
def test_chart_crds_equal_upstream_but_for_the_columns(name, chart_crds):
    """The source file is upstream's byte for byte; the rendered CRD differs from it only by the
    printer columns, the chart's labels and its two annotations (one of which says so)."""
    assert (CHART_CRDS_DIR / name).read_bytes() == (UPSTREAM_DIR / "crds" / name).read_bytes()
    [upstream] = load_crds(UPSTREAM_DIR / "crds" / name)
    [chart] = [c for c in chart_crds if c["metadata"]["name"] == upstream["metadata"]["name"]]
    spec = copy.deepcopy(chart["spec"])
    for version in spec["versions"]:
        assert version.pop("additionalPrinterColumns")
    assert spec == upstream["spec"]  # every schema node, limit and CEL rule
    annotations = dict(chart["metadata"]["annotations"])
    assert "additionalPrinterColumns" in annotations.pop("agentic-cp/changed-from-upstream")
    assert annotations.pop("helm.sh/resource-policy") == "keep"
    assert annotations == upstream["metadata"].get("annotations", {})


def test_every_cel_rule_compiles_and_sits_where_it_can_be_evaluated(chart_crds):
    rules = []

    def walk(node):
        if isinstance(node, dict):
            rules.extend(r["rule"] for r in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for crd in chart_crds:
        walk(crd["spec"]["versions"])
    assert len(rules) >= 14
    env = celpy.Environment()
    for rule in set(rules):
        env.program(env.compile(rule))


# --- examples ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _example_files(UPSTREAM_DIR / "crd-examples" / "valid"))
def test_upstream_valid_examples_are_accepted(path, chart_crds):
    _check_valid(path, chart_crds)


@pytest.mark.parametrize("path", _example_files(UPSTREAM_DIR / "crd-examples" / "invalid"))
def test_upstream_invalid_examples_are_rejected(path, chart_crds):
    _check_invalid(path, chart_crds)


def _applied_upstream_manifests() -> list:
    """Manifests upstream's e2e, conformance and quickstart apply to real clusters: all accepted there."""
    files = [f for sub in ("e2e-testdata", "conformance-testdata", "quickstart")
             for f in sorted((UPSTREAM_DIR / sub).glob("*.yaml"))]
    files = [f for f in files if _custom_resources(f)]
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no upstream manifests in {UPSTREAM_DIR}"))]
    return [pytest.param(f, id=f"{f.parent.name}/{f.name}") for f in files]


@pytest.mark.parametrize("path", _applied_upstream_manifests())
def test_manifests_upstream_applies_are_accepted(path, chart_crds):
    _check_valid(path, chart_crds)


@pytest.mark.parametrize("path", _example_files(PROJECT_MANIFESTS_DIR / "valid"))
def test_project_valid_manifests_are_accepted(path, chart_crds):
    _check_valid(path, chart_crds)


@pytest.mark.parametrize("path", _example_files(PROJECT_MANIFESTS_DIR / "invalid"))
def test_project_invalid_manifests_are_rejected(path, chart_crds):
    _check_invalid(path, chart_crds)


# --- the validator itself: each apiserver behaviour it mirrors ----------------------------------------------

POLICY = """
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: p, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  action: Allow
  rules:
  - name: r1
    source: {type: ServiceAccount, serviceAccount: {name: agent}}
    authorization:
      type: Inline
      mcp:
        methods:
        - {name: tools/call, params: [get-sum]}
"""


def _policy(mutate=None) -> dict:
    doc = yaml.safe_load(POLICY)
    if mutate:
        mutate(doc)
    return doc


def _crd(chart_crds, kind):
    return next(c for c in chart_crds if c["spec"]["names"]["kind"] == kind)


def test_validator_accepts_the_baseline(chart_crds):
    assert validate_against_crd(_crd(chart_crds, "XAccessPolicy"), _policy()) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["spec"].update(typo=1), "spec.typo: unknown field"),
    (lambda d: d["spec"]["rules"].append(dict(d["spec"]["rules"][0])), "AccessRule names must be unique"),
    (lambda d: d["spec"]["rules"][0]["authorization"]["mcp"]["methods"][0]["params"].append("get-sum"),
     "params[1]: Duplicate value"),
    (lambda d: d["spec"]["rules"][0]["authorization"]["mcp"]["methods"].append({"name": "tools/call"}),
     "methods[1]: Duplicate value: map key name='tools/call'"),
    (lambda d: d["spec"]["rules"][0]["authorization"].update(cel={"expression": "true"}),
     "cel must not be specified when type is set to 'Inline'"),
    (lambda d: d["spec"].update(action="ExternalAuth", externalAuth={
        "protocol": "GRPC", "backendRef": {"name": "authz"}, "grpc": {}}), "Must have port for Service reference"),
    (lambda d: d["spec"].update(action="ExternalAuth", externalAuth={
        "protocol": "HTTP", "backendRef": {"name": "authz", "port": 99999}, "http": {}}),
     "backendRef.port: Invalid value: 99999: should be less than or equal to 65535"),
    (lambda d: d["spec"]["rules"][0]["source"].update(spiffe="http://x"), "source.spiffe: Invalid value: 'http://x'"),
    (lambda d: d.update(apiVersion="agentic.networking.x-k8s.io/v9"), "version 'v9'"),
    (lambda d: d["metadata"].pop("name"), "metadata.name: Required value"),
    (lambda d: d["spec"].pop("targetRefs"), "spec.targetRefs: Required value"),
])
def test_validator_rejects(chart_crds, mutate, expected):
    errors = validate_against_crd(_crd(chart_crds, "XAccessPolicy"), _policy(mutate))
    assert any(expected in e for e in errors), errors


def test_validator_applies_defaults_before_cel(chart_crds):
    # backendRef.group/kind default to ""/Service; the CEL rule reads them, so without defaulting it errors.
    doc = _policy(lambda d: d["spec"].update(action="ExternalAuth", externalAuth={
        "protocol": "GRPC", "backendRef": {"name": "authz", "port": 50051}, "grpc": {}}))
    assert validate_against_crd(_crd(chart_crds, "XAccessPolicy"), doc) == []


def test_validator_prunes_nulls_like_the_apiserver(chart_crds):
    # `grpc:` with no value is null: pruned, so the GRPC-needs-grpc rule fires.
    doc = _policy(lambda d: d["spec"].update(action="ExternalAuth", externalAuth={
        "protocol": "GRPC", "backendRef": {"name": "authz", "port": 50051}, "grpc": None}))
    errors = validate_against_crd(_crd(chart_crds, "XAccessPolicy"), doc)
    assert any("grpc must be specified when protocol is set to 'GRPC'" in e for e in errors), errors


def test_validator_checks_v0alpha0_rules(chart_crds):
    doc = _policy(lambda d: d.update(apiVersion=f"{GROUP}/v0alpha0"))
    doc["spec"] = {
        "targetRefs": [{"group": GROUP, "kind": "XBackend", "name": "b"}, {"group": "", "kind": "Service", "name": "s"}],
        "rules": [{"name": "r", "source": {"type": "SPIFFE", "spiffe": "spiffe://td/a"},
                   "authorization": {"type": "InlineTools"}}],
    }
    errors = validate_against_crd(_crd(chart_crds, "XAccessPolicy"), doc)
    assert any("TargetRef must have group" in e for e in errors), errors
    assert any("tools must be specified when type is set to 'InlineTools'" in e for e in errors), errors


def test_validator_refuses_a_crd_of_another_kind(chart_crds):
    [error] = validate_against_crd(_crd(chart_crds, "XBackend"), _policy())
    assert error.startswith("apiVersion: ") and "is not defined by CRD" in error
    assert not crd_matches(_crd(chart_crds, "XBackend"), _policy())


def test_the_rate_limit_policy_crd_agrees_with_its_model(chart_crds):
    from controlplane.api.governance import RateLimitPolicy

    [crd] = [c for c in chart_crds if c["spec"]["names"]["kind"] == "RateLimitPolicy"]
    assert (RateLimitPolicy.API_GROUP, RateLimitPolicy.KIND) == (crd["spec"]["group"], "RateLimitPolicy")
    limit = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["limits"]
    assert limit["items"]["properties"]["per"]["enum"] == ["Second", "Minute", "Hour"]


def test_the_guardrail_policy_crd_agrees_with_its_model(chart_crds):
    from controlplane.api.governance import FailureMode, GuardrailPolicy, Inspect

    crd = _crd(chart_crds, "GuardrailPolicy")
    assert (GuardrailPolicy.API_GROUP, GuardrailPolicy.KIND) == (crd["spec"]["group"], "GuardrailPolicy")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["inspect"]["enum"] == [i.value for i in Inspect] and spec["inspect"]["default"] == Inspect.BOTH.value
    assert spec["failureMode"]["enum"] == [m.value for m in FailureMode]
    assert spec["failureMode"]["default"] == FailureMode.CLOSED.value  # fails closed unless told otherwise
    columns = {c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Inspect"] == ".spec.inspect" and columns["Failure"] == ".spec.failureMode"


@pytest.mark.parametrize("timeout, accepted", [("1ms", True), ("10000ms", True), ("10s", True), ("010s", True),
                                               ("0ms", False), ("0s", False), ("10001ms", False), ("11s", False)])
def test_the_guardrail_timeout_range_is_the_models(chart_crds, timeout, accepted):
    from controlplane.api.registry import InvalidResource, parse_object

    doc = {"apiVersion": "governance.agentic-cp.dev/v1alpha1", "kind": "GuardrailPolicy",
           "metadata": {"name": "g", "namespace": "ns"},
           "spec": {"targetRefs": [{"group": GROUP, "kind": "XBackend", "name": "b"}],
                    "service": {"address": "127.0.0.1:9002", "timeout": timeout}}}
    crd_errors = validate_against_crd(_crd(chart_crds, "GuardrailPolicy"), copy.deepcopy(doc))
    try:
        parse_object(doc, origin="-", doc_index=0)
        model_accepts = True
    except InvalidResource:
        model_accepts = False
    assert (crd_errors == [], model_accepts) == (accepted, accepted), crd_errors
