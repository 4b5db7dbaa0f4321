"""The typed view translation reads: one Gateway as small frozen dataclasses, and the objects it was built from.

Why: translation (controlplane/translate) must not know the graph's node ids, edge names or attribute
dicts; it reads only this view. And since the view is all translation can see, the set of objects the
view read (`GatewayView.reads`) is exactly what a proxy's config depends on: the controller republishes a
proxy only when a change touched one of them, so that set cannot drift from translation.

The view leaves out what status reports as not programmable: listeners of protocols other than HTTP and
HTTPS, and conflicted listeners (graph/listeners.py).

A sidecar's view (`sidecar_view`) is one workload (a ServiceAccount's pods): inbound, the XBackends whose
Service it serves, with their policies; outbound, only the XBackends its identity may reach (some Allow
rule names it or any caller, or no Allow policy attaches), so its config grows with what it may reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from controlplane.api import egress as egress_api
from controlplane.api.agentic import Action, ExternalAuth
from controlplane.api.base import ResourceKey
from controlplane.api.gateway import Gateway, RouteFilter, RouteMatch
from controlplane.graph import fragments
from controlplane.graph.admission import seniority
from controlplane.graph.guardrails import ResolvedGuardrail, guardrail_on
from controlplane.graph.listeners import listener_conflicts
from controlplane.graph.model import AuthorizationGraph
from controlplane.graph.rate_limits import ResolvedLimit, limits_on
from controlplane.graph.request import BASE_EXACT_METHODS, BASE_PREFIX_METHODS, CLIENT_RESPONSE
from controlplane.graph.routing import match_precedence, route_age
from controlplane.graph.rules import ANY_SOURCE, NO_SOURCE, ResolvedRule
from controlplane.identity.spiffe import spiffe_id, workload_of

__all__ = [
    "ANY_SOURCE",
    "BASE_EXACT_METHODS",
    "BASE_PREFIX_METHODS",
    "CLIENT_RESPONSE",
    "NO_SOURCE",
    "AuthorizationGraph",
    "AuthorizerView",
    "BackendRefView",
    "BackendView",
    "EgressBackendView",
    "EgressRouteView",
    "EgressView",
    "GatewayView",
    "InboundView",
    "ListenerView",
    "OutboundView",
    "PolicyAttachment",
    "ResolvedGuardrail",
    "ResolvedLimit",
    "ResolvedRule",
    "RouteAttachment",
    "RouteRuleView",
    "SidecarView",
    "egress_gateways",
    "egress_view",
    "gateway_view",
    "managed_gateways",
    "reaching",
    "sidecar_view",
    "workloads",
]

CLUSTER_DOMAIN = "cluster.local"  # Kubernetes' default DNS domain: <svc>.<ns>.svc.cluster.local

HTTP_PROTOCOLS = {"HTTP": False, "HTTPS": True}  # protocol -> terminates TLS


@dataclass(frozen=True)
class AuthorizerView:
    """The Service an ExternalAuth policy delegates to, and its ready endpoints (none: fail closed)."""

    protocol: str  # "GRPC" or "HTTP"
    namespace: str
    name: str
    port: int | None
    endpoints: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class PolicyAttachment:
    """An effective XAccessPolicy on one target, as enforcement needs it."""

    key: ResourceKey
    action: Action
    rules: tuple[ResolvedRule, ...]
    external_auth: ExternalAuth | None = None
    authorizer: AuthorizerView | None = None  # set for an ExternalAuth policy
    withheld: str | None = None  # why its rules are withheld (a proxy refused its config); None = in force


@dataclass(frozen=True)
class BackendView:
    """An XBackend (an MCP server: `is_mcp`) or a Service that a route sends traffic to."""

    key: ResourceKey
    is_mcp: bool
    hostname: str | None = None  # an XBackend outside the cluster
    port: int | None = None  # an XBackend's port
    endpoints: tuple[tuple[str, int], ...] = ()  # an in-cluster XBackend's ready endpoints
    service_endpoints: tuple[tuple[int, tuple[tuple[str, int], ...]], ...] = ()  # a Service's, per port
    policies: tuple[PolicyAttachment, ...] = ()
    rate_limits: tuple[ResolvedLimit, ...] = ()  # of the RateLimitPolicies attached to it
    guardrail: ResolvedGuardrail | None = None  # of the GuardrailPolicy in force on it

    def endpoints_on(self, port: int | None) -> tuple[tuple[str, int], ...]:
        """A Service backend's ready endpoints for one of its ports."""
        return dict(self.service_endpoints).get(port, ())


