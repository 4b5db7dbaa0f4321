"""The pieces of the authorization graph, each computed from one resource and what it reads.

A fragment is a pure function of the resources it reads through a `Reader`; the reader records those
reads, so that a later change re-computes exactly the fragments that looked at what changed (see
model.py). Node ids are strings such as `gateway:ns/name`, `listener:ns/name/section`,
`route:ns/name/0`, `backend:XBackend:ns/name`, `backend:Service:ns/name`, `policy:ns/name`,
`identity:spiffe://...` and `workload:ns/serviceaccount` (a ServiceAccount's pods: what a sidecar serves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from controlplane.api.agentic import GATEWAY_GROUP, GROUP, Action, XAccessPolicy, XBackend
from controlplane.api.base import Resource, ResourceKey
from controlplane.api.core import Namespace, Pod, Service
from controlplane.api.gateway import Gateway, HTTPRoute, Listener, ParentRef, ReferenceGrant
from controlplane.graph.admission import TARGET_NOT_FOUND, UNSUPPORTED_TARGET, Condition
from controlplane.graph.routing import hostnames_intersect
from controlplane.graph.rules import ANY_SOURCE, PolicyView, resolve_rules

ROUTE_PROTOCOLS = ("HTTP", "HTTPS")
SUPPORTED_TARGETS = {(GATEWAY_GROUP, "Gateway"): "Gateway", (GROUP, "XBackend"): "XBackend"}


def gateway_node(key: ResourceKey) -> str:
    return f"gateway:{key.ref}"


def listener_node(key: ResourceKey, listener: str) -> str:
    return f"listener:{key.ref}/{listener}"


def route_node(key: ResourceKey, rule_index: int) -> str:
    return f"route:{key.ref}/{rule_index}"


def backend_node(key: ResourceKey) -> str:
    return f"backend:{key.kind}:{key.ref}"


def policy_node(key: ResourceKey) -> str:
    return f"policy:{key.ref}"


def identity_node(principal: str) -> str:
    return f"identity:{principal}"


def workload_node(key: ResourceKey) -> str:
    """The node of a workload, keyed by its ServiceAccount."""
    return f"workload:{key.ref}"


class Reader(Protocol):
    trust_domain: str
    controller_names: frozenset[str]

    def get(self, key: ResourceKey) -> Resource | None: ...
    def index(self, name: tuple) -> list[Resource]: ...
    def admission(self, target: ResourceKey) -> dict[ResourceKey, Condition]: ...
    def withheld(self, key: ResourceKey) -> str | None: ...


@dataclass
class Output:
    nodes: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: referenced, owned elsewhere
    edges: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def edge(self, u: str, v: str, **attrs: Any) -> None:
        self.nodes.setdefault(u, None)
        self.nodes.setdefault(v, None)
        self.edges.append((u, v, attrs))


# --- gateways ------------------------------------------------------------------------------------------


def is_managed(gateway: Gateway, reader: Reader) -> bool:
    cls = reader.get(ResourceKey("GatewayClass", "", gateway.spec.gateway_class_name))
    return cls is not None and cls.spec.controller_name in reader.controller_names


def gateway_fragment(gw: Gateway, reader: Reader) -> Output:
    out = Output()
    gid = gateway_node(gw.key)
    out.nodes[gid] = {"type": "gateway", "key": gw.key, "class": gw.spec.gateway_class_name,
                      "managed": is_managed(gw, reader)}
    for listener in gw.spec.listeners:
        lid = listener_node(gw.key, listener.name)
        out.nodes[lid] = {"type": "listener", "gateway": gw.key, "name": listener.name, "port": listener.port,
                          "protocol": listener.protocol, "hostname": listener.hostname, "tls": listener.tls}
        out.edge(gid, lid, rel="listener")
    return out


# --- routes ---------------------------------------------------------------------------------------------


def route_fragment(route: HTTPRoute, reader: Reader) -> Output:
    out = Output()
    listeners = [(gw, lst, hosts) for ref in route.spec.parent_refs
                 for gw, lst, hosts in _attached_listeners(route, ref, reader)]
    for index, rule in enumerate(route.spec.rules):
        rid = route_node(route.key, index)
        backends, unresolved = _resolve_backends(route, rule.backend_refs, reader)
        out.nodes[rid] = {"type": "route", "route": route.key, "rule": index, "rule_name": rule.name,
                          "matches": tuple(rule.matches), "filters": tuple(rule.filters),
                          "created": route.metadata.creation_timestamp, "unresolved": tuple(unresolved)}
        for gw, listener, hostnames in listeners:
            out.edge(listener_node(gw.key, listener.name), rid, rel="route", hostnames=hostnames)
        for backend, port, weight in backends:
            out.edge(rid, backend_node(backend.key), rel="backend", port=port, weight=weight)
    return out


def _attached_listeners(route: HTTPRoute, ref: ParentRef, reader: Reader):
    if ref.group != GATEWAY_GROUP or ref.kind != "Gateway":
        return
    gw = reader.get(ResourceKey("Gateway", ref.namespace or route.namespace, ref.name))
    if gw is None or not is_managed(gw, reader):
        return
    for listener in gw.spec.listeners:
        if ref.section_name not in (None, listener.name) or ref.port not in (None, listener.port):
            continue
        if not _listener_admits(gw, listener, route, reader):
            continue
        hostnames = hostnames_intersect(listener.hostname, route.spec.hostnames)
        if hostnames is not None:
            yield gw, listener, hostnames


def _listener_admits(gw: Gateway, listener: Listener, route: HTTPRoute, reader: Reader) -> bool:
    if listener.protocol not in ROUTE_PROTOCOLS:
        return False
    kinds = listener.allowed_routes.kinds
    if kinds and not any(k.kind == "HTTPRoute" and k.group == GATEWAY_GROUP for k in kinds):
        return False
    namespaces = listener.allowed_routes.namespaces
    match namespaces.from_:
        case "All":
            return True
        case "Same":
            return route.namespace == gw.namespace
        case "Selector":
            return namespaces.selector is not None and namespaces.selector.matches(
                namespace_labels(route.namespace, reader))
        case _:
            return False


def namespace_labels(namespace: str, reader: Reader) -> dict[str, str]:
    ns = reader.get(ResourceKey("Namespace", "", namespace))
    labels = dict(ns.metadata.labels) if isinstance(ns, Namespace) else {}
    labels.setdefault("kubernetes.io/metadata.name", namespace)  # set by the API server on every namespace
    return labels


def _resolve_backends(route: HTTPRoute, refs, reader: Reader):
    resolved, unresolved = [], []
    for ref in refs:
        kind = "XBackend" if (ref.group, ref.kind) == (GROUP, "XBackend") else ref.kind
        if (ref.group, kind) not in (("", "Service"), (GROUP, "XBackend")):
            unresolved.append(f"{ref.kind} {ref.name}: unsupported backend kind")
            continue
        namespace = ref.namespace or route.namespace
        if namespace != route.namespace and not _granted(route, ref.group, kind, namespace, ref.name, reader):
            unresolved.append(f"{kind} {namespace}/{ref.name}: no ReferenceGrant allows this reference")
            continue
        backend = reader.get(ResourceKey(kind, namespace, ref.name))
        if backend is None:
            unresolved.append(f"{kind} {namespace}/{ref.name}: not found")
            continue
        resolved.append((backend, ref.port, ref.weight))
    return resolved, unresolved


def _granted(route: HTTPRoute, group: str, kind: str, namespace: str, name: str, reader: Reader) -> bool:
    grants: list[ReferenceGrant] = reader.index(("grants-in", namespace))
    return any(g.permits(from_group=GATEWAY_GROUP, from_kind="HTTPRoute", from_namespace=route.namespace,
                         to_group=group, to_kind=kind, to_name=name) for g in grants)


# --- backends -------------------------------------------------------------------------------------------


def xbackend_fragment(backend: XBackend, reader: Reader) -> Output:
    mcp = backend.spec.mcp
    endpoints = ()
    if mcp.service_name is not None:
        endpoints = _ready_endpoints(backend.namespace, mcp.service_name, mcp.port, reader)
    out = Output()
    bid = backend_node(backend.key)
    out.nodes[bid] = {
        "type": "backend", "kind": "XBackend", "key": backend.key, "service_name": mcp.service_name,
        "hostname": mcp.hostname, "port": mcp.port, "path": mcp.path, "endpoints": endpoints}
    service = ResourceKey("Service", backend.namespace, mcp.service_name) if mcp.service_name else None
    if service is not None and reader.get(service) is not None:
        out.edge(bid, backend_node(service), rel="service", port=mcp.port)  # the sidecars serving it enforce it
    return out


def service_fragment(service: Service, reader: Reader) -> Output:
    ports = tuple(p.port for p in service.spec.ports)
    endpoints = {port: _ready_endpoints(service.namespace, service.name, port, reader) for port in ports}
    out = Output()
    sid = backend_node(service.key)
    out.nodes[sid] = {"type": "backend", "kind": "Service", "key": service.key,
                      "ports": ports, "endpoints": tuple(sorted(endpoints.items()))}
    for account in _workloads(service, reader):
        wid = workload_node(account)
        out.nodes[wid] = {"type": "workload", "key": account}
        out.edge(wid, sid, rel="serves")
    return out


def _workloads(service: Service, reader: Reader) -> list[ResourceKey]:
    """The ServiceAccounts whose pods back the Service: EndpointSlice endpoint -> targetRef Pod -> its
    serviceAccountName. An endpoint without a Pod behind it (or a Pod not known yet) names no workload."""
    found = set()
    for eps in reader.index(("slices-for", service.namespace, service.name)):
        for endpoint in eps.endpoints:
            ref = endpoint.pod(eps.namespace)
            pod = reader.get(ResourceKey("Pod", *ref)) if ref else None
            if isinstance(pod, Pod):
                found.add(ResourceKey("ServiceAccount", pod.namespace, pod.spec.service_account_name))
    return sorted(found)


def _ready_endpoints(namespace: str, service_name: str, service_port: int, reader: Reader) -> tuple:
    """Ready (address, port) pairs from the Service's EndpointSlices, resolving the port by name."""
    service = reader.get(ResourceKey("Service", namespace, service_name))
    port_name = None
    if isinstance(service, Service) and (sp := service.port(service_port)) is not None:
        port_name = sp.name
    found = set()
    for eps in reader.index(("slices-for", namespace, service_name)):
        target = next((p.port for p in eps.ports or [] if p.name == port_name and p.port), None)
        for endpoint in eps.endpoints:
            if endpoint.is_ready:
                found.update((address, target or service_port) for address in endpoint.addresses)
    return tuple(sorted(found))


