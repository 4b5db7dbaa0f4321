"""GuardrailPolicy end to end: the quickstart gateway (real Envoy, real MCP server, real mTLS) with the
reference guardrail (`agentic-cp guardrail serve`, its own process) attached to the XBackend.

A tools/call whose arguments carry a private key is blocked before the server sees it; with only
responses judged, the same call reaches the server and its result (the echoed key) is blocked on the
way back; a clean call passes; with the guardrail down, calls are refused (fail closed).
"""

from __future__ import annotations

import sys

import pytest

from tests.support.envoy import free_port
from tests.support.mesh import LocalMesh
from tests.support.processes import spawn, terminate, wait_for_port

pytestmark = pytest.mark.slow

PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAtest\n-----END RSA PRIVATE KEY-----"


def policy(port: int, inspect: str = "Both") -> str:
    return f"""\
apiVersion: governance.agentic-cp.dev/v1alpha1
kind: GuardrailPolicy
metadata: {{name: secrets, namespace: quickstart}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}}]
  service: {{address: "127.0.0.1:{port}", timeout: 2s}}
  inspect: {inspect}
"""


@pytest.fixture
def guardrail(tmp_path):
    port = free_port()
    proc = spawn([sys.executable, "-m", "controlplane.cli", "guardrail", "serve", "--address", f"127.0.0.1:{port}"],
                 log=tmp_path / "guardrail.log")
    wait_for_port(port, what="guardrail", proc=proc)
    yield port, proc
    terminate(proc)


@pytest.fixture
def mesh(tmp_path, guardrail):
    with LocalMesh(tmp_path) as running:
        yield running


def blocked(answer) -> bool:
    return answer.error is not None and (answer.error.get("data") or {}).get("reason") == "private-key"


async def wait_for_block(mesh: LocalMesh) -> None:
    """Sends the key until the policy is in force (the policy file is read asynchronously)."""
    async with mesh.client("research-agent") as client:
        await client.initialize()
        for _ in range(200):
            answer = await client.call_tool("echo", {"message": PRIVATE_KEY})
            if blocked(answer):
                return
            assert answer.error is None, answer.raw
    raise AssertionError("the guardrail never applied")


async def test_arguments_with_a_private_key_are_blocked_and_clean_calls_pass(mesh, guardrail):
    (mesh.config / "50-guardrail.yaml").write_text(policy(guardrail[0]))
    await wait_for_block(mesh)
    ran_before = len(mesh.tools_run())
    async with mesh.client("research-agent") as client:
        await client.initialize()
        refused = await client.call_tool("echo", {"message": f"deploy with {PRIVATE_KEY}"})
        assert refused.http_status == 200 and blocked(refused), refused.raw
        assert refused.body["id"] == refused.request_id and refused.body["jsonrpc"] == "2.0"
        assert refused.error["data"]["phase"] == "request" and refused.error["data"]["policy"] == "quickstart/secrets"
        assert "PRIVATE KEY" not in refused.raw and "MIIE" not in refused.raw  # says why, never the secret
        assert refused.headers.get("x-agentic-decision") == "blocked"
        assert len(mesh.tools_run()) == ran_before  # never reached the server
        clean = await client.call_tool("echo", {"message": "hello"})
        assert clean.error is None and clean.text == "Echo: hello", clean.raw
        assert (await client.call_tool("get-sum", {"a": 2, "b": 3})).text == "The sum of 2 and 3 is 5."
        assert (await client.list_tools()).error is None  # not a judged method
    assert len(mesh.tools_run()) == ran_before + 2
    await wait_for_record(mesh, refused.request_id)


async def wait_for_record(mesh: LocalMesh, jsonrpc_id) -> None:
    """The audit record of the blocked call (the proxy's stdout access log, read as `agentic-cp audit` does)
    names the decision and which guardrail policy blocked it, and why."""
    import asyncio

    from controlplane.audit.query import Filters, ReadReport, read_records

    for _ in range(100):
        records = [r for r in read_records([mesh.workdir / "envoy.log"], Filters(decision="blocked"), ReadReport())
                   if r["jsonrpc_id"] == jsonrpc_id and r["tool"] == "echo"]
        if records:
            assert [(r["decision"], r["guardrail"]) for r in records] == [("blocked", "quickstart/secrets#private-key")]
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no audit record of the blocked call")


async def test_a_result_carrying_a_private_key_is_blocked_on_the_way_back(mesh, guardrail):
    (mesh.config / "50-guardrail.yaml").write_text(policy(guardrail[0], inspect="Responses"))
    await wait_for_block(mesh)  # blocked as a result: the arguments are no longer judged
    ran_before = len(mesh.tools_run())
    async with mesh.client("research-agent") as client:
        await client.initialize()
        refused = await client.call_tool("echo", {"message": PRIVATE_KEY})
        assert refused.http_status == 200 and blocked(refused), refused.raw
        assert refused.error["data"]["phase"] == "response" and refused.body["id"] == refused.request_id
        assert "MIIE" not in refused.raw and refused.headers.get("x-agentic-decision") == "blocked"
        assert (await client.call_tool("echo", {"message": "fine"})).text == "Echo: fine"
    assert len(mesh.tools_run()) == ran_before + 2  # the server ran the tool: its answer was held back


async def test_calls_fail_closed_when_the_guardrail_is_down(mesh, guardrail):
    port, proc = guardrail
    (mesh.config / "50-guardrail.yaml").write_text(policy(port))
    await wait_for_block(mesh)
    terminate(proc)
    ran_before = len(mesh.tools_run())
    async with mesh.client("research-agent") as client:
        await client.initialize()
        refused = await client.call_tool("echo", {"message": "hello"})
        assert refused.http_status == 200 and refused.error is not None, refused.raw
        assert refused.error["data"]["reason"] == "guardrail-unavailable" and refused.body["id"] == refused.request_id
        assert refused.headers.get("x-agentic-decision") == "blocked"
    assert len(mesh.tools_run()) == ran_before
