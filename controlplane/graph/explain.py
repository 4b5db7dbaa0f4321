"""Answer "may this caller make this request, and which rule says so?" from the graph alone.

The order is upstream's (kube-agentic-networking proposal 0059 and the translator's filter chain):
route the request through the Gateway, then the Gateway-level policies, then the policies of the
backend the route sends it to; both levels must allow. At each level an ExternalAuth policy, if a
rule of it matches, hands the request to the external authorizer (which `explain` cannot consult, so
the answer names it as a condition), and the Allow policies of the level are OR-ed: one matching rule
of any of them allows. A level with no Allow policy allows; traffic with no policy on its path is
allowed, as upstream does. An allowed `tools/call` also names the RateLimitPolicy limits it takes a
token from (`rate_limits`): which limit applies, not whether its bucket has tokens left (only Envoy knows).
An allowed call whose method a GuardrailPolicy judges names that guardrail per level (`guardrails`): the
policy, its service, what it inspects and how it fails; whether it would block is the service's to say.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from controlplane.api.agentic import Action
from controlplane.api.base import ResourceKey
from controlplane.api.gateway import Gateway
from controlplane.graph import fragments
from controlplane.graph.admission import seniority
from controlplane.graph.guardrails import guardrail_on
from controlplane.graph.listeners import listener_conflicts
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.rate_limits import limits_on
from controlplane.graph.request import Request
from controlplane.graph.routing import host_matches, request_matches, route_order
from controlplane.graph.rules import PolicyView

ALLOW, DENY = "allow", "deny"


@dataclass
class LevelResult:
    level: str  # "gateway" or "backend"
    target: str
    decision: str
    reason: str
    matched_rules: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    external_auth: list[str] = field(default_factory=list)
    rate_limits: list[str] = field(default_factory=list)  # the limits an allowed call takes a token from
    guardrail: GuardrailInForce | None = None  # the guardrail that judges an allowed call's bodies here


@dataclass
class GuardrailInForce:
    """The GuardrailPolicy of one level, as an operator reads it."""

    policy: str  # NS/NAME
    service: str  # `address HOST:PORT` or `Service NS/NAME:PORT`
    inspect: str  # Requests | Responses | Both
    methods: list[str]
    failure_mode: str  # Closed | Open
    timeout: str

    def describe(self) -> str:
        return (f"{self.policy} -> {self.service} (inspect {self.inspect}, failure mode {self.failure_mode}, "
                f"timeout {self.timeout})")


@dataclass
class Decision:
    decision: str
    reason: str
    source: str | None
    route: str | None = None
    backend: str | None = None
    levels: list[LevelResult] = field(default_factory=list)

    @property
    def matched_rules(self) -> list[str]:
        return [r for level in self.levels for r in level.matched_rules]

    @property
    def external_auth(self) -> list[str]:
        return [e for level in self.levels for e in level.external_auth]

    @property
    def rate_limits(self) -> list[str]:
        return [limit for level in self.levels for limit in level.rate_limits] if self.decision == ALLOW else []

    @property
    def guardrails(self) -> list[GuardrailInForce]:
        """Gateway first, then backend: the order Envoy runs them in (a refused call is never inspected)."""
        if self.decision != ALLOW:
            return []
        return [level.guardrail for level in self.levels if level.guardrail is not None]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["matched_rules"] = self.matched_rules
        data["deciding_rules"] = self.matched_rules if self.decision == ALLOW else []
        data["requires_external_auth"] = self.external_auth
        data["rate_limits"] = self.rate_limits
        data["guardrails"] = [asdict(g) for g in self.guardrails]
        for level in data["levels"]:
            if self.decision != ALLOW:
                level["guardrail"] = None
        return data


def explain_gateway(graph: AuthorizationGraph, gateway: ResourceKey, request: Request) -> Decision:
    gid = fragments.gateway_node(gateway)
    node = graph.node(gid)
    if node is None or node.get("missing"):
        return Decision(DENY, f"Gateway {gateway.ref} does not exist", request.source)
    if not node["managed"]:
        return Decision(DENY, f"Gateway {gateway.ref} is not of a GatewayClass this control plane manages",
                        request.source)
    listeners = [lid for _, lid, d in graph.graph.out_edges(gid, data=True) if d["rel"] == "listener"
                 and graph.graph.nodes[lid]["port"] == request.port]
    if not listeners:
        return Decision(DENY, f"Gateway {gateway.ref} has no listener on port {request.port}", request.source)
    conflicts = _conflicts(graph, gateway)
    listeners = [lid for lid in listeners if graph.graph.nodes[lid]["name"] not in conflicts]
    if not listeners:
        return Decision(DENY, f"every listener of Gateway {gateway.ref} on port {request.port} is Conflicted "
                        "and not programmed", request.source)
    chosen = _select_route(graph, listeners, request)
    if chosen is None:
        return Decision(DENY, "no HTTPRoute rule matches the request (Envoy answers 404)", request.source)
    listener_id, route_id = chosen
    route = graph.graph.nodes[route_id]
    route_ref = f"{route['route'].ref} rule {route['rule']}"
    gateway_level = _evaluate_level(graph, "gateway", gid, request, graph.graph.nodes[listener_id]["name"])
    levels = [gateway_level]
    if route["unresolved"] and not _backends(graph, route_id):
        return Decision(DENY, f"the route's backends do not resolve: {'; '.join(route['unresolved'])}",
                        request.source, route=route_ref, levels=levels)
    decision = Decision(ALLOW, "", request.source, route=route_ref, levels=levels)
    for backend_id in _backends(graph, route_id):
        backend = graph.graph.nodes[backend_id]
        decision.backend = backend_id.removeprefix("backend:")
        if backend.get("kind") == "XBackend":
            levels.append(_evaluate_level(graph, "backend", backend_id, request, None))
    return _combine(decision)


def _conflicts(graph: AuthorizationGraph, gateway: ResourceKey) -> dict[str, tuple[str, str]]:
    resource = graph.get(gateway)
    return listener_conflicts(resource.spec.listeners) if isinstance(resource, Gateway) else {}


def explain_backend(graph: AuthorizationGraph, backend: ResourceKey, request: Request) -> Decision:
    bid = fragments.backend_node(backend)
    node = graph.node(bid)
    if node is None or node.get("missing"):
        return Decision(DENY, f"{backend} does not exist", request.source)
    decision = Decision(ALLOW, "", request.source, backend=bid.removeprefix("backend:"),
                        levels=[_evaluate_level(graph, "backend", bid, request, None)])
    return _combine(decision)


def _combine(decision: Decision) -> Decision:
    denied = [lvl for lvl in decision.levels if lvl.decision == DENY]
    if denied:
        decision.decision = DENY
        decision.reason = "; ".join(f"{lvl.level} {lvl.target}: {lvl.reason}" for lvl in denied)
    else:
        decision.reason = "; ".join(f"{lvl.level} {lvl.target}: {lvl.reason}" for lvl in decision.levels) \
            or "no policy applies"
    return decision


def _select_route(graph: AuthorizationGraph, listeners: list[str], request: Request):
    candidates = []
    for lid in listeners:
        for _, rid, data in graph.graph.out_edges(lid, data=True):
            if data["rel"] != "route" or not host_matches(data["hostnames"], request.host):
                continue
            route = graph.graph.nodes[rid]
            for m_index, match in enumerate(route["matches"]):
                if request_matches(match, path=request.path, method=request.http_method, headers=request.headers):
                    candidates.append((route_order(route, match, m_index), lid, rid))
    if not candidates:
        return None
    _, lid, rid = min(candidates, key=lambda c: c[0])
    return lid, rid


def _backends(graph: AuthorizationGraph, route_id: str) -> list[str]:
    return sorted(v for _, v, d in graph.graph.out_edges(route_id, data=True) if d["rel"] == "backend")


def policies_on(graph: AuthorizationGraph, target_id: str, listener: str | None) -> list[PolicyView]:
    """Effective policies attached to a target, oldest first (a Gateway policy may name one listener)."""
    views = []
    for pid, _, data in graph.graph.in_edges(target_id, data=True):
        node = graph.graph.nodes[pid]
        if data["rel"] != "attached" or not node.get("effective"):
            continue
        view: PolicyView = node["view"]
        if listener is not None and view.section_names and listener not in view.section_names:
            continue
        views.append(view)
    unique = {v.key: v for v in views}
    return sorted(unique.values(), key=lambda v: _seniority(graph, v.key))


def _guardrail_in_force(graph: AuthorizationGraph, target_id: str, listener: str | None,
                        request: Request) -> GuardrailInForce | None:
    """The level's guardrail, if it judges this request's MCP method (a non-MCP request: never)."""
    guardrail = guardrail_on(graph.graph, target_id, listener)
    policy = graph.get(guardrail.policy) if guardrail is not None else None
    if policy is None or request.mcp_method is None:
        return None
    if "*" not in guardrail.methods and request.mcp_method not in guardrail.methods:
        return None
    service, ref = policy.spec.service, policy.spec.service.backend_ref
    where = (f"address {service.address}" if service.address is not None
             else f"Service {ref.namespace or policy.namespace}/{ref.name}:{ref.port}")
    return GuardrailInForce(policy.key.ref, where, policy.spec.inspect.value, list(guardrail.methods),
                            policy.spec.failure_mode.value, service.timeout)


def _seniority(graph: AuthorizationGraph, key: ResourceKey):
    return seniority(graph.get(key))


def _evaluate_level(graph: AuthorizationGraph, level: str, target_id: str, request: Request,
                    listener: str | None) -> LevelResult:
    target = target_id.split(":", 1)[1]
    views = policies_on(graph, target_id, listener)
    result = LevelResult(level, target, ALLOW, "", policies=[f"{v.key.ref}" for v in views],
                         rate_limits=[lim.describe() for lim in limits_on(graph.graph, target_id, listener)
                                      if request.mcp_method == "tools/call" and lim.applies(request.source,
                                                                                              request.tool)],
                         guardrail=_guardrail_in_force(graph, target_id, listener, request))
    for view in (v for v in views if v.action is Action.EXTERNAL_AUTH):
        if any(rule.matches(request) for rule in view.rules):
            ref = view.external_auth.backend_ref
            result.external_auth.append(f"{view.key.ref} -> {ref.kind} {ref.namespace or view.key.namespace}/"
                                        f"{ref.name}:{ref.port}")
    withheld = [v for v in views if v.action is Action.EXTERNAL_AUTH and v.withheld]
    if withheld:
        result.decision = DENY
        result.reason = f"{withheld[0].key.ref} is withheld ({withheld[0].withheld}): all traffic is denied"
        return result
    allow_views = [v for v in views if v.action is Action.ALLOW]
    if not allow_views:
        result.reason = "no Allow policy attached" if not result.external_auth else "delegated to external auth"
        return result
    result.matched_rules = [rule.ref for v in allow_views for rule in v.rules if rule.matches(request)]
    if result.matched_rules:
        result.reason = f"allowed by {', '.join(result.matched_rules)}"
    else:
        result.decision = DENY
        result.reason = (f"no rule of {', '.join(v.key.ref for v in allow_views)} matches "
                         f"(default deny where a policy attaches)")
    return result
