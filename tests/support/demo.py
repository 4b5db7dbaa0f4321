"""`make demo`: the quickstart end to end on this machine, every call printed with its decision and rule.

It starts the real pieces (`agentic-cp serve` on examples/quickstart, an Envoy gateway bootstrapped by
`agentic-cp bootstrap`, the MCP test server, agents holding certificates from `agentic-cp identity
issue`), makes each agent's calls through the gateway over mTLS, and prints what came back beside
what `agentic-cp explain` says and the rule that decided. Each agent's `tools/list` shows the tools it
was given (filtered per caller by the gateway); a listed tool explain would deny, or a tool of the calls
below it would allow but the list hides, counts as a disagreement.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from controlplane.api.base import ResourceKey
from controlplane.graph.explain import explain_gateway
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.request import Request
from controlplane.identity.spiffe import spiffe_id
from controlplane.sources.directory import DirectorySource
from tests.support.mesh import LocalMesh

GATEWAY = ResourceKey("Gateway", "quickstart", "agent-gateway")
AGENTS = (("quickstart", "research-agent"), ("quickstart", "math-agent"), ("quickstart", "intern-agent"),
          ("elsewhere", "stranger"))
CALLS = (("initialize", None, None), ("tools/list", None, {}), ("tools/call", "get-sum", {"a": 2, "b": 3}),
         ("tools/call", "echo", {"message": "hello"}), ("tools/call", "get-tiny-image", {}))


async def run_calls(mesh: LocalMesh, graph: AuthorizationGraph, table: Table) -> int:
    mismatches = 0
    for namespace, agent in AGENTS:
        async with mesh.client(agent, namespace=namespace) as client:
            for method, tool, args in CALLS:
                if method == "initialize":
                    answer = await client.initialize()
                elif tool is None:
                    answer = await client.call(method, args)
                else:
                    answer = await client.call_tool(tool, args)
                seen = "deny" if answer.error is not None and answer.error.get("code") == 403 else "allow"
                source = spiffe_id(graph.trust_domain, namespace, agent)
                expected = explain_gateway(graph, GATEWAY, Request.build(
                    source=source, port=10443, path="/tools/mcp", mcp_method=method, tool=tool))
                mismatches += seen != expected.decision
                if method == "tools/list" and answer.result is not None:
                    mismatches += not _list_agrees(graph, source, _listed(answer))
                table.add_row(f"{namespace}/{agent}", f"{method} {tool or ''}".strip(), _show(seen),
                              _rule(expected), _result(answer))
    return mismatches


def _listed(answer) -> list[str]:
    return [tool.get("name") for tool in (answer.result or {}).get("tools") or () if isinstance(tool, dict)]


def _list_agrees(graph: AuthorizationGraph, source: str, listed: list[str]) -> bool:
    """Every listed tool is one explain allows, and every tool of CALLS explain allows is listed."""
    def allowed(tool: str) -> bool:
        return explain_gateway(graph, GATEWAY, Request.build(source=source, port=10443, path="/tools/mcp",
                                                             tool=tool)).decision == "allow"

    called = {tool for method, tool, _ in CALLS if method == "tools/call"}
    return all(allowed(tool) for tool in listed) and all(tool in listed for tool in called if allowed(tool))


def _show(decision: str) -> str:
    return f"[green]{decision}" if decision == "allow" else f"[red]{decision}"


def _rule(decision) -> str:
    if decision.decision == "allow":
        return ", ".join(decision.matched_rules) or decision.reason
    first = next((lvl for lvl in decision.levels if lvl.decision == "deny"), None)
    return f"{first.level} level: {first.reason}" if first else decision.reason


def _result(answer) -> str:
    if answer.error is not None:
        return f"JSON-RPC error {answer.error.get('code')}: {answer.error.get('message')}"
    if answer.text:
        return answer.text[:40]
    result = answer.result or {}
    if "tools" in result:
        return "tools: " + (", ".join(_listed(answer)) or "none")
    return "ok" if result else f"HTTP {answer.http_status}"


def main() -> int:
    console = Console() if sys.stdout.isatty() else Console(width=190)
    graph = AuthorizationGraph()
    with tempfile.TemporaryDirectory(prefix="agentic-demo-") as workdir:
        console.print("[bold]Starting[/] the MCP server, agentic-cp serve, and an Envoy gateway ...")
        graph.apply(DirectorySource(Path(__file__).resolve().parents[2] / "examples" / "quickstart").load())
        with LocalMesh(Path(workdir)) as mesh:
            console.print(f"Gateway {GATEWAY.ref} is listening on {mesh.url} (mTLS); control plane admin on "
                          f"http://127.0.0.1:{mesh.ports.admin}/debug/syncz")
            table = Table(title="quickstart: agents calling the MCP server through the Envoy gateway")
            for column in ("caller", "call", "decision", "deciding rule", "what came back"):
                table.add_column(column)
            mismatches = asyncio.run(run_calls(mesh, graph, table))
            console.print(table)
        # Envoy flushes its access log when it stops: show an allowed and a denied call as it saw them.
        log = [line for line in mesh.log("envoy.log").splitlines() if line.startswith("{")]
        for label, marker in (("allowed", '"via_upstream"'), ("denied", "rbac_access_denied")):
            line = next((entry for entry in log if marker in entry and '"tools/call"' in entry), None)
            if line:
                console.print(f"Gateway access log, a call {label}:", line, soft_wrap=True)
    if mismatches:
        console.print(f"[red]{mismatches} calls disagreed with `agentic-cp explain`")
        return 1
    console.print("Every call through Envoy matched the decision `agentic-cp explain` gives offline.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