@dataclass(frozen=True)
class BackendRefView:
    backend: BackendView
    port: int | None
    weight: int


@dataclass(frozen=True)
class RouteRuleView:
    """One rule of an HTTPRoute."""

    name: str  # <namespace>/<route>/<rule index>
    route: ResourceKey
    rule: int
    created: datetime | None
    matches: tuple[RouteMatch, ...]
    filters: tuple[RouteFilter, ...]
    backends: tuple[BackendRefView, ...]

    def match_order(self, match_index: int) -> tuple:
        """The position of one of its matches among all on a listener (Gateway API precedence)."""
        return (match_precedence(self.matches[match_index]), route_age(self.created), self.route, self.rule,
                match_index)


@dataclass(frozen=True)
class RouteAttachment:
    rule: RouteRuleView
    hostnames: tuple[str, ...]  # () means any


@dataclass(frozen=True)
class ListenerView:
    name: str
    port: int
    tls: bool
    routes: tuple[RouteAttachment, ...]
    policies: tuple[PolicyAttachment, ...]  # the Gateway's policies that apply on this listener
    rate_limits: tuple[ResolvedLimit, ...] = ()  # the Gateway's rate limits that apply on this listener
    guardrail: ResolvedGuardrail | None = None  # the Gateway's guardrail, if one applies on this listener


@dataclass(frozen=True)
class GatewayView:
    key: ResourceKey
    listeners: tuple[ListenerView, ...]  # programmable ones, by name
    reads: frozenset[ResourceKey] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class InboundView:
    """An XBackend whose Service this workload serves: requests for it go to the local app port."""

    service: ResourceKey
    hostnames: tuple[str, ...]  # the Service's DNS names (and cluster IP)
    app_port: int  # the Service port's target port on the pod
    rule: RouteRuleView  # one catch-all rule to the XBackend, which carries its policies


@dataclass(frozen=True)
class OutboundView:
    """An XBackend this workload may reach, through its Service's endpoints."""

    backend: ResourceKey
    service: ResourceKey
    port: int
    hostnames: tuple[str, ...]
    addresses: tuple[str, ...]  # ready endpoint addresses (their sidecars)
    peers: tuple[str, ...]  # SPIFFE IDs of the workloads behind them: the only certificates accepted


@dataclass(frozen=True)
class EgressRouteView:
    """A hostname XBackend this workload may reach: through its namespace's egress proxy, over mTLS."""

    backend: ResourceKey
    hostname: str
    egress: ResourceKey  # the egress Gateway
    egress_address: str  # its Service's DNS name (kube/provisioner.envoy_name)
    egress_port: int
    egress_spiffe_id: str  # the only certificate the sidecar accepts from it


@dataclass(frozen=True)
class SidecarView:
    key: ResourceKey  # the workload's ServiceAccount
    spiffe_id: str
    inbound: tuple[InboundView, ...]
    outbound: tuple[OutboundView, ...]
    reads: frozenset[ResourceKey] = field(default=frozenset(), compare=False)
    egress: tuple[EgressRouteView, ...] = ()


@dataclass(frozen=True)
class EgressBackendView:
    """A hostname XBackend an egress proxy originates TLS to, with what its annotations resolved to."""

    backend: BackendView  # hostname, port, policies
    ca_pem: bytes | None  # None: the system bundle
    credential: bytes | None = field(default=None, repr=False)  # the Secret's value; never in a repr or log
    credential_header: str = egress_api.CREDENTIAL_HEADER


@dataclass(frozen=True)
class EgressView:
    """An egress Gateway: its mTLS listener (Gateway-level policies) and the external XBackends it serves.

    `refused` names the hostname XBackends of its namespace it does not serve, and why: no Allow policy
    names them (a destination no policy names is refused), or an annotation or the object it names is
    wrong (fail closed)."""

    key: ResourceKey
    listener: ListenerView | None  # its first HTTPS listener; None: it serves nothing
    backends: tuple[EgressBackendView, ...]
    refused: tuple[tuple[ResourceKey, str], ...] = ()
    reads: frozenset[ResourceKey] = field(default=frozenset(), compare=False)


