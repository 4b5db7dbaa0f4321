"""`agentic-cp analyze`: each problem with a code, its object, its line and a fix; exit 1 on errors only."""

from __future__ import annotations

import json
import shutil

import pytest

from controlplane.cli import main
from tests.conftest import ROOT

QUICKSTART = ROOT / "examples" / "quickstart"


def analyze(capsys, path) -> tuple[int, list[str], str]:
    code = main(["analyze", str(path)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


@pytest.fixture
def folder(tmp_path):
    copy = tmp_path / "q"
    shutil.copytree(QUICKSTART, copy)
    return copy


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_quickstart_has_no_problem(capsys):
    code, out, err = analyze(capsys, QUICKSTART)
    assert (code, out) == (0, [])
    assert "0 errors, 0 warnings in 12 resources" in err


def test_a_typo_gets_its_line_and_the_field_meant(folder, capsys):
    policies = folder / "30-policies.yaml"
    edit(policies, "serviceAccount: {name: research-agent}", "serviceAcount: {name: research-agent}")
    code, out, _ = analyze(capsys, folder)
    assert code == 1
    assert out == [(f"{policies}:4: error UnknownField XAccessPolicy quickstart/quickstart-agents-only: "
                   "spec.rules[0].source.serviceAcount: Extra inputs are not permitted "
                   "(fix: did you mean 'serviceAccount'?)")]


DANGLING = """# routes to things that are not there
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lost, namespace: quickstart}
spec:
  parentRefs: [{name: agent-gatewy}]
  rules: [{backendRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: half-lost, namespace: quickstart}
spec:
  parentRefs: [{name: agent-gateway}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /a}}]
      backendRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mpc}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: elsewhere, namespace: quickstart}
spec:
  parentRefs: [{name: agent-gateway}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /b}}]
      backendRefs: [{name: svc, namespace: other, port: 80}]
---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: aimless, namespace: quickstart}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mpc}]
  action: Allow
  rules: [{name: all}]
"""


def test_dangling_refs_and_a_missing_reference_grant(folder, capsys):
    (folder / "40-dangling.yaml").write_text(DANGLING)
    code, out, _ = analyze(capsys, folder)
    where = folder / "40-dangling.yaml"
    assert code == 1
    assert out == [
        (f"{where}:2: error ParentNotFound HTTPRoute quickstart/lost: spec.parentRefs[0]: Gateway "
        "quickstart/agent-gatewy does not exist (fix: did you mean Gateway quickstart/agent-gateway?)"),
        (f"{where}:9: error BackendNotFound HTTPRoute quickstart/half-lost: status.parents[agent-gateway]: "
        "XBackend quickstart/everything-mpc: not found (fix: did you mean XBackend quickstart/everything-mcp?)"),
        (f"{where}:18: error RefNotPermitted HTTPRoute quickstart/elsewhere: status.parents[agent-gateway]: "
         "Service other/svc: no ReferenceGrant allows this reference (fix: add a ReferenceGrant in namespace "
         "other from HTTPRoute in quickstart to Service)"),
        (f"{where}:27: error TargetNotFound XAccessPolicy quickstart/aimless: status.ancestors[everything-mpc]: "
        "XBackend quickstart/everything-mpc does not exist (fix: did you mean XBackend quickstart/everything-mcp?)"),
    ]


def test_conflicting_listeners_are_an_error(folder, capsys):
    gateway = folder / "10-gateway.yaml"
    edit(gateway, "  listeners:\n", "  listeners:\n    - {name: plain, port: 10443, protocol: HTTP}\n")
    code, out, _ = analyze(capsys, folder)
    assert code == 1
    assert out and all(" Gateway quickstart/agent-gateway: status." in line for line in out)
    assert any(" error ProtocolConflict " in line for line in out), out


def test_policies_over_the_limit_are_warnings_and_exit_0(folder, capsys):
    extra = "".join(f"""---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: extra-{n}, namespace: quickstart}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: agent-gateway}}]
  action: Allow
  rules: [{{name: all}}]
""" for n in range(5))
    (folder / "50-extra.yaml").write_text(extra)
    code, out, err = analyze(capsys, folder)
    assert code == 0
    # objects without a creationTimestamp are admitted by namespace/name: extra-0..4 take the five slots
    assert len(out) == 1
    assert out[0].startswith(f"{folder / '30-policies.yaml'}:4: warning LimitPerTargetExceeded XAccessPolicy "
                             "quickstart/quickstart-agents-only: status.ancestors[agent-gateway]: at most 5")
    assert "0 errors, 1 warnings" in err


def test_json_output(folder, capsys):
    (folder / "40-dangling.yaml").write_text(DANGLING)
    assert main(["analyze", str(folder), "-o", "json"]) == 1
    findings = json.loads(capsys.readouterr().out)
    assert {f["code"] for f in findings} == {"ParentNotFound", "BackendNotFound", "RefNotPermitted", "TargetNotFound"}
    assert all(f["line"] and f["origin"].endswith("40-dangling.yaml") for f in findings)
