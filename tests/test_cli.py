"""`agentic-cp validate`, `explain` and `graph` as a user runs them, on the quickstart."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from controlplane.cli import main
from tests.conftest import ROOT
from tests.support.envoy import validate

QUICKSTART = str(ROOT / "examples" / "quickstart")
GATEWAY = ["--gateway", "quickstart/agent-gateway", "--port", "10443", "--path", "/tools/mcp"]
GRANTS = {"research-agent": {"get-sum", "echo"}, "math-agent": {"get-sum"}, "intern-agent": set()}
BASE_METHODS = ["initialize", "tools/list", "ping", "notifications/initialized", "completion/complete",
                "logging/setLevel"]


EXIT_OF = {"allow": 0, "deny": 1}  # like `kubectl auth can-i`; 2 is a usage or reference error


def explain(capsys, *args) -> dict:
    """The JSON decision, after checking that the exit status says the same."""
    code = main(["explain", "--config", QUICKSTART, *GATEWAY, "--json", *args])
    result = json.loads(capsys.readouterr().out)
    assert code == EXIT_OF[result["decision"]], (code, result["decision"])
    return result


def test_validate_quickstart_exits_0(capsys):
    assert main(["validate", QUICKSTART]) == 0
    assert capsys.readouterr().out == ""


def test_validate_reports_file_doc_kind_name_and_field(tmp_path, capsys):
    folder = tmp_path / "q"
    shutil.copytree(QUICKSTART, folder)
    path = folder / "30-policies.yaml"
    path.write_text(path.read_text().replace("type: Inline\n        mcp:\n          mcpBaseProtocolMethodsOption:"
                                             " MATCH_BASE_PROTOCOL_METHODS\n          methods:\n            - name:"
                                             " tools/call\n              params: [\"get-sum\", \"echo\"]",
                                             "type: Inline\n        mcp:\n          methods:\n            - name:"
                                             " tools/list\n              params: [\"echo\"]"))
    assert main(["validate", str(folder)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [(f"{path}:1: XAccessPolicy quickstart/everything-tool-grants: "
                    "spec.rules[0].authorization.mcp.methods[0]: Params can only be specified for get, call, "
                    "subscribe, unsubscribe, or read methods")]


def test_validate_reports_invalid_cel(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text("""
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {name: cel, namespace: ns}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  action: Allow
  rules:
    - {name: ok, authorization: {type: CEL, cel: {expression: "request.method == 'POST'"}}}
    - {name: bad, authorization: {type: CEL, cel: {expression: "request.body.size() > 1"}}}
""")
    assert main(["validate", str(tmp_path)]) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{tmp_path / 'p.yaml'}:0: XAccessPolicy ns/cel: spec.rules[1].authorization.cel."
                           "expression: unsupported variable 'request.body'")


def test_validate_places_a_semantic_problem_at_its_document_and_field(tmp_path, capsys):
    """The CLI prints the graph's structured problem (resource, field path, message) at the document it came from."""
    good = "{name: ok, authorization: {type: CEL, cel: {expression: \"request.method == 'POST'\"}}}"
    bad = "{name: bad, authorization: {type: CEL, cel: {expression: \"request.body.size() > 1\"}}}"
    docs = [f"""apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: {name}, namespace: ns}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]
  action: Allow
  rules: [{', '.join(rules)}]
""" for name, rules in (("fine", [good]), ("third-rule", [good, good.replace("ok", "ok2"), bad]))]
    (tmp_path / "p.yaml").write_text("---\n".join(docs))
    assert main(["validate", str(tmp_path)]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{tmp_path / 'p.yaml'}:1: XAccessPolicy ns/third-rule: "
                           "spec.rules[2].authorization.cel.expression: unsupported variable 'request.body'; ")


def test_validate_missing_path_is_a_usage_error(capsys):
    assert main(["validate", "/no/such/dir"]) == 2


@pytest.mark.parametrize("agent", sorted(GRANTS))
@pytest.mark.parametrize("tool", ["get-sum", "echo", "get-tiny-image"])
def test_explain_tool_calls_follow_the_grants(capsys, agent, tool):
    result = explain(capsys, "--source", f"quickstart/{agent}", "--tool", tool)
    expected = "allow" if tool in GRANTS[agent] else "deny"
    assert result["decision"] == expected
    if expected == "allow":
        backend_rule = {"research-agent": "research-tools", "math-agent": "math-tools"}[agent]
        assert result["deciding_rules"] == [f"quickstart/quickstart-agents-only#{agent}",
                                            f"quickstart/everything-tool-grants#{backend_rule}"]
    else:
        assert "no rule of quickstart/everything-tool-grants matches" in result["reason"]


