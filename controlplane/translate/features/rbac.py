"""XAccessPolicy rules -> Envoy RBAC (proto3 JSON), the same semantics `explain` evaluates (graph/rules.py).

All accepted Allow policies of one target merge into one ALLOW RBAC (so they are OR-ed), one Envoy
policy per rule, named `<namespace>/<policy>#<rule>`, as upstream does but without upstream's clash
between same-named rules of different policies. The caller is the peer certificate's URI SAN
(`authenticated.principal_name`); MCP matchers read the MCP filter's dynamic metadata. The same rules
are installed as shadow rules so that the access log can name the rule that allowed a request.
Each level counts its decisions apart (`level_filter_config`): `rbac.gateway.denied`, `rbac.backend.denied`.

Every policy also requires that the MCP filter parsed the whole body (no `is_exceeding_limit` marker,
features/mcp.py): a decision is never taken on a prefix of the message the server will run. Where
the filter refuses such bodies itself (routes to XBackends) this never fires; it is the second lock.

Where policy sits: every listener's chain has one empty (allow-all) RBAC filter per level, `rbac.gateway`
and `rbac.backend`; the Allow policies of a Gateway (listener) arrive in each virtual host's
`typed_per_filter_config`, those of an XBackend in each weighted cluster's, so a policy change is a route
update and never drains a listener. A withheld policy (a proxy refused what it became) grants nothing;
a withheld ExternalAuth policy can no longer be delegated, so its level denies everything. The rules
translated here (`rule_policy`) also decide delegation for features/ext_authz.py.
"""

from __future__ import annotations

from controlplane.api.agentic import (
    MCP_CATEGORIES,
    Action,
    Authorization,
    AuthorizationType,
    BaseProtocolOption,
    MCPMethod,
)
from controlplane.graph.view import (
    ANY_SOURCE,
    BASE_EXACT_METHODS,
    BASE_PREFIX_METHODS,
    CLIENT_RESPONSE,
    NO_SOURCE,
    BackendRefView,
    ListenerView,
    PolicyAttachment,
    ResolvedRule,
)
from controlplane.translate.cel import compile_condition
from controlplane.translate.context import BACKEND, GATEWAY, PortContext, ProxyContext
from controlplane.translate.features.base import Feature
from controlplane.translate.features.mcp import EXCEEDING_LIMIT_KEY, GROUP_KEY, MCP_FILTER, NO_METHOD_GROUP

MCP_METADATA = MCP_FILTER
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
RBAC_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
ANY = {"any": True}
SHADOW_POLICY_ID_KEY = "shadow_effective_policy_id"  # Envoy writes <shadow_rules_stat_prefix> + this
DENY_ALL = {"@type": RBAC_PER_ROUTE_TYPE, "rbac": {"rules": {"action": "ALLOW", "policies": {}}}}


def rbac_filter(level: str) -> str:
    return f"envoy.filters.http.rbac.{level}"


class Rbac(Feature):
    """The Allow policies of each level, as RBAC per virtual host (Gateway) and per weighted cluster (XBackend)."""

    name = "rbac"

    def http_filters(self, port: PortContext) -> list[dict]:
        if not port.proxy.enforces_policy:
            return []
        return [{"name": rbac_filter(level), "typedConfig": level_filter_config(level)} for level in (GATEWAY, BACKEND)]

    def virtual_host_config(self, proxy: ProxyContext, listener: ListenerView) -> dict:
        return level_config(listener.policies, GATEWAY)

    def weighted_cluster_config(self, proxy: ProxyContext, backend: BackendRefView) -> dict:
        return level_config(backend.backend.policies, BACKEND)


def level_filter_config(level: str) -> dict:
    """The level's allow-all placeholder; its stats are `http.<role>_<port>.rbac.<level>.allowed|denied`
    and `.shadow_allowed|shadow_denied`, so both levels (and their `_extauth` marks) count apart, under the
    same names on every proxy. Envoy takes stat names from this filter-level config only; the per-route
    `shadowRulesStatPrefix` (`<level>_`) names the dynamic-metadata key the access log reads instead."""
    return {"@type": RBAC_TYPE, "rulesStatPrefix": f"{level}.", "shadowRulesStatPrefix": f"{level}."}


def level_config(policies: tuple[PolicyAttachment, ...], level: str) -> dict:
    """The level's RBAC filter config for one target's effective policies; {} where none applies."""
    external = next((p for p in policies if p.action is Action.EXTERNAL_AUTH), None)  # admission: one per target
    if external is not None and external.withheld:  # it cannot be delegated: deny everything it would see
        return {rbac_filter(level): DENY_ALL}
    rbac = level_rbac(policies, stat_prefix=f"{level}_")
    return {rbac_filter(level): rbac} if rbac is not None else {}


def level_rbac(views: tuple[PolicyAttachment, ...], *, stat_prefix: str) -> dict | None:
    """RBACPerRoute for one target's effective Allow policies; None where no Allow policy attaches."""
    allow_views = [view for view in views if view.action is Action.ALLOW]
    if not allow_views:
        return None
    rules = [rule for view in allow_views for rule in view.rules]
    if not rules:  # every Allow policy here is withheld: nothing is granted
        return DENY_ALL
    policies = {rule.ref: rule_policy(rule) for rule in rules}
    rbac = {"rules": {"action": "ALLOW", "policies": policies},
            "shadowRules": {"action": "ALLOW", "policies": policies},
            "shadowRulesStatPrefix": stat_prefix}
    return {"@type": RBAC_PER_ROUTE_TYPE, "rbac": rbac}