# --- policies -------------------------------------------------------------------------------------------


def target_key(policy: XAccessPolicy, ref) -> ResourceKey | None:
    kind = SUPPORTED_TARGETS.get((ref.group, ref.kind))
    return ResourceKey(kind, policy.namespace, ref.name) if kind else None


def policy_conditions(policy: XAccessPolicy, reader: Reader) -> list[tuple[Any, ResourceKey | None, Condition]]:
    """(targetRef, target key, condition) for every targetRef of the policy."""
    result = []
    for ref in policy.spec.target_refs:
        key, problem = target_problem(policy, ref, reader)
        result.append((ref, key, problem or reader.admission(key)[policy.key]))
    return result


def target_problem(policy: Resource, ref: Any, reader: Reader) -> tuple[ResourceKey | None, Condition | None]:
    """A targetRef's key, and why it cannot attach (an unsupported kind, an absent object); None if it can."""
    key = target_key(policy, ref)
    if key is None:
        return None, Condition(False, UNSUPPORTED_TARGET, f"{ref.group}/{ref.kind} is not a supported target kind; "
                                                           "use a Gateway or an XBackend")
    if reader.get(key) is None:
        return key, Condition(False, TARGET_NOT_FOUND, f"{key} does not exist")
    return key, None


def policy_fragment(policy: XAccessPolicy, reader: Reader) -> Output:
    conditions = policy_conditions(policy, reader)
    effective = all(cond.accepted for _, _, cond in conditions)
    withheld = reader.withheld(policy.key)
    rules = () if withheld else resolve_rules(policy, reader.trust_domain)
    sections = frozenset(ref.section_name for ref in policy.spec.target_refs if ref.section_name)
    view = PolicyView(policy.key, policy.spec.action, policy.spec.external_auth, rules, sections, withheld)
    out = Output()
    pid = policy_node(policy.key)
    out.nodes[pid] = {"type": "policy", "key": policy.key, "action": policy.spec.action.value,
                      "effective": effective, "view": view, "withheld": withheld,
                      "ext_auth_endpoints": _ext_auth_endpoints(policy, reader),
                      "conditions": tuple((ref.kind, ref.name, ref.section_name, c) for ref, _, c in conditions)}
    for ref, key, cond in conditions:
        if key is None or reader.get(key) is None:
            continue
        target = gateway_node(key) if key.kind == "Gateway" else backend_node(key)
        out.edge(pid, target, rel="attached", accepted=cond.accepted, section=ref.section_name)
        if effective:
            _grant_edges(out, rules, target, policy.spec.action)
    return out


