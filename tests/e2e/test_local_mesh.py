"""The mesh on one machine with transparent capture (e2e/local/): each pod a network namespace.

The agent pod runs an agent that knows nothing of the mesh (plain `http://weather.tools.svc.cluster.local:
8080/mcp`, no proxy, no certificate); the Service name resolves (the pod's /etc/hosts) to a cluster IP that
nothing owns, so only capture can carry the call. Both pods get the rules `agentic-cp capture-rules`
prints, applied with iptables-restore as an init container would, and a real Envoy sidecar running as UID
1337 (the UID the rules exclude). The control plane serves xDS from the node namespace. Shown: the call is
captured and carried over mTLS, get-sum (granted) runs, echo (not granted) is a JSON-RPC error and never
runs, a destination the graph does not let the agent reach is refused by its own sidecar, the agent's
sidecar logs the original destination it dialled, and the tool's app port (bound on all addresses)
answers inside its pod but not from outside it (inbound capture sends that connection to 15006, where
STRICT mTLS refuses it); nor does the agent's outbound side answer another pod.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from controlplane.translate.capture import PROXY_UID, restore_script
from controlplane.translate.roles.sidecar import ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT
from tests.support.envoy import envoy_executable_copy, next_base_id
from tests.support.netns import LocalPods, Pod, existing_namespaces, why_unavailable
from tests.support.processes import REPO_ROOT, repo_env, spawn, terminate, wait_until
from tests.support.weather_mesh import weather_mesh

pytestmark = pytest.mark.slow

APP_PORT, SERVICE_PORT, XDS_PORT = 9000, 8080, 15010
SERVICE_NAMES = ["weather", "weather.tools", "weather.tools.svc", "weather.tools.svc.cluster.local"]
TOOL_URL = f"http://weather.tools.svc.cluster.local:{SERVICE_PORT}/mcp"
UNREACHABLE_URL = f"http://billing.tools.svc.cluster.local:{SERVICE_PORT}/mcp"
PROBE = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
        s.sendall(b"POST /mcp HTTP/1.1\\r\\nHost: weather\\r\\nContent-Length: 0\\r\\n\\r\\n")
        print(s.recv(64).decode(errors="replace") or "closed")
except OSError as err:
    print(type(err).__name__)
"""




class Mesh:
    """The namespaces, processes and files of one run; `close()` removes all of them, in reverse."""

    def __init__(self, pods: LocalPods, work: Path):
        self.pods, self.work = pods, work
        self.procs = []

    def start(self, pod: Pod, argv: list[str], *, log: str, uid: int | None = None):
        proc = spawn(LocalPods.exec_argv(pod, argv, uid=uid), log=self.work / log)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            terminate(proc)
        self.pods.close()
        shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture
def mesh():
    reason = why_unavailable() if os.geteuid() == 0 else "needs root (network namespaces, iptables)"
    if reason:
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    prefix = f"acp{os.getpid() % 100000}"
    subnet = f"10.251.{os.getpid() % 200}"
    work = Path(tempfile.mkdtemp(prefix="acp-local-mesh-"))
    work.chmod(0o755)  # the sidecars (UID 1337) read their bootstrap below it
    pods = LocalPods(prefix, subnet=subnet)
    running = Mesh(pods, work)
    try:
        pods.open()
        yield running
    finally:
        running.close()
    assert not {ns for ns in existing_namespaces() if ns.startswith(prefix)}
    assert not any(Path("/etc/netns", f"{prefix}-{role}").exists() for role in ("agent", "tool"))


def sidecar(mesh: Mesh, pod: Pod, workload: str) -> None:
    out = mesh.work / workload.replace("/", "-")
    made = run_cli(mesh, ["bootstrap", "--xds-address", f"{mesh.pods.node.address}:{XDS_PORT}",
                          "--state-dir", str(mesh.work / "state"), "--workload", workload, "--out", str(out),
                          "--admin-port", str(ADMIN_PORT)])
    assert made.returncode == 0, made.stderr
    for path in (out, *out.rglob("*")):
        os.chown(path, PROXY_UID, PROXY_UID)
    envoy = envoy_executable_copy(mesh.work / "bin")
    mesh.start(pod, [str(envoy), "-c", str(out / "envoy.yaml"), "--base-id", str(next_base_id()),
                     "--file-flush-interval-msec", "500"], log=f"{out.name}.log", uid=PROXY_UID)


def run_cli(mesh: Mesh, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controlplane.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=repo_env(), timeout=60, check=False)


def install_capture(mesh: Mesh, pod: Pod) -> None:
    printed = run_cli(mesh, ["capture-rules"])  # what the init container runs, then iptables-restore
    assert printed.returncode == 0 and printed.stdout == restore_script(), printed.stderr
    applied = mesh.pods.run(pod, ["iptables-restore"], input=printed.stdout)
    assert applied.returncode == 0, applied.stderr