def rule_policy(rule: ResolvedRule) -> dict:
    policy = {"permissions": [_and([fully_parsed(), permission(rule.authorization)])],
              "principals": [principal(rule.principal)]}
    auth = rule.authorization
    if auth is not None and auth.type is AuthorizationType.CEL:
        policy["condition"] = compile_condition(auth.cel.expression).to_dict()
    return policy


def fully_parsed() -> dict:
    """Matches unless the MCP filter marked the body as parsed only in part (past its size limit)."""
    marked = {"filter": MCP_FILTER, "path": [{"key": EXCEEDING_LIMIT_KEY}], "value": {"presentMatch": True}}
    return {"notRule": {"sourcedMetadata": {"metadataMatcher": marked, "metadataSource": "DYNAMIC"}}}


def principal(value: str) -> dict:
    if value == ANY_SOURCE:
        return ANY
    if value == NO_SOURCE:
        return {"notId": ANY}
    return {"authenticated": {"principalName": {"exact": value}}}


def permission(auth: Authorization | None) -> dict:
    if auth is None:
        return ANY
    parts = [p for p in _l7_permissions(auth)]
    if auth.type is AuthorizationType.CEL:
        parts.append(_mcp_method_is("tools/call"))
    else:
        parts.append(_inline_mcp(auth))
    parts = [p for p in parts if p != ANY]
    if not parts:
        return ANY
    return parts[0] if len(parts) == 1 else {"andRules": {"rules": parts}}


def _inline_mcp(auth: Authorization) -> dict:
    mcp = auth.mcp
    methods = (mcp.methods or []) if mcp else []
    match_base = mcp is not None and mcp.base_protocol is BaseProtocolOption.MATCH
    alternatives = [_method_permission(m) for m in methods]
    if match_base:
        alternatives += _base_protocol()
    return _or(alternatives) if alternatives else ANY


def _method_permission(method: MCPMethod) -> dict:
    if method.name in MCP_CATEGORIES:
        name = _metadata(["method"], {"prefix": method.name + "/"})
    else:
        name = _mcp_method_is(method.name)
    if not method.params:
        return name
    tools = _or([_metadata(["params", "name"], {"exact": p}) for p in method.params])
    return {"andRules": {"rules": [name, tools]}}


def _base_protocol() -> list[dict]:
    exact = [_mcp_method_is(m) for m in BASE_EXACT_METHODS]
    prefix = [_metadata(["method"], {"prefix": p}) for p in BASE_PREFIX_METHODS]
    stream = _header(":method", {"exact": "GET"})
    close = {"andRules": {"rules": [_header(":method", {"exact": "DELETE"}),
                                    {"header": {"name": "mcp-session-id", "presentMatch": True}}]}}
    return exact + prefix + [client_response(), stream, close]


def client_response() -> dict:
    """A client's answer to a server request, and only that: the MCP filter also names a body with
    `result` and a `method` `__jsonrpc_response`, but its group then is the method's, never `unknown`."""
    return {"andRules": {"rules": [_mcp_method_is(CLIENT_RESPONSE),
                                   _metadata([GROUP_KEY], {"exact": NO_METHOD_GROUP})]}}


def _l7_permissions(auth: Authorization) -> list[dict]:
    parts = []
    if auth.methods:
        parts.append(_or([_header(":method", {"exact": m}) for m in auth.methods]))
    if auth.paths:
        parts.append(_or([_path(p.type, p.value) for p in auth.paths]))
    for header in auth.headers or []:
        match = {"exact": header.value} if header.type == "Exact" else _regex(header.value)
        parts.append(_header(header.name.lower(), match))
    if auth.hosts:
        parts.append(_or([_header(":authority", _host_match(h)) for h in auth.hosts]))
    if auth.ports:
        parts.append(_or([{"destinationPort": p} for p in auth.ports]))
    return parts


def _path(kind: str, value: str) -> dict:
    if kind == "Exact":
        return {"urlPath": {"path": {"exact": value}}}
    if kind == "RegularExpression":
        return {"urlPath": {"path": _regex(value)}}
    prefix = value.rstrip("/")
    if not prefix:
        return ANY
    return _or([{"urlPath": {"path": {"exact": prefix}}}, {"urlPath": {"path": {"prefix": prefix + "/"}}}])


def _host_match(host: str) -> dict:
    """Hosts match without regexes (a long hostname as a regex exceeds Envoy's RE2 program size); the
    listener strips the port from the authority before any filter sees it."""
    if host.startswith("*."):
        return {"suffix": host[1:], "ignoreCase": True}
    return {"exact": host, "ignoreCase": True}


def _mcp_method_is(name: str) -> dict:
    return _metadata(["method"], {"exact": name})


def _metadata(path: list[str], string_match: dict) -> dict:
    return {"sourcedMetadata": {"metadataMatcher": {"filter": MCP_METADATA, "path": [{"key": k} for k in path],
                                                    "value": {"stringMatch": string_match}},
                                "metadataSource": "DYNAMIC"}}


def _header(name: str, string_match: dict) -> dict:
    return {"header": {"name": name, "stringMatch": string_match}}


def _regex(pattern: str) -> dict:
    return {"safeRegex": {"regex": pattern}}


def _and(rules: list[dict]) -> dict:
    rules = [r for r in rules if r != ANY]
    if not rules:
        return ANY
    return rules[0] if len(rules) == 1 else {"andRules": {"rules": rules}}


def _or(rules: list[dict]) -> dict:
    if any(r == ANY for r in rules):
        return ANY
    return rules[0] if len(rules) == 1 else {"orRules": {"rules": rules}}
