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
    """The quickstart with a tool granted to its intern, so that the copy has no finding at all."""
    copy = tmp_path / "q"
    shutil.copytree(QUICKSTART, copy)
    edit(copy / "30-policies.yaml", "    - name: intern-base-only", INTERN_TOOL + "    - name: intern-base-only")
    return copy


INTERN_TOOL = """    - name: intern-echo
      source: {type: ServiceAccount, serviceAccount: {name: intern-agent}}
      authorization: {type: Inline, mcp: {methods: [{name: tools/call, params: [echo]}]}}
"""


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_quickstart_has_no_error_and_warns_of_its_agent_without_tools(capsys):
    code, out, err = analyze(capsys, QUICKSTART)
    assert code == 0
    assert out == [(f"{QUICKSTART / '30-policies.yaml'}:4: warning AgentWithoutTools XAccessPolicy "
                    "quickstart/quickstart-agents-only: spec.rules: spiffe://cluster.local/ns/quickstart/sa/"
                    "intern-agent has no path to any tool: no Gateway listener -> HTTPRoute -> XBackend path "
                    "allows its tools/call at both levels (fix: grant it a tool at the Gateway and at an XBackend)")]
    assert "0 errors, 1 warnings in 12 resources" in err


def test_granting_the_intern_a_tool_ends_the_warning(folder, capsys):
    code, out, _ = analyze(capsys, folder)
    assert (code, out) == (0, [])

NEVER = """apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: never, namespace: quickstart}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agent-gateway}]
  action: Allow
  rules:
    - name: get-tools
      source: {type: ServiceAccount, serviceAccount: {name: math-agent}}
      authorization: {type: Inline, methods: [GET], mcp: {methods: [{name: tools/call}]}}
    - name: wrong-port
      source: {type: ServiceAccount, serviceAccount: {name: math-agent}}
      authorization: {type: Inline, ports: [9999]}
    - name: fine
      source: {type: ServiceAccount, serviceAccount: {name: math-agent}}
      authorization: {type: Inline, methods: [POST], mcp: {methods: [{name: tools/call}]}}
"""


def test_rules_that_can_never_match_are_warnings(folder, capsys):
    (folder / "90-never.yaml").write_text(NEVER)
    code, out, _ = analyze(capsys, folder)
    never = [line for line in out if "NeverMatches" in line]
    assert code == 0 and len(never) == 2, out
    assert never[0].startswith(f"{folder / '90-never.yaml'}:1: warning NeverMatches XAccessPolicy quickstart/never: "
                               "spec.rules[0].authorization: this rule can never match: it asks for MCP methods "
                               "but allows only HTTP GET")
    assert "spec.rules[1].authorization: this rule can never match: it allows only ports [9999]" in never[1]


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
