"""The quickstart end to end with the gateway's Envoy on incremental ADS (`bootstrap --delta`).

The real control plane, a real Envoy with `api_type: DELTA_GRPC`, the MCP server and agent
certificates, as in test_gateway_e2e: one allowed call, one denied call, and a live policy
edit that changes the decision, all while /debug/syncz shows a delta stream with every type
ACKed and nothing NACKed.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import yaml

from tests.support.mesh import LocalMesh

pytestmark = pytest.mark.slow

DENIED = {"code": 403, "message": "Access to this tool is forbidden."}
SUM = {"a": 2, "b": 3}


def assert_delta_synced(mesh: LocalMesh) -> None:
    [proxy] = mesh.admin_json("/debug/syncz")["proxies"]
    assert proxy["variant"] == "delta"
    assert proxy["types"], proxy
    for state in proxy["types"]:
        assert state["last_nack_error"] is None and state["status"] == "SYNCED", state
        assert state["resources_rejected"] == {}, state


async def wait_synced(mesh: LocalMesh, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert_delta_synced(mesh)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_quickstart_through_a_delta_envoy(tmp_path):
    with LocalMesh(tmp_path, delta=True) as mesh:
        bootstrap = yaml.safe_load((tmp_path / "gateway" / "envoy.yaml").read_text())
        assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
        await wait_synced(mesh)
        assert mesh.envoy.stats("control_plane.connected_state").get("control_plane.connected_state") == 1

        async with mesh.client("math-agent") as client:
            await client.initialize()
            allowed = await client.call_tool("get-sum", SUM)
            assert allowed.http_status == 200 and allowed.error is None, allowed.raw
            assert allowed.text == "The sum of 2 and 3 is 5."
            denied = await client.call_tool("echo", {"message": "hello"})
            assert denied.http_status == 200 and denied.error == DENIED, denied.raw

            # A live policy edit: math-agent is granted echo; the decision flips through Envoy.
            mesh.edit("30-policies.yaml", 'params: ["get-sum"]', 'params: ["get-sum", "echo"]')
            edited = time.monotonic()
            while (await client.call_tool("echo", {"message": "hello"})).error is not None:
                assert time.monotonic() - edited < 10, "the edit never took effect over delta xDS"
                await asyncio.sleep(0.05)
            print(
                f"policy edit -> decision changed through a delta Envoy after {time.monotonic() - edited:.3f} s"
            )
            assert (await client.call_tool("get-sum", SUM)).error is None
        await wait_synced(mesh)
        assert (
            mesh.envoy.stats("listener_manager.lds.update_rejected").get(
                "listener_manager.lds.update_rejected", 0
            )
            == 0
        )
