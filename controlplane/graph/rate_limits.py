"""RateLimitPolicy in the graph: its fragment (attachments and `Accepted` per targetRef) and its limits
resolved for enforcement and `explain` (a caller's SPIFFE ID or any caller, the tools or any tool).

Why its own node id (`ratelimit:ns/name`): a RateLimitPolicy and an XAccessPolicy may share a name, and
a rate limit never grants or denies access, so it stays out of the access policies' admission (one
ExternalAuth per target, seniority). It is accepted wherever its target exists; its rules cannot fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.base import ResourceKey
from controlplane.api.governance import RateLimitPolicy
from controlplane.graph.admission import Condition
from controlplane.graph.fragments import Output, Reader, backend_node, gateway_node, target_problem
from controlplane.graph.rules import ANY_SOURCE, source_principal

ACCEPTED = Condition(True, "Accepted", "the rate limits are enforced on this target")


@dataclass(frozen=True)
class ResolvedLimit:
    """One limit as enforcement reads it: `requests` per `seconds`, one bucket per caller x tool."""

    policy: ResourceKey
    name: str
    principal: str  # a SPIFFE ID, ANY_SOURCE, or NO_SOURCE (names no caller: never applies)
    tools: tuple[str, ...]  # () = every tools/call
    requests: int
    seconds: int

    @property
    def ref(self) -> str:
        return f"{self.policy.namespace}/{self.policy.name}#{self.name}"

    def applies(self, caller: str | None, tool: str | None) -> bool:
        """Whether a `tools/call` of `tool` by `caller` takes a token from this limit."""
        if tool is None:
            return False
        caller_ok = self.principal == ANY_SOURCE or (caller is not None and self.principal == caller)
        return caller_ok and (not self.tools or tool in self.tools)


    def describe(self) -> str:
        per = {1: "second", 60: "minute", 3600: "hour"}.get(self.seconds, f"{self.seconds}s")
        return f"{self.ref}: {self.requests} per {per} for each caller x tool"


def rate_limit_node(key: ResourceKey) -> str:
    return f"ratelimit:{key.ref}"


def limits_on(graph, target_id: str, listener: str | None) -> list[ResolvedLimit]:
    """The limits attached to a target (a networkx graph node), by policy; a Gateway's may name listeners."""
    nodes = [graph.nodes[nid] for nid, _, data in graph.in_edges(target_id, data=True) if data["rel"] == "rate_limited"]
    nodes = [n for n in nodes if listener is None or not n["sections"] or listener in n["sections"]]
    return [limit for node in sorted(nodes, key=lambda n: n["key"]) for limit in node["limits"]]


def resolve_limits(policy: RateLimitPolicy, trust_domain: str) -> tuple[ResolvedLimit, ...]:
    return tuple(ResolvedLimit(policy.key, limit.name, source_principal(limit.source, policy.namespace, trust_domain),
                               tuple(limit.tools or ()), limit.requests, limit.per.seconds)
                 for limit in policy.spec.limits)


def rate_limit_fragment(policy: RateLimitPolicy, reader: Reader) -> Output:
    conditions = []
    for ref in policy.spec.target_refs:
        key, problem = target_problem(policy, ref, reader)
        conditions.append((ref, key, problem or ACCEPTED))
    limits = resolve_limits(policy, reader.trust_domain)
    sections = frozenset(ref.section_name for ref in policy.spec.target_refs if ref.section_name)
    out = Output()
    nid = rate_limit_node(policy.key)
    out.nodes[nid] = {"type": "rate_limit_policy", "key": policy.key, "limits": limits, "sections": sections,
                      "conditions": tuple((ref.kind, ref.name, ref.section_name, c) for ref, _, c in conditions)}
    for _, key, cond in conditions:
        if cond.accepted:
            target = gateway_node(key) if key.kind == "Gateway" else backend_node(key)
            out.edge(nid, target, rel="rate_limited")
    return out