@pytest.mark.parametrize("agent", sorted(GRANTS))
@pytest.mark.parametrize("method", BASE_METHODS)
def test_explain_base_methods_are_allowed_for_every_agent(capsys, agent, method):
    assert explain(capsys, "--source", f"quickstart/{agent}", "--mcp-method", method)["decision"] == "allow"


@pytest.mark.parametrize("agent", sorted(GRANTS))
def test_explain_session_stream_and_close(capsys, agent):
    assert explain(capsys, "--source", f"quickstart/{agent}", "--http-method", "GET")["decision"] == "allow"
    deleting = explain(capsys, "--source", f"quickstart/{agent}", "--http-method", "DELETE",
                       "--header", "mcp-session-id: abc")
    assert deleting["decision"] == "allow"
    assert explain(capsys, "--source", f"quickstart/{agent}", "--http-method", "DELETE")["decision"] == "deny"
    assert explain(capsys, "--source", f"quickstart/{agent}", "--mcp-method", "prompts/list")["decision"] == "deny"


def test_explain_strangers_and_callers_without_certificates_are_denied(capsys):
    for source in ["other/agent", "spiffe://evil.example/ns/quickstart/sa/research-agent", "none"]:
        result = explain(capsys, "--source", source, "--mcp-method", "initialize")
        assert result["decision"] == "deny"
        assert "no rule of quickstart/quickstart-agents-only matches" in result["reason"]


def test_explain_unrouted_path_and_backend_mode(capsys):
    assert main(["explain", "--config", QUICKSTART, "--source", "quickstart/math-agent", "--gateway",
                 "quickstart/agent-gateway", "--port", "10443", "--path", "/elsewhere", "--tool", "echo"]) == 1
    assert capsys.readouterr().out.startswith("DENY:")
    result = explain_backend = None
    assert main(["explain", "--config", QUICKSTART, "--source", "quickstart/math-agent", "--backend",
                 "quickstart/everything-mcp", "--tool", "get-sum", "--json"]) == 0
    explain_backend = json.loads(capsys.readouterr().out)
    assert explain_backend["decision"] == "allow" and result is None


