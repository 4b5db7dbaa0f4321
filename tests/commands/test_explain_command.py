"""`agentic-cp explain` as a script uses it: exit 0 allow, 1 deny, 2 for a wrong question; table, JSON, YAML."""

from __future__ import annotations

import json

import pytest
import yaml

from controlplane.cli import main
from tests.conftest import ROOT

QUICKSTART = str(ROOT / "examples" / "quickstart")
GATEWAY = ["--gateway", "quickstart/agent-gateway", "--port", "10443", "--path", "/tools/mcp"]


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["explain", "--config", QUICKSTART, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_allow_exits_0_and_deny_exits_1(capsys):
    allowed = run(capsys, *GATEWAY, "--source", "quickstart/math-agent", "--tool", "get-sum")
    denied = run(capsys, *GATEWAY, "--source", "quickstart/math-agent", "--tool", "echo")
    assert allowed[0] == 0 and allowed[1].startswith("ALLOW:")
    assert denied[0] == 1 and denied[1].startswith("DENY:")


def test_backend_mode_follows_the_same_exit_codes(capsys):
    args = ["--backend", "quickstart/everything-mcp", "--source", "quickstart/intern-agent"]
    assert run(capsys, *args, "--mcp-method", "tools/list")[0] == 0
    assert run(capsys, *args, "--tool", "echo")[0] == 1


@pytest.mark.parametrize(("flag", "typo", "meant"), [
    ("--gateway", "quickstart/agent-gatway", "quickstart/agent-gateway"),
    ("--backend", "quickstart/everything-mpc", "quickstart/everything-mcp"),
])
def test_a_mistyped_reference_is_an_error_naming_the_nearest(capsys, flag, typo, meant):
    where = [flag, typo, "--port", "10443", "--path", "/tools/mcp"] if flag == "--gateway" else [flag, typo]
    code, out, err = run(capsys, *where, "--source", "quickstart/math-agent", "--tool", "get-sum")
    assert code == 2 and out == ""
    kind = "Gateway" if flag == "--gateway" else "XBackend"
    assert err.strip().splitlines() == [f"agentic-cp: {flag} {typo}: no such {kind}; did you mean {meant}?"]


def test_a_reference_with_nothing_near_lists_what_exists(capsys):
    code, _, err = run(capsys, "--gateway", "zzz/qqq", "--port", "1", "--path", "/", "--source", "none")
    assert code == 2 and "known: quickstart/agent-gateway" in err


def test_json_yaml_and_the_json_alias_say_the_same(capsys):
    args = [*GATEWAY, "--source", "quickstart/research-agent", "--tool", "echo"]
    as_json = json.loads(run(capsys, *args, "--output", "json")[1])
    alias = json.loads(run(capsys, *args, "--json")[1])
    as_yaml = yaml.safe_load(run(capsys, *args, "-o", "yaml")[1])
    assert as_json == alias == as_yaml
    assert as_json["decision"] == "allow"
    assert as_json["deciding_rules"] == ["quickstart/quickstart-agents-only#research-agent",
                                         "quickstart/everything-tool-grants#research-tools"]


def test_explain_names_the_rate_limit_an_allowed_call_takes_a_token_from(capsys, tmp_path):
    import shutil

    config = tmp_path / "config"
    shutil.copytree(QUICKSTART, config)
    (config / "40-rate-limits.yaml").write_text("""
apiVersion: governance.agentic-cp.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: calc-sum-limit, namespace: quickstart}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}]
  limits:
  - {name: calc-sum, source: {type: ServiceAccount, serviceAccount: {name: math-agent}}, tools: [get-sum],
     requests: 3, per: Minute}
""")

    def explain(source: str, tool: str, output: str = "json") -> dict | str:
        main(["explain", "--config", str(config), *GATEWAY, "--source", source, "--tool", tool, "-o", output])
        out = capsys.readouterr().out
        return json.loads(out) if output == "json" else out

    limited = explain("quickstart/math-agent", "get-sum")
    assert limited["decision"] == "allow"
    assert limited["rate_limits"] == ["quickstart/calc-sum-limit#calc-sum: 3 per minute for each caller x tool"]
    assert "rate limited by: quickstart/calc-sum-limit#calc-sum" in explain("quickstart/math-agent", "get-sum",
                                                                             "table")
    assert explain("quickstart/research-agent", "get-sum")["rate_limits"] == []  # another caller
    assert explain("quickstart/math-agent", "echo")["rate_limits"] == []  # denied: takes no token


@pytest.mark.parametrize("name", ["__jsonrpc_response", "response"])
def test_a_client_response_is_base_protocol_for_a_toolless_agent(capsys, name):
    code, out, _ = run(capsys, *GATEWAY, "--source", "quickstart/intern-agent", "--mcp-method", name)
    assert code == 0 and out.startswith("ALLOW:") and "__jsonrpc_response" in out.splitlines()[0]


def test_a_response_that_names_a_tool_is_judged_as_no_answer(capsys):
    """What Envoy's filter reports for a body with `result` and a tools/call inside: denied where the
    caller may not call that tool (here: no tool at all)."""
    code, out, _ = run(capsys, *GATEWAY, "--source", "quickstart/intern-agent", "--mcp-method", "__jsonrpc_response",
                       "--tool", "echo")
    assert code == 1 and out.startswith("DENY:")


GUARDRAILS = """
apiVersion: governance.agentic-cp.dev/v1alpha1
kind: GuardrailPolicy
metadata: {name: secrets, namespace: quickstart}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}]
  service: {backendRef: {name: guardrail, port: 9002}, timeout: 500ms}
  inspect: Requests
---
apiVersion: governance.agentic-cp.dev/v1alpha1
kind: GuardrailPolicy
metadata: {name: edge, namespace: quickstart}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agent-gateway}]
  service: {address: "127.0.0.1:9002"}
  methods: ["*"]
  failureMode: Open
"""


def test_explain_names_the_guardrails_that_judge_an_allowed_call(capsys, tmp_path):
    import shutil

    config = tmp_path / "config"
    shutil.copytree(QUICKSTART, config)
    (config / "40-guardrails.yaml").write_text(GUARDRAILS)

    def explain(source: str, *what: str, output: str = "json") -> dict | str:
        main(["explain", "--config", str(config), *GATEWAY, "--source", source, *what, "-o", output])
        out = capsys.readouterr().out
        return json.loads(out) if output == "json" else yaml.safe_load(out) if output == "yaml" else out

    edge = {"policy": "quickstart/edge", "service": "address 127.0.0.1:9002", "inspect": "Both", "methods": ["*"],
            "failure_mode": "Open", "timeout": "2s"}
    secrets = {"policy": "quickstart/secrets", "service": "Service quickstart/guardrail:9002", "inspect": "Requests",
               "methods": ["tools/call"], "failure_mode": "Closed", "timeout": "500ms"}
    call = explain("quickstart/math-agent", "--tool", "get-sum")
    assert call["decision"] == "allow" and call["guardrails"] == [edge, secrets]  # the Gateway's runs first
    assert [level["guardrail"] for level in call["levels"]] == [edge, secrets]
    assert explain("quickstart/math-agent", "--tool", "get-sum", output="yaml")["guardrails"] == [edge, secrets]
    table = explain("quickstart/math-agent", "--tool", "get-sum", output="table")
    assert ("judged by the guardrail: quickstart/secrets -> Service quickstart/guardrail:9002 (inspect Requests, "
            "failure mode Closed, timeout 500ms)") in table
    assert "judged by the guardrail: quickstart/edge -> address 127.0.0.1:9002" in table
    # tools/list is judged by the Gateway's ("*"), not by the XBackend's (tools/call only).
    listing = explain("quickstart/math-agent", "--mcp-method", "tools/list")
    assert listing["decision"] == "allow" and listing["guardrails"] == [edge]
    # A refused call is never inspected.
    assert explain("quickstart/math-agent", "--tool", "echo")["guardrails"] == []
