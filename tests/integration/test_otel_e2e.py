"""OpenTelemetry end to end: `serve --otel-collector` makes the quickstart gateway (real Envoy, real MCP
server, real mTLS) export a span and a log record per request to an OTLP collector (tests/support), with the
MCP semantic-convention attributes and this project's decision; an allowed and a denied tools/call each.
"""

from __future__ import annotations

import pytest

from tests.support.envoy import free_port
from tests.support.mesh import LocalMesh
from tests.support.otlp_collector import Exported, serve_otlp_collector
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

MATH = "spiffe://cluster.local/ns/quickstart/sa/math-agent"
NODE = "gateway~quickstart~agent-gateway"


@pytest.fixture
def collector():
    with serve_otlp_collector(port=free_port()) as running:
        yield running


@pytest.fixture
def mesh(tmp_path, collector):
    with LocalMesh(tmp_path, serve_args=("--otel-collector", f"127.0.0.1:{collector.port}")) as running:
        yield running


def _call(items: list[Exported], session: str, request_id) -> Exported | None:
    return next((e for e in items if e.attributes.get("mcp.session.id") == session
                 and e.attributes.get("jsonrpc.request.id") == str(request_id)), None)


async def test_allowed_and_denied_tool_calls_reach_the_collector_as_spans_and_logs(mesh, collector):
    async with mesh.client("math-agent") as math:
        await math.initialize()
        allowed = await math.call_tool("get-sum", {"a": 2, "b": 3})
        denied = await math.call_tool("echo", {"message": "hi"})
        session = math.session_id
    assert allowed.error is None, allowed.raw
    assert denied.error["code"] == 403, denied.raw

    def both_exported() -> bool:
        spans, logs = collector.snapshot()
        return all(_call(items, session, rid) for items in (spans, logs) for rid in (allowed.request_id,
                                                                                      denied.request_id))

    wait_until(both_exported, timeout=30, what="a span and a log record per tools/call")
    spans, logs = collector.snapshot()
    for items in (spans, logs):
        ok, refused = _call(items, session, allowed.request_id), _call(items, session, denied.request_id)
        for exported, tool in ((ok, "get-sum"), (refused, "echo")):
            assert exported.attributes["mcp.method.name"] == "tools/call"
            assert exported.attributes["gen_ai.tool.name"] == tool
            assert exported.attributes["agentic.caller"] == MATH
            assert exported.attributes["http.response.status_code"] == "200"
            assert exported.resource["service.name"] == NODE
        assert refused.attributes["agentic.decision"] == "denied"
        assert refused.attributes["agentic.backend.result"] == "denied"
        # allowed: no refusal mark, which a span leaves out and a log record writes as Envoy's "-"
        assert ok.attributes.get("agentic.decision", "-") == "-", ok.attributes
        assert ok.attributes["agentic.backend.rule"] == "quickstart/everything-tool-grants#math-tools"
    assert "agentic.decision" not in _call(spans, session, allowed.request_id).attributes
    log = _call(logs, session, denied.request_id)
    assert log.text == "tools/call echo" and log.resource["agentic.role"] == "gateway"
