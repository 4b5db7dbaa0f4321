"""Desired status of every object this control plane answers for, computed from the authorization graph.

Why pure functions: every replica computes the same statuses from the same graph, and only the elected
leader sends them (`kube/status_writer.py`); a status that depends on nothing but the graph, the
previous status and a clock is the same on every replica and is trivially testable.

What gets status (and nothing else, so that other controllers' objects are left alone):
- GatewayClasses whose controllerName is ours: `Accepted`;
- Gateways of such a class (the gateway node's `managed`): `Accepted`, `Programmed`, addresses, and per
  listener `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`, `supportedKinds`, `attachedRoutes`;
- HTTPRoutes, one `parents` entry per parentRef naming one of those Gateways: `Accepted`, `ResolvedRefs`;
- XAccessPolicies and RateLimitPolicies, one GEP-713 `ancestors` entry per targetRef.

Entries written by other controllers (route parents, policy ancestors with another `controllerName`) are
carried over from the previous status untouched. `lastTransitionTime` is kept from the previous status
while a condition's `status` does not change, so recomputing an unchanged world yields an identical
object and the writer sends nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from controlplane.api.agentic import GATEWAY_GROUP
from controlplane.api.base import ResourceKey
from controlplane.api.gateway import OUR_CONTROLLER, Gateway, HTTPRoute, Listener, ParentRef
from controlplane.graph import fragments
from controlplane.graph.guardrails import guardrail_node
from controlplane.graph.listeners import listener_conflicts
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.rate_limits import rate_limit_node
from controlplane.graph.routing import hostnames_intersect

__all__ = [
    "MAX_ANCESTORS",
    "StatusKey",
    "all_statuses",
    "gateway_status",
    "gatewayclass_status",
    "httproute_status",
    "managed_gateways",
    "normalize_addresses",
    "policy_status",
]

StatusKey = tuple[str, str, str]  # (kind, namespace, name): what StatusWriter.write takes
MAX_ANCESTORS = 16  # PolicyStatus.ancestors maxItems (GEP-713)
MAX_PARENTS = 32  # RouteStatus.parents maxItems
HTTPROUTE_KIND = {"group": GATEWAY_GROUP, "kind": "HTTPRoute"}


# --- conditions ------------------------------------------------------------------------------------------


def _timestamp(now: datetime | None) -> str:
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Conditions:
    """Builds metav1.Conditions, keeping lastTransitionTime from `previous` while status is unchanged."""

    def __init__(self, previous: Iterable[Mapping[str, Any]] | None, *, generation: int | None, now: str):
        self._previous = {c.get("type"): c for c in previous or () if isinstance(c, Mapping)}
        self._generation = generation
        self._now = now
        self.items: list[dict[str, Any]] = []

    def add(self, type_: str, ok: bool, reason: str, message: str) -> None:
        status = "True" if ok else "False"
        before = self._previous.get(type_)
        since = self._now
        if before is not None and before.get("status") == status and before.get("lastTransitionTime"):
            since = before["lastTransitionTime"]
        condition: dict[str, Any] = {"type": type_, "status": status, "reason": reason,
                                     "message": message[:32768]}
        if self._generation is not None:
            condition["observedGeneration"] = self._generation
        condition["lastTransitionTime"] = since
        self.items.append(condition)


def _generation_of(obj: Any, generation: int | None) -> int | None:
    if generation is not None:
        return generation
    return getattr(getattr(obj, "metadata", None), "generation", None)


def _previous_of(obj: Any, previous: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The explicit previous status, else the status the object carries as last read from its source."""
    if previous is not None:
        return previous
    return getattr(obj, "status", None) or {}


# --- policies --------------------------------------------------------------------------------------------


_POLICY_NODES = {"RateLimitPolicy": (rate_limit_node, "rate_limit_policy"),
                 "GuardrailPolicy": (guardrail_node, "guardrail_policy")}  # the others: XAccessPolicy's
WITHHELD = "Invalid"  # GEP-713's reason for a policy that is syntactically fine but cannot be programmed


