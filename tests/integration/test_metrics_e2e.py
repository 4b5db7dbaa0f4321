"""The metrics a dashboard reads, from a real Envoy gateway after one allowed and one denied tool call.

One stat scheme on every proxy of a role (`http.gateway_<port>.rbac.<level>.allowed|denied`), which
Envoy's Prometheus endpoint turns into one metric name per counter with the prefix as a tag; and the
access log's `decision` field, which marks the denial that travels as an HTTP 200 JSON-RPC error.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from tests.support.mesh import LocalMesh
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

ARGS = {"a": 2, "b": 3}
DENIED = {"code": 403, "message": "Access to this tool is forbidden."}


@pytest.fixture
def mesh(tmp_path):
    with LocalMesh(tmp_path) as running:
        yield running


async def tool_calls_logged(mesh: LocalMesh, count: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in mesh.log("envoy.log").splitlines() if line.startswith("{")]
        entries = [json.loads(line) for line in lines if '"tools/call"' in line]
        if len(entries) >= count:
            return entries
        assert time.monotonic() < deadline, f"the access log did not show {count} tool calls within 10 s"
        await asyncio.sleep(0.2)


async def test_a_denial_is_counted_and_logged_as_a_denial(mesh):
    before = mesh.envoy.stats(r"rbac\.")
    async with mesh.client("math-agent") as client:
        await client.initialize()
        assert (await client.call_tool("get-sum", ARGS)).error is None
        denied = await client.call_tool("echo", {"message": "hi"})
        assert denied.error == DENIED and denied.http_status == 200
    allowed_line, denied_line = sorted(await tool_calls_logged(mesh, 2), key=lambda e: e["tool"] != "get-sum")
    assert allowed_line["decision"] is None and allowed_line["status"] == 200
    assert denied_line["decision"] == "denied" and denied_line["status"] == 200 and denied_line["tool"] == "echo"

    port = mesh.ports.gateway
    after = mesh.envoy.stats(r"rbac\.")
    print("\n".join(f"{k} {v}" for k, v in sorted(after.items())))
    grew = {name for name, value in after.items() if value > before.get(name, 0)}
    assert f"http.gateway_{port}.rbac.backend.denied" in grew
    assert f"http.gateway_{port}.rbac.gateway.allowed" in grew
    prometheus = mesh.envoy.admin_get("/stats/prometheus").splitlines()
    print("\n".join(line for line in prometheus if "rbac" in line and not line.startswith("#")))
    tags = f'envoy_rbac_http_prefix="backend",envoy_http_conn_manager_prefix="gateway_{port}"'
    denials = [line for line in prometheus if line.startswith(f"envoy_http_rbac_denied{{{tags}}}")]
    assert len(denials) == 1 and int(denials[0].split()[-1]) >= 1, denials


def test_the_control_plane_logs_the_gateways_acks_once_each(mesh):
    def acks() -> list[str]:
        return [line for line in mesh.log().splitlines() if " ACK " in line]

    wait_until(lambda: any(" ACK rds " in line for line in acks()), timeout=10, what="the gateway's RDS ACK line")
    acks = acks()
    print("\n".join(acks))
    assert any(re.search(r"ACK lds version \S+ in \d+ ms", line) for line in acks), acks
    assert any(re.search(r"ACK rds version \S+ in \d+ ms", line) for line in acks), acks
    assert len(acks) == len(set(acks)), acks  # one line per (proxy, type, version)


async def test_an_upstreams_decision_header_never_reaches_the_client_but_envoys_own_mark_does(tmp_path):
    """An MCP server that answers every call with `x-agentic-decision: denied` cannot make an allowed call
    look like Envoy's denial: the gateway removes it from upstream responses; a real denial keeps its mark."""
    forged = ("--response-header", "x-agentic-decision: denied")
    with LocalMesh(tmp_path, mcp_args=forged) as mesh:
        async with mesh.client("math-agent") as client:
            await client.initialize()
            allowed = await client.call_tool("get-sum", ARGS)
            denied = await client.call_tool("echo", {"message": "hi"})
        assert allowed.error is None and "x-agentic-decision" not in allowed.headers, allowed.headers
        assert denied.error == DENIED and denied.headers.get("x-agentic-decision") == "denied", denied.headers
        allowed_line, denied_line = sorted(await tool_calls_logged(mesh, 2), key=lambda e: e["tool"] != "get-sum")
        assert allowed_line["decision"] is None, allowed_line
        assert denied_line["decision"] == "denied", denied_line
        assert allowed_line["backend_rule"], allowed_line  # the shadow rules still name the deciding rule
        after = mesh.envoy.stats(r"rbac\.")
        port = mesh.ports.gateway
        assert after.get(f"http.gateway_{port}.rbac.backend.shadow_allowed", 0) >= 1, after
        assert after.get(f"http.gateway_{port}.rbac.gateway.shadow_allowed", 0) >= 1, after
        assert f"http.gateway_{port}.rbac.shadow_allowed" not in after, after
