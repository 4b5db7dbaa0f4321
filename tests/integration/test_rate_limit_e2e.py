"""RateLimitPolicy end to end: the quickstart gateway (real Envoy, real MCP server, real mTLS) with a limit
of 3 `get-sum` calls a minute for math-agent on the XBackend.

The 4th call in the minute is refused as a JSON-RPC error with a retry hint and never reaches the server;
research-agent's `get-sum` and math-agent's other calls are in other buckets (or in none).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support.mesh import LocalMesh
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

LIMIT = 3
RATE_LIMIT_POLICY = f"""\
apiVersion: governance.agentic-cp.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: calc-sum-limit, namespace: quickstart}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}}]
  limits:
  - name: calc-sum
    source: {{type: ServiceAccount, serviceAccount: {{name: math-agent}}}}
    tools: ["get-sum"]
    requests: {LIMIT}
    per: Minute
"""
SUM = {"a": 2, "b": 3}
LIMITED = re.compile(r"Rate limit exceeded: retry within (\d+) seconds\.")


@pytest.fixture
def mesh(tmp_path):
    with LocalMesh(tmp_path) as running:
        (running.config / "40-rate-limits.yaml").write_text(RATE_LIMIT_POLICY)
        yield running


def limited_in_access_log(mesh: LocalMesh) -> list[dict]:
    lines = [json.loads(line) for line in mesh.log("envoy.log").splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("details") == "local_rate_limited"]


def limited(answer) -> bool:
    return answer.error is not None and answer.error.get("code") == 429


async def wait_for_limit(mesh: LocalMesh) -> None:
    """Calls get-sum as math-agent until the limit bites (the policy file is read asynchronously)."""
    async with mesh.client("math-agent") as client:
        await client.initialize()
        for _ in range(200):  # before the policy lands, calls pass; then exactly LIMIT pass
            answer = await client.call_tool("get-sum", SUM)
            if limited(answer):
                return
            assert answer.error is None, answer.raw
    raise AssertionError("the limit never applied")


async def test_the_call_past_the_limit_is_refused_with_a_retry_hint_and_others_are_not(mesh):
    await wait_for_limit(mesh)  # the policy is in force, math-agent's bucket is now empty
    ran_before = len(mesh.tools_run())
    async with mesh.client("math-agent") as math:
        await math.initialize()
        refused = await math.call_tool("get-sum", SUM)
        assert refused.http_status == 200 and limited(refused), refused.raw
        assert refused.body["id"] == refused.request_id and refused.body["jsonrpc"] == "2.0"
        hint = LIMITED.fullmatch(refused.error["message"])
        assert hint is not None and hint.group(1) == "60", refused.error  # the limit's interval
        assert refused.error["data"]["retryWithinSeconds"] == "60"
        assert refused.headers.get("x-ratelimit-limit") == str(LIMIT)
        assert 0 < int(refused.headers["x-ratelimit-reset"]) <= 60  # the exact wait, in the headers only
        other_tool = await math.call_tool("get-tiny-image", {})  # denied by RBAC, not limited
        assert other_tool.error is not None and other_tool.error["code"] == 403
        assert (await math.list_tools()).error is None  # not a tools/call: no bucket
    assert len(mesh.tools_run()) == ran_before  # the refused call never reached the server
    async with mesh.client("research-agent") as research:
        await research.initialize()
        for _ in range(LIMIT + 2):
            assert (await research.call_tool("get-sum", SUM)).error is None
        assert (await research.call_tool("echo", {"message": "hi"})).error is None
    # Counted and logged as limited: Envoy's counter at the backend level, and the access log line.
    assert mesh.envoy.stats("backend_rate_limit.http_local_rate_limit.rate_limited")[
        "backend_rate_limit.http_local_rate_limit.rate_limited"] >= 2
    wait_until(lambda: len(limited_in_access_log(mesh)) >= 2, timeout=10, what="limited calls in the access log")
    entry = limited_in_access_log(mesh)[-1]
    assert (entry["caller"], entry["tool"], entry["status"]) == (
        "spiffe://cluster.local/ns/quickstart/sa/math-agent", "get-sum", 200)
    assert "RL" in entry["flags"]


async def test_exactly_the_limit_passes_in_a_fresh_bucket(mesh):
    """Once the policy is in force, a fresh bucket (a reloaded policy: a new route config) takes N calls."""
    await wait_for_limit(mesh)
    mesh.edit("40-rate-limits.yaml", f"requests: {LIMIT}", f"requests: {LIMIT + 1}")
    async with mesh.client("math-agent") as client:
        await client.initialize()
        outcomes = []
        for _ in range(200):
            answer = await client.call_tool("get-sum", SUM)
            outcomes.append("limited" if limited(answer) else "ok")
            if outcomes[-(LIMIT + 2):] == ["ok"] * (LIMIT + 1) + ["limited"]:
                break
        assert outcomes[-(LIMIT + 2):] == ["ok"] * (LIMIT + 1) + ["limited"], outcomes


async def test_a_gateway_limit_gives_every_caller_and_tool_its_own_bucket_which_refills(mesh):
    import asyncio

    (mesh.config / "41-gateway-limits.yaml").write_text("""\
apiVersion: governance.agentic-cp.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: gateway-limits, namespace: quickstart}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agent-gateway}]
  limits:
  - {name: echo, tools: [echo], requests: 2, per: Second}
  - {name: sum, tools: [get-sum], requests: 2, per: Hour}
""")
    async with mesh.client("research-agent") as research:
        await research.initialize()
        for _ in range(500):  # until the policy lands and the caller's echo bucket empties
            refused = await research.call_tool("echo", {"message": "hi"})
            if limited(refused):
                break
        assert limited(refused), refused.raw
        # The hint is the longest interval at the level: every bucket there is full again within it.
        assert LIMITED.fullmatch(refused.error["message"]).group(1) == "3600"
        assert [limited(await research.call_tool("get-sum", SUM)) for _ in range(3)] == [False, False, True]
        async with mesh.client("math-agent") as math:  # another caller: a bucket of its own
            await math.initialize()
            assert (await math.call_tool("get-sum", SUM)).error is None
        for _ in range(100):  # the per-second echo bucket refills
            answer = await research.call_tool("echo", {"message": "again"})
            if answer.error is None:
                break
            assert limited(answer), answer.raw
            await asyncio.sleep(0.05)
        assert answer.error is None, answer.raw
