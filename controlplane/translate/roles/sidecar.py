"""Everything one workload's sidecar Envoy needs, from its view: an inbound side and an outbound side.

Inbound (the tool's side, Istio's port 15006): STRICT mTLS (the caller's certificate from the mesh CA is
required; its URI SAN is the caller's SPIFFE ID), then the same features as at the gateway, through the
same hooks: the MCP filter, ExternalAuth, RBAC (each XBackend's policies in the weighted cluster's
`typed_per_filter_config`, as at the gateway), the JSON-RPC denial, the access log. One virtual host
per Service the workload serves, matched by the Service's names; its route goes to the app on the
pod's loopback, at the Service port's target port.

Outbound (the agent's side, Istio's port 15001), in both of Istio's modes at once: transparent capture (the
pod's iptables rules, translate/capture.py, redirect the app's TCP here; the `original_dst` listener filter
restores where it was going and `useOriginalDst` would hand it to a listener for that address, of which
there are none, so it stays here) and explicit proxy (`HTTP_PROXY=http://127.0.0.1:15001`, for agents that
cannot be captured). Either way the HTTP request carries the Service's Host, so routing is by Host: one
virtual host per XBackend the workload may reach (graph/view.py decides), matched by the Service's
names, to an EDS cluster of its endpoints' sidecars (their inbound port) over mTLS that accepts only the
SPIFFE IDs of the workloads behind that Service. Any other host gets 403: a destination the graph does
not let this workload reach is not configured at all. The outbound side decides nothing else: the
tool's side enforces, with the identity it proved. It listens on loopback only, so that no other pod
can borrow this workload's identity through it; capture still reaches it, because iptables redirects
locally generated packets to 127.0.0.1 (a connection from another pod to the pod's :15001 is captured
into 15006 instead: mTLS there, or refused where the workload serves nothing).

Inbound capture: the rules redirect every TCP connection for the pod (its app port included) to 15006,
whose `original_dst` listener filter restores the port the caller dialled; STRICT mTLS then refuses any
caller without a mesh certificate, so the app's port is reachable only through the sidecar. The route
is chosen by the Service's Host and goes to that Service port's target port on loopback.

A side with nothing to serve gets no listener (its connections are refused).
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.api.base import ResourceKey
from controlplane.graph.view import (
    AuthorizationGraph,
    EgressRouteView,
    GatewayView,
    InboundView,
    ListenerView,
    OutboundView,
    RouteAttachment,
    SidecarView,
    sidecar_view,
)
from controlplane.identity.sds import TRUST_BUNDLE_SECRET, WORKLOAD_CERT_SECRET
from controlplane.translate import clusters, listener, route_config
from controlplane.translate.context import (
    ADS,
    SIDECAR_INBOUND,
    SIDECAR_OUTBOUND,
    OtelCollector,
    PortContext,
    ProxyContext,
)
from controlplane.translate.features import FEATURES
from controlplane.translate.roles import unique_resources
from controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource

INBOUND_PORT, OUTBOUND_PORT, ADMIN_PORT = 15006, 15001, 15000  # Istio's well-known ports
OUTBOUND_BIND = "127.0.0.1"  # explicit proxy: only the pod's own processes may send through it
APP_ADDRESS = "127.0.0.1"  # the app beside the sidecar
NOT_REACHABLE = "this workload may not reach that destination\n"


def sidecar_resources(graph: AuthorizationGraph, workload: ResourceKey, *, secrets: list[Resource],
                      otel_collector: OtelCollector | None = None) -> list[Resource]:
    return resources_for(sidecar_view(graph, workload), secrets=secrets, otel_collector=otel_collector)


def resources_for(view: SidecarView, *, secrets: Iterable[Resource],
                  otel_collector: OtelCollector | None = None) -> list[Resource]:
    secrets = tuple(secrets)
    out: list[Resource] = []
    if view.inbound:
        out += _inbound(view, secrets, otel_collector)
    if view.outbound or view.egress:
        out += _outbound(view, secrets)
    if out:
        out += secrets
    return unique_resources(out)


# --- inbound --------------------------------------------------------------------------------------------


def inbound_cluster_name(app_port: int) -> str:
    return f"inbound|{app_port}"


def _inbound(view: SidecarView, secrets: tuple[Resource, ...], otel_collector: OtelCollector | None) -> list[Resource]:
    served = _first_per_service(view.inbound)
    routes = tuple(RouteAttachment(entry.rule, entry.hostnames) for entry in served)
    side = GatewayView(view.key, (ListenerView("inbound", INBOUND_PORT, True, routes, ()),), view.reads)
    proxy = ProxyContext(SIDECAR_INBOUND, side, secrets, otel_collector)
    port = PortContext(proxy, INBOUND_PORT, True, side.listeners)
    inbound = _capture_target(listener.listener(port, FEATURES))
    out = [Resource(LISTENER, listener.listener_name(INBOUND_PORT), inbound),
           Resource(ROUTE, route_config.route_config_name(INBOUND_PORT), _inbound_routes(proxy, served))]
    out += [Resource(CLUSTER, inbound_cluster_name(p), _local_cluster(p)) for p in {e.app_port for e in served}]
    return out + [r for feature in FEATURES for r in feature.resources(proxy)]


def _first_per_service(entries: tuple[InboundView, ...]) -> list[InboundView]:
    """One entry per Service: hosts match without their port, so two XBackends on one Service cannot be told
    apart; the first (by name) is served."""
    seen: dict[ResourceKey, InboundView] = {}
    for entry in entries:
        seen.setdefault(entry.service, entry)
    return list(seen.values())


def _inbound_routes(proxy: ProxyContext, served: list[InboundView]) -> dict:
    side = proxy.gateway.listeners[0]
    vhosts = []
    for entry in served:
        ref = entry.rule.backends[0]
        cluster: dict = {"name": inbound_cluster_name(entry.app_port), "weight": 1}
        route_config.add_typed_per_filter_config(cluster, (f.weighted_cluster_config(proxy, ref) for f in FEATURES))
        route: dict = {"name": entry.rule.name, "match": {"prefix": "/"},
                       "route": {"weightedClusters": {"clusters": [cluster]}, "timeout": "0s"}}
        route_config.add_typed_per_filter_config(route, (f.route_config(proxy, entry.rule) for f in FEATURES))
        vhost: dict = {"name": f"inbound/{entry.service.ref}", "domains": list(entry.hostnames), "routes": [route]}
        route_config.add_typed_per_filter_config(vhost, (f.virtual_host_config(proxy, side) for f in FEATURES))
        vhosts.append(vhost)
    config = {"name": route_config.route_config_name(INBOUND_PORT), "virtualHosts": vhosts,
              "ignorePortInHostMatching": True}
    for feature in FEATURES:
        config.update(feature.route_configuration_patch(proxy))
    return config


def _local_cluster(app_port: int) -> dict:
    name = inbound_cluster_name(app_port)
    return {"name": name, "type": "STATIC", "connectTimeout": clusters.CONNECT_TIMEOUT,
            "loadAssignment": clusters.load_assignment(name, ((APP_ADDRESS, app_port),))}


# --- outbound -------------------------------------------------------------------------------------------


def outbound_cluster_name(entry: OutboundView) -> str:
    return f"outbound|{entry.port}||{entry.hostnames[3]}"  # Istio's form: outbound|PORT||FQDN


def _outbound(view: SidecarView, secrets: tuple[Resource, ...]) -> list[Resource]:
    proxy = ProxyContext(SIDECAR_OUTBOUND, GatewayView(view.key, (), view.reads), secrets)
    port = PortContext(proxy, OUTBOUND_PORT, False, ())
    lst = listener.listener(port, FEATURES)
    lst["address"]["socketAddress"]["address"] = OUTBOUND_BIND
    lst = _capture_target(lst)
    reachable = _first_per_service(view.outbound)
    out = [Resource(LISTENER, listener.listener_name(OUTBOUND_PORT), lst),
           Resource(ROUTE, route_config.route_config_name(OUTBOUND_PORT), _outbound_routes(reachable, view.egress))]
    for entry in view.egress:
        name = egress_cluster_name(entry)
        out.append(Resource(CLUSTER, name, _egress_cluster(name, entry)))
    for entry in reachable:
        name = outbound_cluster_name(entry)
        cluster = clusters.eds_cluster(name)
        cluster["transportSocket"] = _upstream_mtls(entry)
        endpoints = tuple((address, INBOUND_PORT) for address in entry.addresses)
        out += [Resource(CLUSTER, name, cluster), Resource(ENDPOINT, name, clusters.load_assignment(name, endpoints))]
    return out


def egress_cluster_name(entry: EgressRouteView) -> str:
    return f"outbound|{entry.egress_port}||{entry.egress_address}"


def _egress_cluster(name: str, entry: EgressRouteView) -> dict:
    """The egress proxy of an external XBackend's namespace, by its Service's DNS name, over mTLS with
    the workload's SVID, accepting only the egress Gateway's SPIFFE ID (it originates TLS onwards)."""
    endpoint = {"endpoint": {"address": {"socketAddress": {"address": entry.egress_address,
                                                           "portValue": entry.egress_port}}}}
    peers = [{"sanType": "URI", "matcher": {"exact": entry.egress_spiffe_id}}]
    tls = {"@type": clusters.UPSTREAM_TLS_TYPE, "sni": entry.egress_address,
           "commonTlsContext": {
               "tlsCertificateSdsSecretConfigs": [{"name": WORKLOAD_CERT_SECRET, "sdsConfig": ADS}],
               "combinedValidationContext": {
                   "defaultValidationContext": {"matchTypedSubjectAltNames": peers},
                   "validationContextSdsSecretConfig": {"name": TRUST_BUNDLE_SECRET, "sdsConfig": ADS}}}}
    return {"name": name, "type": "STRICT_DNS", "connectTimeout": clusters.CONNECT_TIMEOUT,
            "dnsLookupFamily": "V4_PREFERRED", "lbPolicy": "ROUND_ROBIN",
            "loadAssignment": {"clusterName": name, "endpoints": [{"lbEndpoints": [endpoint]}]},
            "transportSocket": {"name": "envoy.transport_sockets.tls", "typedConfig": tls}}


def _outbound_routes(reachable: list[OutboundView], egress: tuple[EgressRouteView, ...] = ()) -> dict:
    vhosts = [{"name": f"outbound/{entry.backend.ref}", "domains": list(entry.hostnames),
               "routes": [{"name": entry.backend.ref, "match": {"prefix": "/"},
                           "route": {"cluster": outbound_cluster_name(entry), "timeout": "0s"}}]}
              for entry in reachable]
    vhosts += [{"name": f"egress/{entry.backend.ref}", "domains": [entry.hostname],
                "routes": [{"name": entry.backend.ref, "match": {"prefix": "/"},
                            "route": {"cluster": egress_cluster_name(entry), "timeout": "0s"}}]}
               for entry in egress]
    refuse = {"name": "outbound/not-reachable", "domains": ["*"],
              "routes": [{"name": "not-reachable", "match": {"prefix": "/"},
                          "directResponse": {"status": 403, "body": {"inlineString": NOT_REACHABLE}}}]}
    return {"name": route_config.route_config_name(OUTBOUND_PORT), "virtualHosts": vhosts + [refuse],
            "ignorePortInHostMatching": True}


def _upstream_mtls(entry: OutboundView) -> dict:
    """Present the workload's SVID; accept only the SPIFFE IDs of the workloads behind the Service."""
    peers = [{"sanType": "URI", "matcher": {"exact": peer}} for peer in entry.peers]
    tls = {"@type": clusters.UPSTREAM_TLS_TYPE, "sni": entry.hostnames[3],
           "commonTlsContext": {
               "tlsCertificateSdsSecretConfigs": [{"name": WORKLOAD_CERT_SECRET, "sdsConfig": ADS}],
               "combinedValidationContext": {
                   "defaultValidationContext": {"matchTypedSubjectAltNames": peers},
                   "validationContextSdsSecretConfig": {"name": TRUST_BUNDLE_SECRET, "sdsConfig": ADS}}}}
    return {"name": "envoy.transport_sockets.tls", "typedConfig": tls}


# --- capture --------------------------------------------------------------------------------------------

ORIGINAL_DST_FILTER = {"name": "envoy.filters.listener.original_dst", "typedConfig": {
    "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}}


def _capture_target(lst: dict) -> dict:
    """What a listener that iptables redirects to needs: the connection's original destination restored
    (SO_ORIGINAL_DST), and Envoy told that the port it arrived on is not the one the caller dialled.
    Routing stays by Host; the access log records where the caller was going (`original_destination`:
    the Service's cluster IP and port when captured, the listener's own address when used as a proxy)."""
    for chain in lst["filterChains"]:
        for network_filter in chain["filters"]:
            for log in network_filter["typedConfig"].get("accessLog", ()):
                fmt = log["typedConfig"].get("logFormat")
                if fmt is None:  # the gRPC audit stream: structured, it carries the address itself
                    continue
                fmt["jsonFormat"] = {**fmt["jsonFormat"], "original_destination": "%DOWNSTREAM_LOCAL_ADDRESS%"}
    return lst | {"listenerFilters": [ORIGINAL_DST_FILTER], "useOriginalDst": True}
