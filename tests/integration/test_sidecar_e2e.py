"""Mesh mode through real processes: an agent's sidecar Envoy and a tool's sidecar Envoy, both programmed by a
real `agentic-cp serve`, in front of the real MCP test server.

The agent (research-agent) speaks plain HTTP to its sidecar as an explicit proxy (127.0.0.1:15001) with the
tool's Service URL; its sidecar carries the call to the tool's sidecar (15006) over mTLS with the agent's
SVID, and the tool's sidecar decides with the identity that handshake proved: get-sum (granted) runs,
echo (not granted) gets a JSON-RPC error and never runs; its tools/list, filtered by the tool's sidecar
through the control plane's ext_proc service, shows get-sum alone (and only the list made that round
trip). The tool sidecar's access log names the caller
by its SPIFFE ID; a client without a mesh certificate gets no connection at 15006; a host the agent may
not reach is refused by its own sidecar.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.cli import main as cli
from controlplane.translate.bootstrap import ENVOY_FLAGS
from controlplane.translate.roles.sidecar import INBOUND_PORT, OUTBOUND_PORT
from tests.support.envoy import EnvoyProcess, free_port
from tests.support.mcp_client import RawMcpClient
from tests.support.processes import spawn, terminate, wait_for_port, wait_until
from tests.support.weather_mesh import weather_mesh

pytestmark = pytest.mark.slow

TOOL_URL = "http://weather.tools.svc.cluster.local:8080/mcp"
AGENT_ID = "spiffe://cluster.local/ns/agents/sa/research-agent"




def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class Processes:
    """Everything the test starts, stopped in reverse order whatever happens."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.envoys: list[EnvoyProcess] = []

    def stop(self):
        for envoy in reversed(self.envoys):
            envoy.stop()
        for proc in reversed(self.procs):
            terminate(proc)


def sidecar(tmp_path: Path, running: Processes, xds_port: int, workload: str) -> EnvoyProcess:
    out = tmp_path / workload.replace("/", "-")
    assert cli(["bootstrap", "--xds-address", f"127.0.0.1:{xds_port}", "--state-dir", str(tmp_path / "state"),
                "--workload", workload, "--out", str(out), "--admin-port", "0"]) == 0
    envoy = EnvoyProcess.start(out / "envoy.yaml", log_path=out / "envoy.log", extra_args=ENVOY_FLAGS)
    running.envoys.append(envoy)
    return envoy.wait_ready(timeout=30)


def access_log(envoy: EnvoyProcess) -> list[dict]:
    lines = envoy.log_path.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def tools_run(path: Path) -> list[str]:
    return [json.loads(line)["tool"] for line in path.read_text().splitlines()] if path.exists() else []


async def test_agent_sidecar_to_tool_sidecar(tmp_path):
    if not (port_is_free(INBOUND_PORT) and port_is_free(OUTBOUND_PORT)):
        pytest.skip(f"ports {OUTBOUND_PORT}/{INBOUND_PORT} are taken on this machine")
    mcp_port, xds_port, admin_port = free_port(), free_port(), free_port()
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(weather_mesh(tool_address="127.0.0.1", service_port=8080, app_port=mcp_port))
    tool_log = tmp_path / "tools-run.jsonl"
    running = Processes()
    try:
        running.procs.append(spawn([sys.executable, "-m", "tests.support.mcp_server", "--port", str(mcp_port),
                                    "--tool-log", str(tool_log)], log=tmp_path / "mcp.log"))
        wait_for_port(mcp_port, what="MCP server", proc=running.procs[-1])
        running.procs.append(spawn([sys.executable, "-m", "controlplane.cli", "serve", "--config", str(config),
                                    "--state-dir", str(tmp_path / "state"), "--xds-address", f"127.0.0.1:{xds_port}",
                                    "--admin-address", f"127.0.0.1:{admin_port}"], log=tmp_path / "cp.log"))
        wait_for_port(admin_port, what="control plane admin", proc=running.procs[-1])
        tool = sidecar(tmp_path, running, xds_port, "tools/weather-server")
        agent = sidecar(tmp_path, running, xds_port, "agents/research-agent")
        wait_for_port(INBOUND_PORT, what="tool sidecar inbound", proc=tool.proc)
        wait_for_port(OUTBOUND_PORT, what="agent sidecar outbound", proc=agent.proc)

        async with RawMcpClient(TOOL_URL, proxy=f"http://127.0.0.1:{OUTBOUND_PORT}") as client:
            opened = await client.initialize()
            assert opened.http_status == 200 and opened.result is not None, opened.raw
            listed = await client.list_tools()
            assert [t["name"] for t in listed.result["tools"]] == ["get-sum"], listed.raw  # the server has 4
            allowed = await client.call_tool("get-sum", {"a": 2, "b": 3})
            assert allowed.text == "The sum of 2 and 3 is 5.", allowed.raw
            denied = await client.call_tool("echo", {"message": "hi"})
            assert denied.http_status == 200 and denied.error is not None, denied.raw
            assert denied.error["message"] == "Access to this tool is forbidden."
            assert denied.body["id"] == denied.request_id

        async with RawMcpClient("http://not-in-the-mesh.example:8080/mcp",
                                proxy=f"http://127.0.0.1:{OUTBOUND_PORT}") as stranger:
            refused = await stranger.initialize()
            assert refused.http_status == 403, refused.raw

        assert tools_run(tool_log) == ["get-sum"]  # echo never reached the tool
        lists = tool.stats("ext_proc.tools_list.streams_started")
        assert list(lists.values()) == [1], lists  # the inbound listener asked once: for the list alone
        wait_until(lambda: any(e.get("tool") == "echo" for e in access_log(tool)), timeout=10,
                   what="the tool sidecar's access log line for echo")
        decided = {e["tool"]: e for e in access_log(tool) if e.get("mcp_method") == "tools/call"}
        assert decided["get-sum"]["caller"] == AGENT_ID and decided["get-sum"]["status"] == 200
        assert decided["echo"]["caller"] == AGENT_ID and decided["echo"]["status"] == 200  # as JSON-RPC error
        assert decided["get-sum"]["backend_rule"] == "tools/weather-grants#research"
        assert_no_plain_connection(INBOUND_PORT)
    finally:
        running.stop()


def assert_no_plain_connection(port: int) -> None:
    """A client without a mesh certificate cannot complete a handshake with the tool's sidecar (STRICT)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
          pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
          context.wrap_socket(raw) as tls):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: weather\r\n\r\n")
        if not tls.recv(1024):
            raise ConnectionResetError("closed without an answer")
