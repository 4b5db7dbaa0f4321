"""tools/list filtered per caller through a real Envoy gateway, by the control plane's ext_proc service.

The quickstart's three agents list tools through the same gateway and see what their grants imply
(research-agent get-sum and echo, math-agent get-sum, intern-agent nothing), with the MCP server
answering in SSE and in plain JSON; a tool hidden from the list is still refused when called directly;
a policy edit changes the next list with no listener change; other fields of each tool are kept; only
tools/list responses reach the control plane (Envoy's matcher skips the filter for every other call);
a caller-sent `x-envoy-original-path` does not reach the service.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.mcp_client import RawMcpClient
from tests.support.mesh import LocalMesh

pytestmark = pytest.mark.slow

LISTED = {"research-agent": {"get-sum", "echo"}, "math-agent": {"get-sum"}, "intern-agent": set()}
DENIED = {"code": 403, "message": "Access to this tool is forbidden."}


@pytest.fixture(params=["sse", "json"])
def mesh(request, tmp_path):
    with LocalMesh(tmp_path, mcp_args=("--json-response",) if request.param == "json" else ()) as running:
        running.answers = request.param
        yield running


async def listed_tools(mesh: LocalMesh, agent: str) -> list[dict]:
    async with mesh.client(agent) as client:
        await client.initialize()
        answer = await client.list_tools()
        assert answer.http_status == 200 and answer.error is None, answer.raw
        expected = "application/json" if mesh.answers == "json" else "text/event-stream"
        assert answer.headers["content-type"].startswith(expected)
        return answer.result["tools"]


async def test_each_agent_lists_only_the_tools_it_may_call(mesh):
    for agent, allowed in LISTED.items():
        tools = await listed_tools(mesh, agent)
        assert {tool["name"] for tool in tools} == allowed, agent
    research = {tool["name"]: tool for tool in await listed_tools(mesh, "research-agent")}
    assert research["echo"]["description"] == "Echoes back the input string"
    assert research["echo"]["inputSchema"]["properties"]["message"]["type"] == "string"
    assert streams_started(mesh) > 0  # Envoy did ask the control plane


def streams_started(mesh: LocalMesh) -> int:
    started = mesh.envoy.stats("ext_proc.tools_list.streams_started")
    assert len(started) == 1, started  # one gateway listener
    return next(iter(started.values()))


async def test_only_a_tools_list_response_reaches_the_control_plane(mesh):
    async with mesh.client("research-agent") as client:
        before = streams_started(mesh)
        await client.initialize()
        await client.notify("notifications/initialized")
        for _ in range(3):
            assert (await client.call_tool("get-sum", {"a": 2, "b": 3})).text == "The sum of 2 and 3 is 5."
        assert (await client.call_tool("echo", {"message": "hi"})).error is None
        await client.ping()
        assert streams_started(mesh) == before  # initialize, notification, calls, ping: no round trip
        listed = await client.list_tools()
        assert {tool["name"] for tool in listed.result["tools"]} == LISTED["research-agent"]
        assert streams_started(mesh) == before + 1


async def test_a_forged_original_path_does_not_reach_the_service(mesh):
    """On a route without a rewrite Envoy sets no x-envoy-original-path; a caller's own must not count.

    The forged path matches no route, so if the service read it the list would come back empty.
    """
    if mesh.answers == "json":
        pytest.skip("one answer framing is enough")
    mesh.edit("10-gateway.yaml", "  rules:\n", "  rules:\n  - matches: [{path: {type: PathPrefix, value: /mcp}}]\n"
              "    backendRefs: [{group: agentic.networking.x-k8s.io, kind: XBackend, name: everything-mcp}]\n")
    url = mesh.url.replace("/tools/mcp", "/mcp")
    for _ in range(100):  # until the new rule is served
        async with RawMcpClient(url, cert=mesh.identity("research-agent")) as client:
            if (await client.initialize()).http_status == 200:
                break
        await asyncio.sleep(0.2)
    forged = {"x-envoy-original-path": "/nowhere"}
    async with RawMcpClient(url, cert=mesh.identity("research-agent"), extra_headers=forged) as client:
        assert (await client.initialize()).http_status == 200
        listed = await client.list_tools()
        assert {tool["name"] for tool in listed.result["tools"]} == LISTED["research-agent"], listed.raw


async def test_an_unlisted_tool_is_still_refused_when_called(mesh):
    async with mesh.client("math-agent") as client:
        await client.initialize()
        listed = await client.list_tools()
        assert "echo" not in {tool["name"] for tool in listed.result["tools"]}
        refused = await client.call_tool("echo", {"message": "hi"})
        assert refused.error == DENIED
        assert (await client.call_tool("get-sum", {"a": 2, "b": 3})).text == "The sum of 2 and 3 is 5."
    assert [entry["tool"] for entry in mesh.tools_run()] == ["get-sum"]


async def test_a_policy_edit_changes_the_next_list_without_a_listener_change(mesh):
    if mesh.answers == "json":
        pytest.skip("one answer framing is enough for the edit")
    modified = "listener_manager.listener_modified"
    before = mesh.envoy.stats(modified)[modified]
    mesh.edit("30-policies.yaml", 'params: ["get-sum"]', 'params: ["get-sum", "echo"]')
    for _ in range(100):  # the control plane applies the file once it has settled (about a second)
        if {t["name"] for t in await listed_tools(mesh, "math-agent")} == {"get-sum", "echo"}:
            break
        await asyncio.sleep(0.2)
    assert {t["name"] for t in await listed_tools(mesh, "math-agent")} == {"get-sum", "echo"}
    assert {t["name"] for t in await listed_tools(mesh, "intern-agent")} == set()
    assert mesh.envoy.stats(modified)[modified] == before
