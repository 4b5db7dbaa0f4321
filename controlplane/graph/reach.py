"""What a config can never do: rules that can never match, and agents with no path to any tool.

Both answers are static and only name certain cases, so `analyze` can warn without false alarms:
- a rule can never match when it asks for MCP methods but allows only HTTP methods without POST (the MCP
  filter reads JSON-RPC from POST bodies only, so the method it asks for is never there), or when it
  admits only destination ports that no listener of its targeted Gateway has;
- an agent (a ServiceAccount named as a rule's source) has no path to a tool when no Gateway listener ->
  HTTPRoute -> XBackend path has, at both levels, a rule that may allow its `tools/call`. A rule "may"
  allow when its source is the agent or anyone and its authorization does not exclude `tools/call`
  (any L7 condition and any CEL expression is assumed to hold), so a warning is never a maybe.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from controlplane.api.agentic import (
    Action,
    Authorization,
    AuthorizationType,
    BaseProtocolOption,
    XAccessPolicy,
)
from controlplane.api.base import ResourceKey
from controlplane.graph.explain import policies_on
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.rules import ANY_SOURCE, PolicyView, ResolvedRule, resolve_rules


@dataclass(frozen=True)
class NeverMatching:
    policy: ResourceKey
    rule_index: int
    why: str


def never_matching(graph: AuthorizationGraph) -> list[NeverMatching]:
    found = []
    for policy in graph.of_kind("XAccessPolicy"):
        assert isinstance(policy, XAccessPolicy)
        ports = _target_ports(graph, policy)
        for index, rule in enumerate(policy.spec.rules or []):
            why = never_matches(rule.authorization, ports)
            if why:
                found.append(NeverMatching(policy.key, index, why))
    return found


def never_matches(auth: Authorization | None, target_ports: set[int] | None) -> str:
    """Why a rule's authorization can match no request; "" where it can (or where that is not certain)."""
    if auth is None:
        return ""
    if _asks_mcp_methods(auth) and auth.methods and "POST" not in auth.methods:
        return (f"it asks for MCP methods but allows only HTTP {', '.join(auth.methods)}: "
                "JSON-RPC methods arrive in POST bodies only")
    if auth.ports and target_ports is not None and not set(auth.ports) & target_ports:
        return (f"it allows only ports {sorted(auth.ports)}, and the targeted Gateway listens on "
                f"{sorted(target_ports)}")
    return ""


def _asks_mcp_methods(auth: Authorization) -> bool:
    mcp = auth.mcp
    return (auth.type is AuthorizationType.INLINE and mcp is not None and bool(mcp.methods)
            and mcp.base_protocol is not BaseProtocolOption.MATCH)  # base protocol matches GET and DELETE too


def _target_ports(graph: AuthorizationGraph, policy: XAccessPolicy) -> set[int] | None:
    """The listener ports of the Gateways the policy targets; None unless it targets only existing Gateways."""
    ports: set[int] = set()
    for ref in policy.spec.target_refs:
        gateway = graph.get(ResourceKey("Gateway", policy.namespace, ref.name)) if ref.kind == "Gateway" else None
        if gateway is None:
            return None
        ports |= {listener.port for listener in gateway.spec.listeners}
    return ports


def agents_without_tools(graph: AuthorizationGraph) -> list[tuple[ResourceKey, str]]:
    """(policy naming it, SPIFFE ID) for each ServiceAccount source that can call no tool anywhere."""
    named = dict(_service_account_sources(graph))
    return [(policy, agent) for agent, policy in sorted(named.items()) if not _reaches_a_tool(graph, agent)]


def _service_account_sources(graph: AuthorizationGraph) -> Iterator[tuple[str, ResourceKey]]:
    for policy in graph.of_kind("XAccessPolicy"):
        assert isinstance(policy, XAccessPolicy)
        for rule, resolved in zip(policy.spec.rules or [], resolve_rules(policy, graph.trust_domain), strict=False):
            if rule.source is not None and rule.source.service_account is not None \
                    and resolved.principal.startswith("spiffe://"):
                yield resolved.principal, policy.key


def _reaches_a_tool(graph: AuthorizationGraph, agent: str) -> bool:
    g = graph.graph
    for gid, data in list(g.nodes(data=True)):
        if data.get("type") != "gateway" or not data.get("managed"):
            continue
        for _, lid, rel in g.out_edges(gid, data=True):
            if rel["rel"] != "listener" or not _level_may_allow(policies_on(graph, gid, g.nodes[lid]["name"]), agent):
                continue
            for _, rid, route_rel in g.out_edges(lid, data=True):
                if route_rel["rel"] != "route":
                    continue
                for _, bid, backend_rel in g.out_edges(rid, data=True):
                    if backend_rel["rel"] == "backend" and g.nodes[bid].get("kind") == "XBackend" \
                            and _level_may_allow(policies_on(graph, bid, None), agent):
                        return True
    return False


def _level_may_allow(views: list[PolicyView], agent: str) -> bool:
    if any(v.action is Action.EXTERNAL_AUTH and v.withheld for v in views):
        return False
    allow = [v for v in views if v.action is Action.ALLOW]
    return not allow or any(_may_allow_tool_call(rule, agent) for v in allow for rule in v.rules)


def _may_allow_tool_call(rule: ResolvedRule, agent: str) -> bool:
    if rule.principal not in (agent, ANY_SOURCE):
        return False
    auth = rule.authorization
    if auth is None or auth.type is AuthorizationType.CEL:
        return True
    if never_matches(auth, None):
        return False
    if auth.mcp is None:
        return True
    if not auth.mcp.methods:  # every MCP method, unless it names the base protocol alone (no tools/call in it)
        return auth.mcp.base_protocol is not BaseProtocolOption.MATCH
    return any(m.name in ("tools/call", "tools") for m in auth.mcp.methods)
