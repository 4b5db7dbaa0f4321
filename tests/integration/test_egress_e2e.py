"""The egress role through real processes: an agent (its SVID, over mTLS) -> the egress Envoy programmed by a
real `agentic-cp serve` -> a local HTTPS MCP server standing in for an external provider, with its own CA
(nothing leaves the machine: the XBackend's hostname is `localhost`).

Shows: the allowed tool runs; another tool is a JSON-RPC error and never runs; a destination no XBackend
and policy name (Host 127.0.0.1) is refused (a 403 as a JSON-RPC error, marked denied); the credential from the Secret reaches the server and
never the client (the agent sent a fake one, which was overwritten); after the CA ConfigMap is changed to
a CA that does not vouch for the server, the egress refuses the server's certificate (no request arrives).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from controlplane.cli import main as cli
from controlplane.identity.ca import CertificateAuthority
from controlplane.translate.bootstrap import ENVOY_FLAGS
from tests.support.envoy import EnvoyProcess, free_port
from tests.support.mcp_client import RawMcpClient
from tests.support.mcp_server import serve_mcp
from tests.support.processes import spawn, terminate, wait_for_port

pytestmark = pytest.mark.slow

CREDENTIAL = "sk-test-provider-key-0123"


def manifest(*, egress_port: int, mcp_port: int, ca_pem: bytes) -> str:
    ca = "\n".join("    " + line for line in ca_pem.decode().strip().splitlines())
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: agentic}}
spec: {{controllerName: sigs.k8s.io/kube-agentic-networking-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: egress
  namespace: providers
  labels: {{governance.agentic-cp.dev/egress: "true"}}
spec:
  gatewayClassName: agentic
  listeners: [{{name: mesh, protocol: HTTPS, port: {egress_port}}}]
---
apiVersion: agentic.networking.x-k8s.io/v0alpha0
kind: XBackend
metadata:
  name: provider
  namespace: providers
  annotations:
    governance.agentic-cp.dev/egress-ca: ConfigMap/provider-ca
    governance.agentic-cp.dev/egress-credential: provider-key
spec:
  mcp: {{hostname: localhost, port: {mcp_port}, path: /mcp}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: provider-ca, namespace: providers}}
data:
  ca.crt: |
{ca}
---
apiVersion: v1
kind: Secret
metadata: {{name: provider-key, namespace: providers}}
stringData: {{credential: "Bearer {CREDENTIAL}"}}
---
apiVersion: agentic.networking.x-k8s.io/v1alpha1
kind: XAccessPolicy
metadata: {{name: provider-tools, namespace: providers}}
spec:
  targetRefs: [{{group: agentic.networking.x-k8s.io, kind: XBackend, name: provider}}]
  action: Allow
  rules:
    - name: research
      source: {{type: ServiceAccount, serviceAccount: {{name: research-agent, namespace: agents}}}}
      authorization:
        type: Inline
        mcp:
          mcpBaseProtocolMethodsOption: MATCH_BASE_PROTOCOL_METHODS
          methods: [{{name: tools/call, params: [get-sum]}}]
"""


def tools_run(path: Path) -> list[str]:
    return [json.loads(line)["tool"] for line in path.read_text().splitlines()] if path.exists() else []


async def test_agent_through_egress_to_a_tls_provider(tmp_path):
    provider_ca, other_ca = CertificateAuthority.create(trust_domain="provider.test"), \
        CertificateAuthority.create(trust_domain="impostor.test")
    server = provider_ca.issue("spiffe://provider.test/ns/p/sa/mcp", dns_names=["localhost"])
    (tmp_path / "server.pem").write_bytes(server.chain_pem)
    (tmp_path / "server.key").write_bytes(server.key_pem)
    egress_port, xds_port, admin_port = free_port(), free_port(), free_port()
    state, agent = tmp_path / "state", tmp_path / "agent"
    assert cli(["identity", "issue", "--state-dir", str(state), "--spiffe-id",
                "spiffe://cluster.local/ns/agents/sa/research-agent", "--out", str(agent)]) == 0
    seen: list[str | None] = []
    tool_log = tmp_path / "tools-run.jsonl"
    procs, envoy = [], None
    async with serve_mcp(tls=(str(tmp_path / "server.pem"), str(tmp_path / "server.key")),
                         seen_header=("authorization", seen), tool_log=tool_log) as mcp:
        config = tmp_path / "config"
        config.mkdir()
        (config / "egress.yaml").write_text(manifest(egress_port=egress_port, mcp_port=mcp.port,
                                                     ca_pem=provider_ca.bundle_pem))
        try:
            procs.append(spawn([sys.executable, "-m", "controlplane.cli", "serve", "--config", str(config),
                                "--state-dir", str(state), "--xds-address", f"127.0.0.1:{xds_port}",
                                "--admin-address", f"127.0.0.1:{admin_port}"], log=tmp_path / "cp.log"))
            wait_for_port(admin_port, what="control plane admin", proc=procs[-1])
            out = tmp_path / "egress"
            assert cli(["bootstrap", "--xds-address", f"127.0.0.1:{xds_port}", "--state-dir", str(state),
                        "--egress", "providers/egress", "--out", str(out), "--admin-port", "0"]) == 0
            envoy = EnvoyProcess.start(out / "envoy.yaml", log_path=out / "envoy.log", extra_args=ENVOY_FLAGS)
            envoy.wait_ready(timeout=30)
            wait_for_port(egress_port, what="egress listener", proc=envoy.proc)
            mtls = {"cert": (agent / "cert.pem", agent / "key.pem")}

            async with RawMcpClient(f"https://localhost:{egress_port}/mcp", **mtls) as client:
                client._headers["authorization"] = "Bearer agent-made-this-up"  # overwritten by the egress
                opened = await client.initialize()
                assert opened.http_status == 200 and opened.result is not None, opened.raw
                allowed = await client.call_tool("get-sum", {"a": 2, "b": 3})
                assert allowed.text == "The sum of 2 and 3 is 5.", allowed.raw
                denied = await client.call_tool("echo", {"message": "hi"})
                assert denied.error is not None and denied.error["message"] == "Access to this tool is forbidden."
                assert CREDENTIAL not in json.dumps([opened.raw, allowed.raw, denied.raw])
            assert tools_run(tool_log) == ["get-sum"]
            assert seen and all(value == f"Bearer {CREDENTIAL}" for value in seen), seen

            async with RawMcpClient(f"https://127.0.0.1:{egress_port}/mcp", **mtls) as stranger:
                refused = await stranger.initialize()
                assert refused.error is not None and refused.error["code"] == 403, refused.raw  # as JSON-RPC
                assert refused.headers.get("x-agentic-decision") == "denied"  # counted as a denial

            (config / "egress.yaml").write_text(manifest(egress_port=egress_port, mcp_port=mcp.port,
                                                         ca_pem=other_ca.bundle_pem))

            last: list = []

            async def refused_by_ca() -> bool:
                async with RawMcpClient(f"https://localhost:{egress_port}/mcp", **mtls) as again:
                    answer = await again.initialize()
                    last.append((answer.http_status, answer.raw[:200]))
                    return answer.http_status == 503

            await _eventually(refused_by_ca, what="the egress refusing a server its CA does not vouch for", seen=last)
            before = len(seen)
            assert await refused_by_ca()
            assert len(seen) == before  # refused at the handshake: no request reached the server
        finally:
            if envoy is not None:
                envoy.stop()
            for proc in reversed(procs):
                terminate(proc)


async def _eventually(check, *, what: str, seen: list, attempts: int = 60) -> None:
    import asyncio

    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"never saw {what}; last answers: {seen[-2:]}")
