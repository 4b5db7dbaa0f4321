"""The quickstart end to end: the control plane, a real Envoy gateway, a real MCP server, real mTLS.

Each agent holds a certificate from `agentic-cp identity issue` and calls through the gateway exactly as
upstream's e2e tests do (JSON-RPC over HTTPS, one session); the official MCP SDK is used as a real
agent too. Policy edits are made to the files the control plane watches, while traffic flows.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.mcp_client import GatewayUnreachable, sdk_session
from tests.support.mesh import LocalMesh
from tests.support.processes import REPO_ROOT, repo_env

pytestmark = pytest.mark.slow

GRANTS = {"research-agent": {"get-sum", "echo"}, "math-agent": {"get-sum"}, "intern-agent": set()}
TOOLS = ("get-sum", "echo", "get-tiny-image")
ARGS = {"get-sum": {"a": 2, "b": 3}, "echo": {"message": "hello"}, "get-tiny-image": {}}
DENIED = {"code": 403, "message": "Access to this tool is forbidden."}


def stat(mesh: LocalMesh, name: str) -> int:
    return mesh.envoy.stats(name)[name]


@pytest.fixture
def mesh(tmp_path):
    with LocalMesh(tmp_path) as running:
        yield running
        # Every config the control plane sent during the test was ACKed by the running Envoy.
        for proxy in running.admin_json("/debug/syncz")["proxies"]:
            for state in proxy["types"]:
                assert state["last_nack_error"] is None and state["status"] == "SYNCED", state


async def test_each_agent_gets_exactly_its_tools(mesh):
    for agent, granted in GRANTS.items():
        async with mesh.client(agent) as client:
            opened = await client.initialize()
            assert opened.http_status == 200 and opened.result is not None and client.session_id
            listed = await client.list_tools()  # filtered per caller (test_tools_list_e2e.py)
            assert {t["name"] for t in listed.result["tools"]} == granted
            assert (await client.ping()).error is None
            for tool in TOOLS:
                answer = await client.call_tool(tool, ARGS[tool])
                assert answer.http_status == 200
                if tool in granted:
                    assert answer.error is None and answer.result["isError"] is False, (agent, tool)
                else:
                    assert answer.error == DENIED, (agent, tool, answer.raw)
                    assert answer.body["id"] == answer.request_id and answer.body["jsonrpc"] == "2.0"
            assert (await client.delete_session()).http_status == 200
    async with mesh.client("math-agent") as client:
        await client.initialize()
        assert (await client.call_tool("get-sum", ARGS["get-sum"])).text == "The sum of 2 and 3 is 5."


async def test_other_identities_and_clients_without_certificates_get_nothing(mesh):
    async with mesh.client("research-agent", namespace="elsewhere") as stranger:
        refused = await stranger.initialize()
        assert refused.error == DENIED and stranger.session_id is None
        assert (await stranger.call_tool("get-sum", ARGS["get-sum"])).error == DENIED
    async with mesh.client(None) as anonymous:
        with pytest.raises(GatewayUnreachable):
            await anonymous.initialize()


async def test_the_official_sdk_as_an_agent(mesh):
    from mcp import MCPError

    cert, key = mesh.identity("math-agent")
    async with sdk_session(mesh.url, cert=cert, key=key) as session:
        tools = await session.list_tools()
        assert {t.name for t in tools.tools} == GRANTS["math-agent"]
        result = await session.call_tool("get-sum", {"a": 20, "b": 22})
        assert result.content[0].text == "The sum of 20 and 22 is 42."
        with pytest.raises(MCPError) as denied:
            await session.call_tool("echo", {"message": "no"})
        assert denied.value.error.code == 403


async def test_a_policy_edit_applies_within_a_second_without_dropping_traffic(mesh):
    listeners_before = stat(mesh, "listener_manager.listener_modified")
    envoy_pid = mesh.envoy.pid
    failures: list[str] = []
    stop = asyncio.Event()

    async def steady_traffic():
        async with mesh.client("math-agent") as client:
            await client.initialize()
            while not stop.is_set():
                answer = await client.call_tool("get-sum", ARGS["get-sum"])
                if answer.error is not None or answer.http_status != 200:
                    failures.append(answer.raw)

    traffic = asyncio.create_task(steady_traffic())
    async with mesh.client("math-agent") as client:
        await client.initialize()
        assert (await client.call_tool("echo", ARGS["echo"])).error == DENIED
        mesh.edit("30-policies.yaml", 'params: ["get-sum"]', 'params: ["get-sum", "echo"]')
        edited = time.monotonic()
        while (await client.call_tool("echo", ARGS["echo"])).error is not None:
            assert time.monotonic() - edited < 5, "the edit never took effect"
            await asyncio.sleep(0.02)
        took = time.monotonic() - edited
    stop.set()
    await traffic
    print(f"policy edit -> decision changed through Envoy after {took:.3f} s")
    assert took < 1.0, f"decision changed after {took:.2f} s"
    assert failures == []
    assert mesh.envoy.pid == envoy_pid and mesh.envoy.running()
    assert stat(mesh, "listener_manager.listener_modified") == listeners_before


async def test_a_broken_edit_changes_nothing_and_is_reported(mesh):
    mesh.edit("30-policies.yaml", "mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS\n          methods:\n"
                                  "            - name: tools/call\n              params: [\"get-sum\"]",
              "mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS\n          methods:\n"
              "            - name: tools/call\n              params: [\"echo\"]\n          bogus: true")
    deadline = time.monotonic() + 10
    while "bogus" not in mesh.log():
        assert time.monotonic() < deadline, "the broken edit was not reported"
        await asyncio.sleep(0.05)
    assert "spec.rules[1].authorization.mcp.bogus" in mesh.log()
    async with mesh.client("math-agent") as client:
        await client.initialize()
        assert (await client.call_tool("get-sum", ARGS["get-sum"])).error is None
        assert (await client.call_tool("echo", ARGS["echo"])).error == DENIED
    syncz = mesh.admin_json("/debug/syncz")
    assert all(t["status"] == "SYNCED" for p in syncz["proxies"] for t in p["types"])


async def test_control_plane_restart_keeps_traffic_flowing_and_converges(mesh):
    listeners_before = stat(mesh, "listener_manager.listener_modified")
    async with mesh.client("research-agent") as client:
        await client.initialize()
        mesh.stop_control_plane()
        for _ in range(5):  # Envoy keeps serving its last config while the control plane is away
            assert (await client.call_tool("echo", ARGS["echo"])).error is None
        mesh.start_control_plane()
        deadline = time.monotonic() + 30
        while True:
            assert (await client.call_tool("echo", ARGS["echo"])).error is None  # no gap during reconnect
            proxies = mesh.admin_json("/debug/syncz")["proxies"]
            if proxies and all(t["status"] == "SYNCED" for t in proxies[0]["types"]):
                break
            assert time.monotonic() < deadline, f"not converged: {proxies}"
            await asyncio.sleep(0.2)
    assert stat(mesh, "listener_manager.listener_modified") == listeners_before
    assert stat(mesh, "listener_manager.lds.update_rejected") == 0


def test_make_demo_runs_and_agrees_with_explain():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tests.support.demo"], capture_output=True, text=True,
                            cwd=REPO_ROOT, env=repo_env(), timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Every call through Envoy matched" in result.stdout
    assert "JSON-RPC error 403" in result.stdout and "The sum of 2 and 3 is 5." in result.stdout
    assert "tools: get-sum, echo" in result.stdout and "tools: none" in result.stdout  # each agent's list


async def test_xds_serves_a_gateway_config_only_to_that_gateways_credentials(mesh):
    import grpc
    from envoy_data_plane.envoy.config.core.v3 import Node
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse

    from controlplane.identity.ca import CertificateAuthority
    from controlplane.identity.xds_auth import channel_credentials, issue_proxy_identity

    ca = CertificateAuthority.load_or_create(mesh.state, trust_domain="cluster.local")
    request = DiscoveryRequest(node=Node(id="gateway~quickstart~agent-gateway"),
                               type_url="type.googleapis.com/envoy.config.listener.v3.Listener")

    async def first_response(identity_id: str, *, proxy: bool = True):
        identity = issue_proxy_identity(ca, identity_id, role="gateway") if proxy else ca.issue(identity_id)
        credentials = channel_credentials(bundle_pem=ca.bundle_pem, identity=identity)
        async with grpc.aio.secure_channel(f"127.0.0.1:{mesh.ports.xds}", credentials) as channel:
            stream = channel.stream_stream(
                "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
                request_serializer=bytes, response_deserializer=DiscoveryResponse.parse)()
            await stream.write(request)
            return await asyncio.wait_for(stream.read(), timeout=10)

    served = await first_response("spiffe://cluster.local/ns/quickstart/sa/agent-gateway")
    assert [r.type_url for r in served.resources] == [request.type_url]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first_response("spiffe://cluster.local/ns/quickstart/sa/math-agent")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as workload:  # the gateway's SPIFFE ID, but no xDS role
        await first_response("spiffe://cluster.local/ns/quickstart/sa/agent-gateway", proxy=False)
    assert workload.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_every_decision_is_in_the_access_log_at_run_time(mesh):
    import json

    async with mesh.client("math-agent") as client:
        await client.initialize()
        assert (await client.call_tool("get-sum", ARGS["get-sum"])).error is None
        assert (await client.call_tool("echo", ARGS["echo"])).error == DENIED
    deadline = time.monotonic() + 10

    def entries():
        lines = [line for line in mesh.log("envoy.log").splitlines() if line.startswith("{")]
        return [json.loads(line) for line in lines if '"tools/call"' in line]

    while len(entries()) < 2:
        assert time.monotonic() < deadline, "the access log did not show both calls within 10 s"
        await asyncio.sleep(0.2)
    allowed, denied = sorted(entries(), key=lambda e: e["tool"] != "get-sum")
    caller = "spiffe://cluster.local/ns/quickstart/sa/math-agent"
    assert allowed["caller"] == denied["caller"] == caller
    assert allowed["backend_rule"] == "quickstart/everything-tool-grants#math-tools" and allowed["status"] == 200
    assert denied["tool"] == "echo" and denied["backend_rule"] is None
    assert denied["details"].startswith("rbac_access_denied")