def _ext_auth_endpoints(policy: XAccessPolicy, reader: Reader) -> tuple:
    """Ready endpoints of the authorizer Service an ExternalAuth policy names, read through the reader so
    that a Service or EndpointSlice change recomputes the policy. Anything but an existing core Service
    has none: requests delegated to it are then denied (fail closed), while the policy stays Accepted."""
    auth = policy.spec.external_auth
    if policy.spec.action is not Action.EXTERNAL_AUTH or auth is None:
        return ()
    ref = auth.backend_ref
    namespace = ref.namespace or policy.namespace
    if (ref.group, ref.kind) != ("", "Service") or reader.get(ResourceKey("Service", namespace, ref.name)) is None:
        return ()
    return _ready_endpoints(namespace, ref.name, ref.port, reader)


def _grant_edges(out: Output, rules, target: str, action: Action) -> None:
    by_principal: dict[str, list[str]] = {}
    for rule in rules:
        by_principal.setdefault(rule.principal, []).append(rule.ref)
    for principal, refs in sorted(by_principal.items()):
        ident = identity_node(principal)
        out.nodes[ident] = {"type": "identity", "principal": principal, "any": principal == ANY_SOURCE}
        out.edge(ident, target, rel="allow" if action is Action.ALLOW else "external-auth", rules=tuple(refs))