def test_graph_json_and_dot_render_with_graphviz(tmp_path, capsys):
    assert main(["graph", "--config", QUICKSTART, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    allow_edges = {(e["source"], e["target"]) for e in data["edges"] if e["rel"] == "allow"}
    assert ("identity:spiffe://cluster.local/ns/quickstart/sa/math-agent",
            "backend:XBackend:quickstart/everything-mcp") in allow_edges
    assert main(["graph", "--config", QUICKSTART, "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph authorization {") and "math-tools" in dot
    assert "\\\\n" not in dot  # labels break lines, not print a backslash
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (.ci/run installs Debian's graphviz)")
    png = tmp_path / "graph.png"
    subprocess.run(["dot", "-Tpng", "-o", str(png)], input=dot, text=True, check=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "controlplane.cli", "validate", QUICKSTART],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "resources valid" in out.stderr


def test_identity_issue_writes_a_verifiable_identity(tmp_path, capsys):
    from cryptography import x509

    out = tmp_path / "agent"
    assert main(["identity", "issue", "--state-dir", str(tmp_path / "state"), "--spiffe-id",
                 "spiffe://cluster.local/ns/quickstart/sa/math-agent", "--out", str(out)]) == 0
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/quickstart/sa/math-agent"]
    assert (out / "key.pem").stat().st_mode & 0o077 == 0
    assert main(["identity", "issue", "--state-dir", str(tmp_path / "state"), "--spiffe-id",
                 "spiffe://elsewhere/ns/x/sa/y", "--out", str(out)]) == 2
    assert "outside trust domain" in capsys.readouterr().err


def test_identity_issue_keeps_the_state_dirs_trust_domain(tmp_path, capsys):
    """Without --trust-domain the CLI asks identity/ which trust domain the state dir's CA holds."""
    state = str(tmp_path / "state")
    issue = ["identity", "issue", "--state-dir", state, "--out", str(tmp_path / "out")]
    assert main([*issue, "--trust-domain", "example.org", "--spiffe-id", "spiffe://example.org/ns/a/sa/b"]) == 0
    assert main([*issue, "--spiffe-id", "spiffe://example.org/ns/a/sa/c"]) == 0
    capsys.readouterr()
    assert main([*issue, "--trust-domain", "other.org", "--spiffe-id", "spiffe://other.org/ns/a/sa/b"]) == 2
    assert "holds a CA for trust domain 'example.org'" in capsys.readouterr().err


@pytest.mark.slow
def test_bootstrap_for_a_gateway_passes_envoy_validate(tmp_path, capsys):
    assert main(["bootstrap", "--xds-address", "127.0.0.1:15010", "--state-dir", str(tmp_path / "state"),
                 "--gateway", "quickstart/agent-gateway", "--out", str(tmp_path / "gw"), "--admin-port", "0"]) == 0
    assert "gateway~quickstart~agent-gateway" in capsys.readouterr().out
    result = validate(tmp_path / "gw" / "envoy.yaml", timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def test_controller_name_is_configurable(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "q"
    shutil.copytree(QUICKSTART, folder)
    path = folder / "00-cluster.yaml"
    path.write_text(path.read_text().replace("sigs.k8s.io/kube-agentic-networking-controller", "example.com/ours"))
    args = ["explain", "--config", str(folder), *GATEWAY, "--json", "--source", "quickstart/math-agent",
            "--tool", "get-sum"]
    assert main(args) == 1
    assert "not of a GatewayClass this control plane manages" in json.loads(capsys.readouterr().out)["reason"]
    assert main([*args, "--controller-name", "example.com/ours"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "allow"
    monkeypatch.setenv("AGENTIC_CP_GATEWAY_CLASS_CONTROLLER", "example.com/ours")
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "allow"


# --- bad input to identity issue and bootstrap: one clear line, no traceback -------------------------------

ISSUE = ["identity", "issue", "--spiffe-id", "spiffe://cluster.local/ns/quickstart/sa/math-agent"]


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("spiffe_id, complaint", [
    ("spiffe://cluster.local", "has no path"),
    ("spiffe://cluster.local/", "invalid SPIFFE ID"),
    ("spiffe://cluster.local/" + "a" * 3000, "at most 2048"),
    ("spiffe://Cluster.Local/ns/a/sa/b", "invalid SPIFFE ID"),
    ("spiffe://" + "a" * 256 + "/ns/a/sa/b", "at most 255"),
    ("http://cluster.local/ns/a/sa/b", "invalid SPIFFE ID"),
])
def test_identity_issue_refuses_ids_that_cannot_name_a_workload(tmp_path, capsys, spiffe_id, complaint):
    assert main(["identity", "issue", "--state-dir", str(tmp_path / "state"), "--spiffe-id", spiffe_id,
                 "--out", str(tmp_path / "out")]) == 2
    assert complaint in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("ttl", ["inf", "-inf", "nan", "-1", "0", "8761", "1e300"])
@pytest.mark.parametrize("command", ["issue", "bootstrap"])
def test_ttl_hours_must_be_finite_positive_and_at_most_a_year(tmp_path, capsys, ttl, command):
    state, out = str(tmp_path / "state"), str(tmp_path / "out")
    if command == "issue":
        argv = [*ISSUE, "--state-dir", state, "--out", out, f"--ttl-hours={ttl}"]
    else:
        argv = ["bootstrap", "--xds-address", "127.0.0.1:15010", "--state-dir", state,
                "--gateway", "quickstart/agent-gateway", "--out", out, f"--ttl-hours={ttl}"]
    assert main(argv) == 2
    assert "--ttl-hours must be more than 0 and at most 8760" in _one_line_error(capsys)


def test_ttl_hours_at_the_limit_is_accepted(tmp_path, capsys):
    assert main([*ISSUE, "--state-dir", str(tmp_path / "s"), "--out", str(tmp_path / "o"),
                 "--ttl-hours", "8760"]) == 0


@pytest.mark.parametrize("which", ["state", "out"])
@pytest.mark.parametrize("command", ["issue", "bootstrap"])
def test_unwritable_directories_are_one_line_and_exit_1(tmp_path, capsys, which, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way\n")
    dirs = {"state": str(tmp_path / "state"), "out": str(tmp_path / "out")}
    dirs[which] = str(blocker / "sub")  # below a regular file: not creatable, even as root
    if command == "issue":
        argv = [*ISSUE, "--state-dir", dirs["state"], "--out", dirs["out"]]
    else:
        argv = ["bootstrap", "--xds-address", "127.0.0.1:15010", "--state-dir", dirs["state"],
                "--gateway", "quickstart/agent-gateway", "--out", dirs["out"]]
    assert main(argv) == 1
    line = _one_line_error(capsys)
    assert line.startswith(f"agentic-cp: cannot write --{'state-dir' if which == 'state' else 'out'} ")
    assert str(blocker / "sub") in line


def test_admin_token_file_must_exist_and_hold_a_token(tmp_path, capsys):
    from controlplane.cli import UsageError, _admin_token

    (tmp_path / "token").write_text("  abc123\n")
    assert _admin_token(str(tmp_path / "token")) == "abc123"
    assert _admin_token(None) is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        _admin_token(str(tmp_path / "empty"))
    assert main(["serve", "--config", QUICKSTART, "--state-dir", str(tmp_path / "s"),
                 "--admin-token-file", str(tmp_path / "missing")]) == 1
    assert "cannot read --admin-token-file" in _one_line_error(capsys)