def workloads(graph: AuthorizationGraph) -> list[ResourceKey]:
    """Every known workload: ServiceAccounts, those Pods run as, and those serving a Service."""
    found = {sa.key for sa in graph.of_kind("ServiceAccount")}
    found |= {ResourceKey("ServiceAccount", pod.namespace, pod.spec.service_account_name)
              for pod in graph.of_kind("Pod")}
    found |= {data["key"] for _, data in graph.graph.nodes(data=True) if data.get("type") == "workload"}
    return sorted(found)


def sidecar_view(graph: AuthorizationGraph, key: ResourceKey) -> SidecarView:
    """One workload's sidecar as translation sees it."""
    return _Reader(graph).sidecar(key)


def reaching(graph: AuthorizationGraph, backend: ResourceKey) -> set[ResourceKey]:
    """The workloads whose sidecar's outbound side would hold this XBackend now (a superset where a policy
    names an ID of another trust domain): the query behind graph/dependents.py's "who reads it now"."""
    bid = fragments.backend_node(backend)
    node = graph.node(bid)
    if node is None or node.get("kind") != "XBackend" or not (node.get("service_name") or node.get("hostname")):
        return set()
    reader = _Reader(graph)
    if node.get("service_name"):
        services = [sid for _, sid, data in graph.graph.out_edges(bid, data=True) if data["rel"] == "service"]
        if not services or not reader._serving(services[0]):
            return set()
    # a hostname XBackend: reached through its namespace's egress proxy by every workload its policies allow
    allows = [p for p in reader._policies(bid, None) if p.action is Action.ALLOW]
    principals = {rule.principal for policy in allows for rule in policy.rules}
    if not allows or ANY_SOURCE in principals:
        return set(workloads(graph))
    return {ResourceKey("ServiceAccount", *names) for names in map(workload_of, principals) if names}


def programmed_listener(graph: AuthorizationGraph, listener_id: str) -> bool:
    """Whether a gateway view visits this listener node (and so the routes attached to it)."""
    attrs = graph.node(listener_id)
    if attrs is None or attrs.get("missing"):
        return False
    gateway = graph.get(attrs["gateway"])
    conflicts = listener_conflicts(gateway.spec.listeners) if isinstance(gateway, Gateway) else {}
    return _programmable(attrs, conflicts)


def _programmable(attrs: dict, conflicts) -> bool:
    return attrs["protocol"] in HTTP_PROTOCOLS and attrs["name"] not in conflicts


def managed_gateways(graph: AuthorizationGraph) -> list[ResourceKey]:
    """The Gateways of a class this control plane manages, but egress Gateways (`egress_gateways`)."""
    return [gw.key for gw in graph.of_kind("Gateway")
            if _managed(graph, gw.key) and not egress_api.is_egress_gateway(gw.metadata.labels)]


def egress_gateways(graph: AuthorizationGraph) -> list[ResourceKey]:
    """The managed Gateways labelled as egress proxies (api/egress.py)."""
    return [gw.key for gw in graph.of_kind("Gateway")
            if _managed(graph, gw.key) and egress_api.is_egress_gateway(gw.metadata.labels)]


def egress_view(graph: AuthorizationGraph, key: ResourceKey) -> EgressView | None:
    """One egress Gateway as translation sees it; None when it is missing, not ours or not an egress."""
    if key not in egress_gateways(graph):
        return None
    return _Reader(graph).egress(key)


def gateway_view(graph: AuthorizationGraph, key: ResourceKey) -> GatewayView | None:
    """One managed Gateway as translation sees it; None when it is missing or not ours."""
    if not _managed(graph, key):
        return None
    return _Reader(graph).gateway(key)


def _managed(graph: AuthorizationGraph, key: ResourceKey) -> bool:
    node = graph.node(fragments.gateway_node(key))
    return node is not None and not node.get("missing") and bool(node.get("managed"))


