"""Policies resolved for evaluation: who a rule names (a SPIFFE ID) and what it lets through.

Upstream's semantics (kube-agentic-networking pkg/translator/accesspolicy.go), extended where upstream
ignores fields: a rule without `source` matches any caller; a rule without `authorization` allows all;
an Inline rule allows the MCP methods it lists (a category by prefix, `params` against `params.name`
exactly), plus the base protocol when it says MATCH_BASE_PROTOCOL_METHODS; an Inline rule that lists
nothing allows all (upstream keeps this for compatibility). The L7 matchers of #309 (methods, paths,
headers, hosts, ports), which upstream's translator ignores, are enforced here and AND-ed. A CEL rule
only ever allows `tools/call`, when its expression holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from controlplane.api import cel
from controlplane.api.agentic import (
    MCP_CATEGORIES,
    AccessRule,
    Action,
    Authorization,
    AuthorizationType,
    BaseProtocolOption,
    ExternalAuth,
    MCPMethod,
    RuleSource,
    SourceType,
    XAccessPolicy,
)
from controlplane.api.base import ResourceKey
from controlplane.graph.request import Request
from controlplane.graph.routing import path_matches, value_matches
from controlplane.identity.spiffe import spiffe_id

DEFAULT_TRUST_DOMAIN = "cluster.local"
ANY_SOURCE = "*"
NO_SOURCE = "!"  # a source whose `type` names a member that is not set: it matches no caller (fail closed)


@dataclass(frozen=True)
class ResolvedRule:
    policy: ResourceKey
    name: str  # the rule's name; "*" for a policy without rules (it applies to all traffic)
    principal: str  # a SPIFFE ID, or ANY_SOURCE
    authorization: Authorization | None

    @property
    def ref(self) -> str:
        return f"{self.policy.namespace}/{self.policy.name}#{self.name}"

    def matches_source(self, source: str | None) -> bool:
        return self.principal == ANY_SOURCE or self.principal == source

    def matches(self, request: Request) -> bool:
        return self.matches_source(request.source) and permission_matches(self.authorization, request)


@dataclass(frozen=True)
class PolicyView:
    """An accepted policy as evaluation needs it, ordered by seniority."""

    key: ResourceKey
    action: Action
    external_auth: ExternalAuth | None
    rules: tuple[ResolvedRule, ...]
    section_names: frozenset[str]  # listeners a Gateway-targeted policy is limited to; empty = all
    withheld: str | None = None  # why its rules are withheld (a proxy refused its config); None = in force


def resolve_rules(policy: XAccessPolicy, trust_domain: str) -> tuple[ResolvedRule, ...]:
    if not policy.spec.rules:
        return (ResolvedRule(policy.key, "*", ANY_SOURCE, None),)
    return tuple(ResolvedRule(policy.key, r.name, _principal(r, policy.namespace, trust_domain), r.authorization)
                 for r in policy.spec.rules)


def _principal(rule: AccessRule, policy_namespace: str, trust_domain: str) -> str:
    return source_principal(rule.source, policy_namespace, trust_domain)


def source_principal(source: RuleSource | None, policy_namespace: str, trust_domain: str) -> str:
    """The SPIFFE ID a source names (ANY_SOURCE when unset, NO_SOURCE when half-written)."""
    if source is None or (source.type is None and source.spiffe is None and source.service_account is None):
        return ANY_SOURCE
    use_spiffe = source.type is SourceType.SPIFFE or (source.type is None and source.spiffe is not None)
    if use_spiffe:
        return source.spiffe or NO_SOURCE
    sa = source.service_account
    if sa is None:
        return NO_SOURCE
    return spiffe_id(trust_domain, sa.namespace or policy_namespace, sa.name, validate=False)


def permission_matches(auth: Authorization | None, request: Request) -> bool:
    if auth is None:
        return True
    if not _l7_matches(auth, request):
        return False
    if auth.type is AuthorizationType.CEL:
        return request.mcp_method == "tools/call" and cel.evaluate(auth.cel.expression, _cel_request(request))
    return _inline_mcp_matches(auth, request)


def _inline_mcp_matches(auth: Authorization, request: Request) -> bool:
    mcp = auth.mcp
    methods = (mcp.methods or []) if mcp else []
    match_base = mcp is not None and mcp.base_protocol is BaseProtocolOption.MATCH
    if not methods and not match_base:
        return True
    if match_base and request.is_base_protocol():
        return True
    return any(mcp_method_matches(m, request) for m in methods)


def mcp_method_matches(method: MCPMethod, request: Request) -> bool:
    if request.mcp_method is None:
        return False
    if method.name in MCP_CATEGORIES:
        name_ok = request.mcp_method.startswith(method.name + "/")
    else:
        name_ok = request.mcp_method == method.name
    return name_ok and (not method.params or request.tool in method.params)


def _l7_matches(auth: Authorization, request: Request) -> bool:
    headers = request.header_map
    checks = (
        not auth.methods or request.http_method in auth.methods,
        not auth.ports or request.port in auth.ports,
        not auth.hosts or any(_host_matches(h, request.host) for h in auth.hosts),
        not auth.paths or any(path_matches(p.type, p.value, request.path.split("?", 1)[0]) for p in auth.paths),
        all(value_matches(h.type, h.value, headers.get(h.name.lower())) for h in (auth.headers or [])),
    )
    return all(checks)


def _host_matches(pattern: str, host: str) -> bool:
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    host, pattern = host.lower(), pattern.lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _cel_request(request: Request) -> dict:
    return cel.request_attributes(path=request.path, method=request.http_method, host=request.host,
                                  headers=request.headers, tool_name=request.tool,
                                  now=datetime.now(UTC))