def policy_status(graph: AuthorizationGraph, policy_key: ResourceKey, *, controller_name: str = OUR_CONTROLLER,
                  generation: int | None = None, previous: Mapping[str, Any] | None = None,
                  now: datetime | None = None) -> dict[str, Any] | None:
    """`{"ancestors": [...]}` for an XAccessPolicy, a RateLimitPolicy or a GuardrailPolicy: one entry per targetRef, `Accepted`.

    Reasons come from the graph's admission: `Accepted`, `LimitPerTargetExceeded`, `InvalidCEL`,
    `TargetNotFound`, `UnsupportedTargetKind`, `Conflicted` (a guardrail). None when the policy is not in the graph.
    """
    policy = graph.get(policy_key)
    node_id, node_type = _POLICY_NODES.get(policy_key.kind, (fragments.policy_node, "policy"))
    node = graph.node(node_id(policy_key))
    if policy is None or node is None or node.get("type") != node_type:
        return None
    generation = _generation_of(policy, generation)
    previous = _previous_of(policy, previous)
    stamp = _timestamp(now)
    old = [a for a in previous.get("ancestors") or [] if isinstance(a, Mapping)]
    ours: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for ref, (_, _, _, cond) in zip(policy.spec.target_refs, node["conditions"], strict=True):
        ancestor = {"group": ref.group, "kind": ref.kind, "name": ref.name, "namespace": policy.namespace}
        if ref.section_name:
            ancestor["sectionName"] = ref.section_name
        identity = _ref_identity(ancestor)
        if identity in seen:
            continue
        seen.add(identity)
        before = next((a for a in old if a.get("controllerName") == controller_name
                       and _ref_identity(a.get("ancestorRef") or {}) == identity), None)
        conditions = _Conditions((before or {}).get("conditions"), generation=generation, now=stamp)
        if node.get("withheld") and cond.accepted:
            conditions.add("Accepted", False, WITHHELD, f"a proxy refused the configuration built from this "
                           f"policy; its rules are withheld (fail closed) until it changes: {node['withheld']}")
        else:
            conditions.add("Accepted", cond.accepted, cond.reason, cond.message)
        ours.append({"ancestorRef": ancestor, "controllerName": controller_name, "conditions": conditions.items})
    foreign = [a for a in old if a.get("controllerName") != controller_name]
    return {"ancestors": (ours + foreign)[:MAX_ANCESTORS]}


def _ref_identity(ref: Mapping[str, Any]) -> tuple:
    return (ref.get("group") or "", ref.get("kind") or "", ref.get("namespace") or "", ref.get("name") or "",
            ref.get("sectionName") or "", ref.get("port") or 0)


# --- gateway classes -------------------------------------------------------------------------------------


def gatewayclass_status(graph: AuthorizationGraph, class_name: str, *, generation: int | None = None,
                        previous: Mapping[str, Any] | None = None,
                        now: datetime | None = None) -> dict[str, Any] | None:
    """`Accepted` for a GatewayClass whose controllerName is one of ours; None for any other class."""
    cls = graph.get(ResourceKey("GatewayClass", "", class_name))
    if cls is None or cls.spec.controller_name not in graph.controller_names:
        return None
    previous = _previous_of(cls, previous)
    conditions = _Conditions(previous.get("conditions"), generation=_generation_of(cls, generation),
                             now=_timestamp(now))
    params = (cls.spec.model_extra or {}).get("parametersRef")
    if params:
        conditions.add("Accepted", False, "InvalidParameters",
                       "parametersRef is not supported by this controller; remove it")
    else:
        conditions.add("Accepted", True, "Accepted", "GatewayClass is accepted by this controller")
    return {"conditions": conditions.items}


# --- gateways --------------------------------------------------------------------------------------------


def managed_gateways(graph: AuthorizationGraph) -> list[Gateway]:
    """The Gateways of a GatewayClass this control plane manages, sorted by key."""
    result = []
    for _, data in graph.graph.nodes(data=True):
        if data.get("type") == "gateway" and data.get("managed"):
            gw = graph.get(data["key"])
            if isinstance(gw, Gateway):
                result.append(gw)
    return sorted(result, key=lambda g: g.key)


def normalize_addresses(addresses: Iterable[str | Mapping[str, Any]] | None) -> list[dict[str, str]]:
    """Gateway `status.addresses` entries ({type, value}) from strings or dicts, deduplicated, in order."""
    result: list[dict[str, str]] = []
    for address in addresses or ():
        if isinstance(address, Mapping):
            value = str(address.get("value") or "")
            type_ = str(address.get("type") or _address_type(value))
        else:
            value, type_ = str(address), _address_type(str(address))
        entry = {"type": type_, "value": value}
        if value and entry not in result:
            result.append(entry)
    return result


