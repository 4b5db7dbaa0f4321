"""`make demo`: the quickstart's decisions for every agent, tool and base method, with the deciding rule.

This session's demo decides offline, from the authorization graph (`agentic-cp explain`); the same
table through a live Envoy gateway and a real MCP server is the gateway issue's `make demo`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from controlplane.api.base import ResourceKey
from controlplane.graph.explain import explain_gateway
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.request import Request
from controlplane.graph.rules import service_account_spiffe_id
from controlplane.sources.directory import DirectorySource

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
GATEWAY = ResourceKey("Gateway", "quickstart", "agent-gateway")
AGENTS = ("research-agent", "math-agent", "intern-agent", "stranger")
CALLS = (("initialize", None), ("tools/list", None), ("tools/call", "get-sum"), ("tools/call", "echo"),
         ("tools/call", "get-tiny-image"))


def main() -> int:
    console = Console() if sys.stdout.isatty() else Console(width=160)
    change = DirectorySource(QUICKSTART).load()
    problems = [p for ps in change.problems.values() for p in ps]
    if problems:
        for problem in problems:
            console.print(f"[red]{problem}")
        return 1
    graph = AuthorizationGraph()
    graph.apply(change)
    table = Table(title=f"quickstart: calls through Gateway {GATEWAY.ref} :10443 /tools/mcp (decided offline)")
    for column in ("caller", "call", "decision", "deciding rule / reason"):
        table.add_column(column)
    for agent in AGENTS:
        namespace = "quickstart" if agent != "stranger" else "elsewhere"
        source = service_account_spiffe_id(graph.trust_domain, namespace, agent)
        for method, tool in CALLS:
            request = Request.build(source=source, port=10443, path="/tools/mcp", mcp_method=method, tool=tool)
            decision = explain_gateway(graph, GATEWAY, request)
            color = "green" if decision.decision == "allow" else "red"
            why = ", ".join(decision.matched_rules) if decision.decision == "allow" else "; ".join(
                f"{lvl.level} level: {lvl.reason}" for lvl in decision.levels if lvl.decision == "deny")
            table.add_row(f"{namespace}/{agent}", f"{method} {tool or ''}".strip(),
                          f"[{color}]{decision.decision}", why)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
