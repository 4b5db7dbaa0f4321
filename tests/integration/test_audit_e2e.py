"""The audit trail end to end: the quickstart gateway (real Envoy, real MCP server, real mTLS) streams one
record per request to `serve` over Envoy's gRPC access log service; the records match the calls one for
one (allowed, denied at the gateway level, denied at the backend level, limited); after the control plane
restarts (the stream closes, Envoy reconnects) records continue, and what Envoy could not send while it was
down is in its own stdout access log, by the same field names, readable by `agentic-cp audit`.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from controlplane.cli import main as cli
from tests.support.mesh import LocalMesh
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

MATH = "spiffe://cluster.local/ns/quickstart/sa/math-agent"
RESEARCH = "spiffe://cluster.local/ns/quickstart/sa/research-agent"
STRANGER = "spiffe://cluster.local/ns/quickstart/sa/stranger-agent"
LIMIT_POLICY = """\
apiVersion: governance.agentic-cp.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: calc-sum-limit, namespace: quickstart}
spec:
  targetRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}]
  limits:
  - {name: calc-sum, source: {type: ServiceAccount, serviceAccount: {name: math-agent}}, tools: [get-sum],
     requests: 1, per: Hour}
"""
SUM = {"a": 2, "b": 3}


@pytest.fixture
def mesh(tmp_path):
    with LocalMesh(tmp_path) as running:
        (running.config / "40-rate-limits.yaml").write_text(LIMIT_POLICY)
        yield running


def audit(*args: str) -> tuple[int, list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(["audit", *args, "-o", "json"])
    return code, [json.loads(line) for line in out.getvalue().splitlines() if line], err.getvalue()


def tool_calls(records: list[dict], *callers: str) -> list[tuple]:
    """What each tools/call record says, comparable with what the test did."""
    return sorted((r["caller"], r["session_id"], r["jsonrpc_id"], r["tool"], r["decision"], _level(r))
                  for r in records if r["mcp_method"] == "tools/call" and r["caller"] in callers)


def _level(record: dict) -> str | None:
    if record["decision"] == "denied":
        return "gateway" if record["gateway_result"] == "denied" else "backend"
    return record["limit"] if record["decision"] == "limited" else record["backend_rule"]


def sink_records(mesh: LocalMesh) -> list[dict]:
    code, records, err = audit("--file", str(mesh.state / "audit.jsonl"))
    assert code == 0, err
    return records


async def wait_for_limit(mesh: LocalMesh) -> None:
    """math-agent's get-sum until the hourly bucket of 1 is empty (the policy file is read asynchronously)."""
    async with mesh.client("math-agent") as client:
        await client.initialize()
        for _ in range(200):
            answer = await client.call_tool("get-sum", SUM)
            if answer.error is not None and answer.error.get("code") == 429:
                return
    raise AssertionError("the limit never applied")


async def test_records_match_the_calls_one_for_one_and_survive_a_sink_restart(mesh):
    await wait_for_limit(mesh)
    expected = []
    async with mesh.client("research-agent") as research:
        await research.initialize()
        allowed = await research.call_tool("get-sum", SUM)
        assert allowed.error is None, allowed.raw
        expected.append((RESEARCH, research.session_id, allowed.request_id, "get-sum", "allow",
                         "quickstart/everything-tool-grants#research-tools"))
    async with mesh.client("math-agent") as math:
        await math.initialize()
        backend_denied = await math.call_tool("echo", {"message": "hi"})
        limited = await math.call_tool("get-sum", SUM)
        assert backend_denied.error["code"] == 403 and limited.error["code"] == 429
        expected += [(MATH, math.session_id, backend_denied.request_id, "echo", "denied", "backend"),
                     (MATH, math.session_id, limited.request_id, "get-sum", "limited",
                      "quickstart/calc-sum-limit#calc-sum")]
    async with mesh.client("stranger-agent") as stranger:  # no gateway-level grant
        gateway_denied = await stranger.call_tool("get-sum", SUM)
        assert gateway_denied.error["code"] == 403
        expected.append((STRANGER, None, gateway_denied.request_id, "get-sum", "denied", "gateway"))
    sessions = {e[1] for e in expected if e[1]}

    def ours(records):
        return [r for r in tool_calls(records, RESEARCH, MATH, STRANGER) if r[1] in sessions or r[0] == STRANGER]

    wait_until(lambda: len(ours(sink_records(mesh))) >= len(expected), timeout=20, what="the audit records")
    assert ours(sink_records(mesh)) == sorted(expected)
    record = next(r for r in sink_records(mesh) if r["jsonrpc_id"] == allowed.request_id)
    assert record["proxy"] == "gateway~quickstart~agent-gateway" and record["role"] == "gateway"
    assert record["backend"] == "quickstart/everything-mcp" and record["status"] == 200
    assert record["gateway_rule"] and record["request_id"] and record["duration_ms"] is not None
    counted = [line for line in _metrics(mesh).splitlines() if line.startswith("agentic_audit_requests_total")]
    assert any(line.startswith('agentic_audit_requests_total{backend="route quickstart/everything-route/0",'
                               f'caller="{MATH}",decision="limited",tool="get-sum"}} ') for line in counted), counted
    assert any(line.startswith(f'agentic_audit_requests_total{{backend="quickstart/everything-mcp",caller="{RESEARCH}",'
                               f'decision="allow",tool="get-sum"}} ') for line in counted), counted

    # The sink goes down: Envoy keeps serving; its stdout access log keeps the records.
    mesh.stop_control_plane()
    async with mesh.client("research-agent") as research:
        await research.initialize()
        during = await research.call_tool("echo", {"message": "while the sink is down"})
        assert during.error is None, during.raw
        down_session = research.session_id
    mesh.start_control_plane()
    async with mesh.client("research-agent") as research:
        await research.initialize()
        after = await research.call_tool("get-sum", SUM)
        after_session = research.session_id

    def session_calls(records, session):
        return [r for r in tool_calls(records, RESEARCH) if r[1] == session]

    wait_until(lambda: session_calls(sink_records(mesh), after_session), timeout=30,
               what="records after the sink restarted")
    assert session_calls(sink_records(mesh), after_session) == [
        (RESEARCH, after_session, after.request_id, "get-sum", "allow",
         "quickstart/everything-tool-grants#research-tools")]
    wait_until(lambda: session_calls(audit("--file", str(mesh.workdir / "envoy.log"))[1], down_session),
               timeout=10, what="the downtime's record in Envoy's access log")
    code, from_envoy, err = audit("--file", str(mesh.workdir / "envoy.log"), "--caller", RESEARCH, "--tool", "echo")
    assert code == 0 and "not access log records" in err  # Envoy's own lines are counted, not records
    assert [(r["session_id"], r["jsonrpc_id"], r["decision"]) for r in from_envoy
            if r["session_id"] == down_session] == [(down_session, during.request_id, "allow")]


def _metrics(mesh: LocalMesh) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{mesh.ports.admin}/metrics", timeout=5) as response:
        return response.read().decode()