def _address_type(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "Hostname"
    return "IPAddress"


def gateway_status(graph: AuthorizationGraph, gateway_key: ResourceKey, *,
                   addresses: Iterable[str | Mapping[str, Any]] | None = None, generation: int | None = None,
                   programmed: bool = False, previous: Mapping[str, Any] | None = None,
                   now: datetime | None = None) -> dict[str, Any] | None:
    """Status of a Gateway of our class; None for any other Gateway (another controller owns it).

    `programmed` says whether this Gateway's proxy infrastructure exists and its configuration was
    published to the xDS cache; `addresses` are where it can be reached (the proxy Service's).
    """
    gw = graph.get(gateway_key)
    node = graph.node(fragments.gateway_node(gateway_key))
    if not isinstance(gw, Gateway) or node is None or not node.get("managed"):
        return None
    generation = _generation_of(gw, generation)
    previous = _previous_of(gw, previous)
    stamp = _timestamp(now)

    old_listeners = {ls.get("name"): ls for ls in previous.get("listeners") or [] if isinstance(ls, Mapping)}
    conflicts = listener_conflicts(gw.spec.listeners)
    listeners, valid = [], 0
    for listener in gw.spec.listeners:
        entry, ok = _listener_status(graph, gw, listener, conflicts.get(listener.name), programmed=programmed,
                                     previous=old_listeners.get(listener.name), generation=generation, now=stamp)
        listeners.append(entry)
        valid += ok

    conditions = _Conditions(previous.get("conditions"), generation=generation, now=stamp)
    spec_extra = gw.spec.model_extra or {}
    infra_extra = (gw.spec.infrastructure.model_extra or {}) if gw.spec.infrastructure else {}
    if infra_extra.get("parametersRef"):
        accepted = False
        conditions.add("Accepted", False, "InvalidParameters",
                       "spec.infrastructure.parametersRef is not supported by this controller")
    elif spec_extra.get("addresses"):
        accepted = False
        conditions.add("Accepted", False, "UnsupportedAddress",
                       "spec.addresses is not supported: the address comes from the proxy's Service")
    elif valid == 0:
        accepted = False
        conditions.add("Accepted", False, "ListenersNotValid", "no listener is valid")
    elif valid < len(gw.spec.listeners):
        accepted = True
        conditions.add("Accepted", True, "ListenersNotValid",
                       f"{len(gw.spec.listeners) - valid} of {len(gw.spec.listeners)} listeners are not valid")
    else:
        accepted = True
        conditions.add("Accepted", True, "Accepted", "Gateway is accepted")
    if not accepted:
        conditions.add("Programmed", False, "Invalid", "Gateway is not accepted")
    elif not programmed:
        conditions.add("Programmed", False, "Pending", "waiting for the proxy and its configuration")
    else:
        conditions.add("Programmed", True, "Programmed", "proxy configuration published")
    status: dict[str, Any] = {"conditions": conditions.items, "listeners": listeners}
    status["addresses"] = normalize_addresses(addresses)
    return status


def _attached_routes(graph: AuthorizationGraph, gateway_key: ResourceKey, listener: str) -> int:
    lid = fragments.listener_node(gateway_key, listener)
    if lid not in graph.graph:
        return 0
    routes = set()
    for _, target, data in graph.graph.out_edges(lid, data=True):
        if data.get("rel") == "route":
            route = (graph.node(target) or {}).get("route")
            if route is not None:
                routes.add(route)
    return len(routes)


def _listener_status(graph: AuthorizationGraph, gw: Gateway, listener: Listener,
                     conflict: tuple[str, str] | None, *, programmed: bool, previous: Mapping[str, Any] | None,
                     generation: int | None, now: str) -> tuple[dict[str, Any], bool]:
    conditions = _Conditions((previous or {}).get("conditions"), generation=generation, now=now)
    supported_protocol = listener.protocol in fragments.ROUTE_PROTOCOLS
    kinds = listener.allowed_routes.kinds
    invalid_kinds = [k for k in kinds if (k.group, k.kind) != (GATEWAY_GROUP, "HTTPRoute")]
    supported = [dict(HTTPROUTE_KIND)] if supported_protocol and (
        not kinds or len(invalid_kinds) < len(kinds)) else []

    if supported_protocol:
        conditions.add("Accepted", True, "Accepted", "listener is accepted")
    else:
        conditions.add("Accepted", False, "UnsupportedProtocol",
                       f"protocol {listener.protocol} is not supported; use HTTP or HTTPS")

    ref_problem = _certificate_ref_problem(graph, gw, listener)
    if invalid_kinds:
        names = ", ".join(f"{k.group}/{k.kind}" for k in invalid_kinds)
        conditions.add("ResolvedRefs", False, "InvalidRouteKinds", f"route kinds not supported: {names}")
    elif ref_problem is not None:
        conditions.add("ResolvedRefs", False, *ref_problem)
    else:
        conditions.add("ResolvedRefs", True, "ResolvedRefs", "all references are resolved")

    if conflict is not None:
        conditions.add("Conflicted", True, *conflict)
    else:
        conditions.add("Conflicted", False, "NoConflicts", "no conflicts")

    valid = supported_protocol and not invalid_kinds and ref_problem is None and conflict is None
    if not valid:
        conditions.add("Programmed", False, "Invalid", "listener is not valid")
    elif not programmed:
        conditions.add("Programmed", False, "Pending", "waiting for the proxy and its configuration")
    else:
        conditions.add("Programmed", True, "Programmed", "listener is programmed")
    entry = {"name": listener.name, "supportedKinds": supported,
             "attachedRoutes": _attached_routes(graph, gw.key, listener.name), "conditions": conditions.items}
    return entry, supported_protocol and conflict is None


def _certificate_ref_problem(graph: AuthorizationGraph, gw: Gateway, listener: Listener) -> tuple[str, str] | None:
    if listener.tls is None:
        return None
    for ref in listener.tls.certificate_refs:
        if (ref.group, ref.kind) != ("", "Secret"):
            return "InvalidCertificateRef", f"certificateRef {ref.group}/{ref.kind} {ref.name} is not a Secret"
        namespace = ref.namespace or gw.namespace
        if namespace != gw.namespace and not any(
                grant.namespace == namespace and grant.permits(
                    from_group=GATEWAY_GROUP, from_kind="Gateway", from_namespace=gw.namespace,
                    to_group="", to_kind="Secret", to_name=ref.name)
                for grant in graph.of_kind("ReferenceGrant")):
            return "RefNotPermitted", f"no ReferenceGrant allows the reference to Secret {namespace}/{ref.name}"
    return None


# --- routes ----------------------------------------------------------------------------------------------


def _parent_ref_dict(ref: ParentRef) -> dict[str, Any]:
    out: dict[str, Any] = {"group": ref.group, "kind": ref.kind, "name": ref.name}
    if ref.namespace:
        out["namespace"] = ref.namespace
    if ref.section_name:
        out["sectionName"] = ref.section_name
    if ref.port:
        out["port"] = ref.port
    return out


def _our_gateway(graph: AuthorizationGraph, route: HTTPRoute, ref: ParentRef) -> Gateway | None:
    if (ref.group, ref.kind) != (GATEWAY_GROUP, "Gateway"):
        return None
    key = ResourceKey("Gateway", ref.namespace or route.namespace, ref.name)
    node = graph.node(fragments.gateway_node(key))
    gw = graph.get(key)
    if isinstance(gw, Gateway) and node is not None and node.get("managed"):
        return gw
    return None


def _unresolved_reason(message: str) -> str:
    if message.endswith("unsupported backend kind"):
        return "InvalidKind"
    if "no ReferenceGrant" in message:
        return "RefNotPermitted"
    return "BackendNotFound"


def httproute_status(graph: AuthorizationGraph, route_key: ResourceKey, *,
                     controller_name: str = OUR_CONTROLLER, generation: int | None = None,
                     previous: Mapping[str, Any] | None = None,
                     now: datetime | None = None) -> dict[str, Any] | None:
    """`{"parents": [...]}`: one entry per parentRef naming a Gateway of our class; None if there is none."""
    route = graph.get(route_key)
    if not isinstance(route, HTTPRoute):
        return None
    generation = _generation_of(route, generation)
    previous = _previous_of(route, previous)
    stamp = _timestamp(now)
    old = [p for p in previous.get("parents") or [] if isinstance(p, Mapping)]

    rule_nodes = [fragments.route_node(route_key, i) for i in range(len(route.spec.rules))]
    unresolved = [m for rid in rule_nodes for m in (graph.node(rid) or {}).get("unresolved", ())]
    attached_listeners = {src for rid in rule_nodes if rid in graph.graph
                          for src, _, data in graph.graph.in_edges(rid, data=True) if data.get("rel") == "route"}

    ours: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for ref in route.spec.parent_refs:
        gw = _our_gateway(graph, route, ref)
        if gw is None:
            continue
        parent = _parent_ref_dict(ref)
        identity = _ref_identity({**parent, "namespace": ref.namespace or route.namespace})
        if identity in seen:
            continue
        seen.add(identity)
        before = next((p for p in old if p.get("controllerName") == controller_name and _ref_identity(
            {**(p.get("parentRef") or {}),
             "namespace": (p.get("parentRef") or {}).get("namespace") or route.namespace}) == identity), None)
        conditions = _Conditions((before or {}).get("conditions"), generation=generation, now=stamp)
        conditions.add("Accepted", *_acceptance(graph, gw, route, ref, attached_listeners))
        if unresolved:
            conditions.add("ResolvedRefs", False, _unresolved_reason(unresolved[0]), "; ".join(unresolved))
        else:
            conditions.add("ResolvedRefs", True, "ResolvedRefs", "all backend references are resolved")
        ours.append({"parentRef": parent, "controllerName": controller_name, "conditions": conditions.items})
    if not ours:
        return None
    foreign = [p for p in old if p.get("controllerName") != controller_name]
    return {"parents": (ours + foreign)[:MAX_PARENTS]}


def _acceptance(graph: AuthorizationGraph, gw: Gateway, route: HTTPRoute, ref: ParentRef,
                attached_listeners: set[str]) -> tuple[bool, str, str]:
    candidates = [lst for lst in gw.spec.listeners
                  if ref.section_name in (None, lst.name) and ref.port in (None, lst.port)]
    if not candidates:
        what = f"sectionName {ref.section_name}" if ref.section_name else f"port {ref.port}"
        return False, "NoMatchingParent", f"Gateway {gw.key.ref} has no listener with {what}"
    if any(fragments.listener_node(gw.key, lst.name) in attached_listeners for lst in candidates):
        return True, "Accepted", "route is accepted"
    admitting = [lst for lst in candidates if fragments._listener_admits(gw, lst, route, graph)]
    if not admitting:
        return False, "NotAllowedByListeners", (
            f"no listener of Gateway {gw.key.ref} allows HTTPRoutes from namespace {route.namespace}")
    if all(hostnames_intersect(lst.hostname, route.spec.hostnames) is None for lst in admitting):
        return False, "NoMatchingListenerHostname", "no listener hostname matches the route's hostnames"
    if not route.spec.rules:
        return True, "Accepted", "route is accepted (it has no rules)"
    return False, "NotAllowedByListeners", "route is not attached to any listener"


# --- everything ------------------------------------------------------------------------------------------


def all_statuses(graph: AuthorizationGraph, *, controller_name: str = OUR_CONTROLLER,
                 addresses: Mapping[ResourceKey, Iterable[str | Mapping[str, Any]]] | None = None,
                 programmed: Collection[ResourceKey] | Callable[[ResourceKey], bool] = (),
                 previous: Mapping[StatusKey, Mapping[str, Any]] | None = None,
                 now: datetime | None = None) -> dict[StatusKey, dict[str, Any]]:
    """Desired status of every object this control plane answers for, keyed by (kind, namespace, name).

    `addresses` maps a Gateway key to its addresses; `programmed` is the set of Gateway keys whose
    configuration was published (or a predicate); `previous` overrides the status each object carries
    (default: the status as last read from the source), for stable lastTransitionTimes.
    """
    addresses = addresses or {}
    previous = previous or {}
    is_programmed = programmed if callable(programmed) else (lambda key, _s=set(programmed): key in _s)
    out: dict[StatusKey, dict[str, Any]] = {}

    def prev(key: ResourceKey) -> Mapping[str, Any] | None:
        return previous.get((key.kind, key.namespace, key.name))

    for cls in graph.of_kind("GatewayClass"):
        status = gatewayclass_status(graph, cls.name, previous=prev(cls.key), now=now)
        if status is not None:
            out[("GatewayClass", "", cls.name)] = status
    for gw in managed_gateways(graph):
        status = gateway_status(graph, gw.key, addresses=addresses.get(gw.key), programmed=is_programmed(gw.key),
                                previous=prev(gw.key), now=now)
        if status is not None:
            out[("Gateway", gw.namespace, gw.name)] = status
    for route in graph.of_kind("HTTPRoute"):
        status = httproute_status(graph, route.key, controller_name=controller_name, previous=prev(route.key),
                                  now=now)
        if status is not None:
            out[("HTTPRoute", route.namespace, route.name)] = status
    for policy in (graph.of_kind("XAccessPolicy") + graph.of_kind("RateLimitPolicy")
                   + graph.of_kind("GuardrailPolicy")):
        status = policy_status(graph, policy.key, controller_name=controller_name, previous=prev(policy.key),
                               now=now)
        if status is not None:
            out[(policy.key.kind, policy.namespace, policy.name)] = status
    return out