def agent_sees(mesh: Mesh, pod: Pod, url: str, *tools: str) -> dict[str, dict]:
    ran = mesh.pods.run(pod, [sys.executable, "-m", "tests.support.mesh_agent", url, *tools], timeout=60)
    assert ran.returncode == 0, ran.stderr
    return {step["step"]: step for step in map(json.loads, ran.stdout.splitlines())}


def probe(mesh: Mesh, pod: Pod, address: str, port: int) -> str:
    return mesh.pods.run(pod, [sys.executable, "-c", PROBE, address, str(port)], timeout=30).stdout.strip()


def test_a_captured_agent_reaches_only_its_granted_tool_through_both_sidecars(mesh):
    pods = mesh.pods
    cluster_ip = f"{pods.subnet}.200"  # no interface has it: only capture can deliver a connection to it
    agent = pods.add("agent", hosts={cluster_ip: SERVICE_NAMES, f"{pods.subnet}.201": ["billing.tools.svc.cluster.local"]})
    tool = pods.add("tool")
    config = mesh.work / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(weather_mesh(tool_address=tool.address, service_port=SERVICE_PORT, app_port=APP_PORT))
    tool_log = mesh.work / "tools-run.jsonl"

    cp = mesh.start(pods.node, [sys.executable, "-m", "controlplane.cli", "serve", "--config", str(config),
                                "--state-dir", str(mesh.work / "state"),
                                "--xds-address", f"{pods.node.address}:{XDS_PORT}",
                                "--admin-address", "127.0.0.1:15014"], log="cp.log")
    pods.wait_for_port(pods.node, "127.0.0.1", 15014, proc=cp, what="control plane admin")
    app = mesh.start(tool, [sys.executable, "-m", "tests.support.mcp_server", "--host", "0.0.0.0",
                            "--port", str(APP_PORT), "--tool-log", str(tool_log)], log="mcp.log")
    pods.wait_for_port(tool, "127.0.0.1", APP_PORT, proc=app, what="MCP server")
    for pod in (agent, tool):
        install_capture(mesh, pod)
    sidecar(mesh, tool, "tools/weather-server")
    sidecar(mesh, agent, "agents/research-agent")
    pods.wait_for_port(tool, "127.0.0.1", INBOUND_PORT, what="tool sidecar inbound")
    pods.wait_for_port(agent, "127.0.0.1", OUTBOUND_PORT, what="agent sidecar outbound")

    seen = agent_sees(mesh, agent, TOOL_URL, "get-sum", "echo")
    refused = agent_sees(mesh, agent, UNREACHABLE_URL)
    inside = probe(mesh, tool, tool.address, APP_PORT)  # the app does listen on the pod's address
    outside = probe(mesh, pods.node, tool.address, APP_PORT)  # from another namespace: captured into 15006
    borrow = probe(mesh, pods.node, agent.address, OUTBOUND_PORT)  # the agent's outbound side, from outside
    print_table(seen, refused, inside, outside, borrow)

    assert seen["initialize"]["http_status"] == 200, seen
    assert seen["get-sum"]["text"] == "The sum of 2 and 3 is 5.", seen
    assert seen["echo"]["http_status"] == 200 and seen["echo"]["error"]["message"] == \
        "Access to this tool is forbidden.", seen
    assert [json.loads(line)["tool"] for line in tool_log.read_text().splitlines()] == ["get-sum"]
    assert refused["initialize"]["http_status"] == 403, refused
    assert inside.startswith("HTTP/1.1"), inside
    assert not outside.startswith("HTTP/"), outside
    assert not borrow.startswith("HTTP/"), borrow  # no other pod sends through this workload's identity
    tool_side = access_log(mesh, "tools-weather-server")
    assert {e["caller"] for e in tool_side if e.get("mcp_method") == "tools/call"} == {
        "spiffe://cluster.local/ns/agents/sa/research-agent"}
    dialled = {f"{cluster_ip}:{SERVICE_PORT}", f"{pods.subnet}.201:{SERVICE_PORT}"}  # what the agent dialled

    def destinations() -> set[str]:  # restored by original_dst on the agent's sidecar
        return {e["original_destination"] for e in access_log(mesh, "agents-research-agent")}

    wait_until(lambda: destinations() >= dialled, timeout=10, what="the agent sidecar's access log")
    assert destinations() == dialled


def access_log(mesh: Mesh, sidecar_dir: str) -> list[dict]:
    lines = (mesh.work / f"{sidecar_dir}.log").read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def print_table(seen: dict, refused: dict, inside: str, outside: str, borrow: str) -> None:
    rows = [("research-agent -> weather get-sum", seen.get("get-sum", {}).get("text")),
            ("research-agent -> weather echo", (seen.get("echo", {}).get("error") or {}).get("message")),
            ("research-agent -> billing (not reachable)", refused.get("initialize", {}).get("http_status")),
            ("tool pod -> own app port", inside.splitlines()[0] if inside else inside),
            ("node -> tool app port (bypass)", outside or "nothing"),
            ("node -> agent's outbound 15001 (borrow)", borrow or "nothing")]
    print("\nlocal mesh decisions:")
    for what, result in rows:
        print(f"  {what:45} {result}")