class _Reader:
    """Builds one GatewayView, recording every object it reads."""

    def __init__(self, graph: AuthorizationGraph):
        self._graph = graph
        self._nx = graph.graph
        self.reads: set[ResourceKey] = set()
        self._backends: dict[str, BackendView] = {}

    def gateway(self, key: ResourceKey) -> GatewayView:
        self.reads.add(key)
        gid = fragments.gateway_node(key)
        gateway = self._graph.get(key)
        conflicts = listener_conflicts(gateway.spec.listeners) if isinstance(gateway, Gateway) else {}
        listeners = []
        for _, lid, data in self._nx.out_edges(gid, data=True):
            attrs = self._nx.nodes[lid]
            if data["rel"] == "listener" and _programmable(attrs, conflicts):
                listeners.append(self._listener(gid, lid, attrs))
        listeners.sort(key=lambda lst: lst.name)
        return GatewayView(key, tuple(listeners), frozenset(self.reads))

    def sidecar(self, key: ResourceKey) -> SidecarView:
        self.reads.add(key)
        me = spiffe_id(self._graph.trust_domain, key.namespace, key.name)
        served = [sid for _, sid, data in self._nx.out_edges(fragments.workload_node(key), data=True)
                  if data["rel"] == "serves"] if fragments.workload_node(key) in self._nx else []
        inbound = [view for sid in sorted(served) for view in self._inbound(sid)]
        outbound = [view for bid, attrs in sorted(self._nx.nodes(data=True))
                    if attrs.get("kind") == "XBackend" and attrs.get("service_name")
                    for view in self._outbound(bid, me)]
        egress = [view for bid, attrs in sorted(self._nx.nodes(data=True))
                  if attrs.get("kind") == "XBackend" and attrs.get("hostname")
                  for view in self._egress_route(bid, me)]
        return SidecarView(key, me, tuple(inbound), tuple(outbound), frozenset(self.reads), tuple(egress))

    def egress(self, key: ResourceKey) -> EgressView:
        gateway = self.gateway(key)
        https = [lst for lst in gateway.listeners if lst.tls]
        served, refused = [], []
        for bid, attrs in sorted(self._nx.nodes(data=True)):
            if attrs.get("kind") != "XBackend" or not attrs.get("hostname") or attrs["key"].namespace != key.namespace:
                continue
            backend = self._backend(bid)
            entry = self._egress_backend(backend)
            if isinstance(entry, EgressBackendView):
                served.append(entry)
            else:
                refused.append((backend.key, entry))
        listener = None
        if https:
            routes = tuple(RouteAttachment(_egress_rule(entry.backend), (entry.backend.hostname,)) for entry in served)
            listener = ListenerView(https[0].name, https[0].port, True, routes, https[0].policies,
                                    https[0].rate_limits)
        return EgressView(key, listener, tuple(served), tuple(refused), frozenset(self.reads))

    def _egress_backend(self, backend: BackendView) -> EgressBackendView | str:
        """What the egress serves for one hostname XBackend, or why it refuses it (one line)."""
        if not any(p.action is Action.ALLOW for p in backend.policies):
            return "no XAccessPolicy of action Allow names it: an egress refuses destinations no policy names"
        xbackend = self._graph.get(backend.key)
        try:
            settings = egress_api.egress_settings(xbackend.metadata.annotations)
        except ValueError as exc:
            return str(exc)
        ca_pem = credential = None
        if settings.ca is not None:
            ca_pem = self._object_value(backend.key.namespace, settings.ca)
            if ca_pem is None or b"-----BEGIN CERTIFICATE-----" not in ca_pem:
                return f"{settings.ca.kind} {backend.key.namespace}/{settings.ca.name} holds no PEM {settings.ca.key}"
        if settings.credential is not None:
            credential = self._object_value(backend.key.namespace, settings.credential)
            if not credential or not _header_safe(credential):
                return (f"Secret {backend.key.namespace}/{settings.credential.name} holds no usable "
                        f"{settings.credential.key} (missing, empty, not base64, or not one header line)")
        return EgressBackendView(backend, ca_pem, credential, settings.credential_header)

    def _object_value(self, namespace: str, ref: egress_api.ObjectKeyRef) -> bytes | None:
        key = ResourceKey(ref.kind, namespace, ref.name)
        self.reads.add(key)
        obj = self._graph.get(key)
        if obj is None:
            return None
        if ref.kind == "Secret":
            return obj.value(ref.key)
        text = obj.data.get(ref.key)
        return None if text is None else text.encode()

    def _egress_route(self, bid: str, me: str) -> list[EgressRouteView]:
        """The egress proxy of a hostname XBackend's namespace, if there is one that serves it for this caller."""
        backend = self._backend(bid)
        if not _may_reach(backend.policies, me):
            return []
        for key in egress_gateways(self._graph):
            if key.namespace != backend.key.namespace:
                continue
            reader = _Reader(self._graph)
            view = reader.egress(key)
            self.reads |= reader.reads
            if view.listener is not None and any(e.backend.key == backend.key for e in view.backends):
                address = f"{key.name}-envoy.{key.namespace}.svc.{CLUSTER_DOMAIN}"
                return [EgressRouteView(backend.key, backend.hostname, key, address, view.listener.port,
                                        spiffe_id(self._graph.trust_domain, key.namespace, key.name))]
        return []

    def _inbound(self, sid: str) -> list[InboundView]:
        node = self._nx.nodes[sid]
        self.reads.add(node["key"])
        views = []
        for bid, _, data in sorted(self._nx.in_edges(sid, data=True)):
            if data["rel"] != "service":
                continue
            backend = self._backend(bid)
            rule = RouteRuleView(f"{backend.key.ref}/inbound", backend.key, 0, None, (), (),
                                 (BackendRefView(backend, data["port"], 1),))
            views.append(InboundView(node["key"], self._hostnames(node["key"]),
                                     self._target_port(node, data["port"]), rule))
        return views

    def _outbound(self, bid: str, me: str) -> list[OutboundView]:
        """An XBackend on the outbound side, its reads kept only when it is there: a sidecar whose config
        leaves it out does not depend on it (`reaching` answers who would hold it after a change)."""
        outer, self.reads = self.reads, set()
        try:
            views = self._outbound_views(bid, me)
        finally:
            kept, self.reads = self.reads, outer
        if views:
            self.reads |= kept
        return views

    def _outbound_views(self, bid: str, me: str) -> list[OutboundView]:
        backend = self._backend(bid)
        node = self._nx.nodes[bid]
        services = [sid for _, sid, data in self._nx.out_edges(bid, data=True) if data["rel"] == "service"]
        if not services or not _may_reach(backend.policies, me):
            return []
        service = self._nx.nodes[services[0]]["key"]
        self.reads.add(service)
        peers = sorted(spiffe_id(self._graph.trust_domain, w.namespace, w.name)
                       for w in self._serving(services[0]))
        if not peers:  # no workload known behind it: its certificate could not be checked
            return []
        addresses = tuple(sorted({address for address, _ in node["endpoints"]}))
        return [OutboundView(backend.key, service, node["port"], self._hostnames(service), addresses,
                             tuple(peers))]

    def _serving(self, sid: str) -> list[ResourceKey]:
        return [self._nx.nodes[wid]["key"] for wid, _, data in self._nx.in_edges(sid, data=True)
                if data["rel"] == "serves"]

    def _hostnames(self, service: ResourceKey) -> tuple[str, ...]:
        name, ns = service.name, service.namespace
        names = [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"]
        obj = self._graph.get(service)
        cluster_ip = getattr(getattr(obj, "spec", None), "cluster_ip", None)
        if cluster_ip and cluster_ip != "None":
            names.append(cluster_ip)
        return tuple(names)

    def _target_port(self, node: dict, port: int) -> int:
        """The pod port behind a Service port: its numeric targetPort, else what the EndpointSlices say."""
        service = self._graph.get(node["key"])
        spec_port = service.port(port) if service is not None else None
        if spec_port is not None and isinstance(spec_port.target_port, int):
            return spec_port.target_port
        endpoints = dict(node["endpoints"]).get(port, ())
        return endpoints[0][1] if endpoints else port

    def _listener(self, gid: str, lid: str, attrs: dict) -> ListenerView:
        routes = tuple(RouteAttachment(self._rule(rid), tuple(data["hostnames"]))
                       for _, rid, data in self._nx.out_edges(lid, data=True) if data["rel"] == "route")
        return ListenerView(attrs["name"], attrs["port"], HTTP_PROTOCOLS[attrs["protocol"]], routes,
                            self._policies(gid, attrs["name"]), self._rate_limits(gid, attrs["name"]),
                            self._guardrail(gid, attrs["name"]))

    def _rule(self, rid: str) -> RouteRuleView:
        node = self._nx.nodes[rid]
        self.reads.add(node["route"])
        edges = sorted(self._nx.out_edges(rid, data=True), key=lambda e: e[1])
        backends = tuple(BackendRefView(self._backend(bid), data["port"], data["weight"])
                         for _, bid, data in edges if data["rel"] == "backend")
        return RouteRuleView(rid.removeprefix("route:"), node["route"], node["rule"], node["created"],
                             tuple(node["matches"]), tuple(node["filters"]), backends)

    def _backend(self, bid: str) -> BackendView:
        if bid not in self._backends:
            node = self._nx.nodes[bid]
            self.reads.add(node["key"])
            if node["kind"] == "XBackend":
                view = BackendView(node["key"], True, hostname=node["hostname"], port=node["port"],
                                   endpoints=tuple(node["endpoints"]), policies=self._policies(bid, None),
                                   rate_limits=self._rate_limits(bid, None), guardrail=self._guardrail(bid, None))
            else:
                view = BackendView(node["key"], False, service_endpoints=tuple(node["endpoints"]),
                                   policies=self._policies(bid, None), rate_limits=self._rate_limits(bid, None),
                                   guardrail=self._guardrail(bid, None))
            self._backends[bid] = view
        return self._backends[bid]

    def _policies(self, target: str, listener: str | None) -> tuple[PolicyAttachment, ...]:
        """Effective policies attached to a target, oldest first (a Gateway policy may name one listener).

        Every attached policy is read, effective or not: becoming effective is a change."""
        found = {}
        for pid, _, data in self._nx.in_edges(target, data=True):
            if data["rel"] != "attached":
                continue
            node = self._nx.nodes[pid]
            self.reads.add(node["key"])
            if not node.get("effective"):
                continue
            view = node["view"]
            if listener is not None and view.section_names and listener not in view.section_names:
                continue
            found[view.key] = _attachment(view, node)
        return tuple(sorted(found.values(), key=lambda a: seniority(self._graph.get(a.key))))

    def _rate_limits(self, target: str, listener: str | None) -> tuple[ResolvedLimit, ...]:
        """The limits of the RateLimitPolicies attached to a target (each policy read, for republishing)."""
        self.reads.update(self._nx.nodes[nid]["key"] for nid, _, data in self._nx.in_edges(target, data=True)
                          if data["rel"] == "rate_limited")
        return tuple(limits_on(self._nx, target, listener))

    def _guardrail(self, target: str, listener: str | None) -> ResolvedGuardrail | None:
        """The guardrail in force on a target (each guarding policy read, for republishing)."""
        self.reads.update(self._nx.nodes[nid]["key"] for nid, _, data in self._nx.in_edges(target, data=True)
                          if data["rel"] == "guarded")
        return guardrail_on(self._nx, target, listener)


def _egress_rule(backend: BackendView) -> RouteRuleView:
    """One catch-all rule to a hostname XBackend, which carries its policies (as a sidecar's inbound rule)."""
    return RouteRuleView(f"{backend.key.ref}/egress", backend.key, 0, None, (), (), (BackendRefView(backend, None, 1),))


def _header_safe(value: bytes) -> bool:
    """A credential Envoy can put in one header: printable ASCII, no line breaks."""
    return all(0x20 <= b < 0x7F or b == 0x09 for b in value)


def _attachment(view, node: dict) -> PolicyAttachment:
    authorizer = None
    auth = view.external_auth
    if view.action is Action.EXTERNAL_AUTH and auth is not None:
        ref = auth.backend_ref
        authorizer = AuthorizerView(auth.protocol, ref.namespace or view.key.namespace, ref.name, ref.port,
                                    tuple(node["ext_auth_endpoints"]))
    return PolicyAttachment(view.key, view.action, view.rules, auth, authorizer, view.withheld)


def _may_reach(policies: tuple[PolicyAttachment, ...], caller: str) -> bool:
    """Whether some Allow rule may admit the caller (or no Allow policy attaches); the tool's sidecar
    still decides each request, this only keeps unreachable destinations out of the caller's config."""
    allows = [p for p in policies if p.action is Action.ALLOW]
    return not allows or any(r.principal in (ANY_SOURCE, caller) for p in allows for r in p.rules)
