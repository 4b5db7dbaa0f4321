"""Everything one egress Gateway's Envoy needs: agents in, external MCP servers and LLM providers out.

Why a role of its own: an XBackend's `hostname` is outside the mesh, so no sidecar of the tool's side can
enforce policy for it. The egress proxy is that side. Its one listener is the egress Gateway's HTTPS
port with mTLS (features/tls.py): the caller is the SPIFFE ID of the agent's certificate (its SVID, as
its sidecar presents it), and the same features as at a gateway decide: the MCP filter, ExternalAuth,
RBAC with the Gateway's policies per virtual host and the XBackend's per weighted cluster, the JSON-RPC
denial, the access log. Then it originates TLS to the hostname: SNI = the hostname, the certificate
validated against the XBackend's CA (its `egress-ca` annotation) or the system bundle (`system_ca`), and
its DNS SAN must be the hostname. A credential from a Secret (features/credential_injector.py, an
upstream filter of the XBackend's cluster) is added on the way out, so agents never hold the provider's key.

One virtual host per served XBackend, matched by its hostname (agents send plain HTTP with that Host, as
with Istio's egress gateway: their sidecar, or they, reach the egress over mTLS and the egress speaks
TLS to the provider). Every other Host, and every XBackend no Allow policy names, gets a 403 that the
JSON-RPC denial turns into an error marked `denied` (graph/view.EgressView.refused says why).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from controlplane.api.base import ResourceKey
from controlplane.graph.view import (
    AuthorizationGraph,
    EgressBackendView,
    EgressView,
    GatewayView,
    egress_view,
)
from controlplane.identity.sds import credential_secret
from controlplane.translate import clusters, listener, route_config
from controlplane.translate.context import EGRESS, OtelCollector, PortContext, ProxyContext
from controlplane.translate.features import FEATURES
from controlplane.translate.features.credential_injector import credential_secret_name, protocol_options
from controlplane.translate.roles import unique_resources
from controlplane.xds.resources import CLUSTER, LISTENER, ROUTE, SECRET, Resource

ROLE = EGRESS
DEBIAN_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's (and the Envoy image's) ca-certificates
NOT_NAMED = "no policy names this destination"


def egress_resources(graph: AuthorizationGraph, gateway: ResourceKey, *, secrets: list[Resource],
                     system_ca: str = DEBIAN_CA_BUNDLE, otel_collector: OtelCollector | None = None) -> list[Resource]:
    """The egress Gateway's resources, credentials left out (`credential_secrets` adds them at serve time)."""
    view = egress_view(graph, gateway)
    return [] if view is None else resources_for(view, secrets=secrets, system_ca=system_ca,
                                                     otel_collector=otel_collector)


def resources_for(view: EgressView, *, secrets: Iterable[Resource], system_ca: str = DEBIAN_CA_BUNDLE,
                  otel_collector: OtelCollector | None = None) -> list[Resource]:
    if view.listener is None:
        return []
    side = GatewayView(view.key, (view.listener,), view.reads)
    proxy = ProxyContext(ROLE, side, tuple(secrets), otel_collector)
    port = PortContext(proxy, view.listener.port, True, side.listeners)
    out = [Resource(LISTENER, listener.listener_name(port.port), listener.listener(port, FEATURES)),
           Resource(ROUTE, route_config.route_config_name(port.port), _routes(proxy, view))]
    out += [Resource(CLUSTER, _cluster_name(entry), _cluster(entry, system_ca)) for entry in view.backends]
    out += [r for feature in FEATURES for r in feature.resources(proxy)]
    return unique_resources(out)


def credential_secrets(view: EgressView) -> list[Resource]:
    """The SDS secrets holding the injected credentials: built only where serve sends them (never by
    `agentic-cp translate` or the golden tests, so a credential is never printed)."""
    return [Resource(SECRET, name, credential_secret(name, entry.credential).to_dict())
            for entry in view.backends if entry.credential
            for name in (credential_secret_name(entry.backend.key),)]


def _cluster_name(entry: EgressBackendView) -> str:
    return clusters.xbackend_cluster_name(entry.backend.key.namespace, entry.backend.key.name)


def _cluster(entry: EgressBackendView, system_ca: str) -> dict:
    """LOGICAL_DNS to the hostname with TLS origination: SNI, the CA, and the hostname as the DNS SAN."""
    backend = entry.backend
    cluster = clusters.external_cluster(_cluster_name(entry), backend.hostname, backend.port)
    trusted = ({"inlineBytes": base64.b64encode(entry.ca_pem).decode()} if entry.ca_pem is not None
               else {"filename": system_ca})
    cluster["transportSocket"]["typedConfig"]["commonTlsContext"]["validationContext"]["trustedCa"] = trusted
    if entry.credential:
        cluster["typedExtensionProtocolOptions"] = protocol_options(backend.key, entry.credential_header)
    return cluster


def _routes(proxy: ProxyContext, view: EgressView) -> dict:
    gateway_listener = proxy.gateway.listeners[0]
    vhosts = [_virtual_host(proxy, attachment.rule, attachment.hostnames) for attachment in gateway_listener.routes]
    refuse = {"name": f"{view.key.ref}/not-named", "domains": ["*"],
              "routes": [{"name": "not-named", "match": {"prefix": "/"},
                          "directResponse": {"status": 403, "body": {"inlineString": NOT_NAMED + "\n"}}}]}
    return {"name": route_config.route_config_name(gateway_listener.port), "virtualHosts": vhosts + [refuse],
            "ignorePortInHostMatching": True}


def _virtual_host(proxy: ProxyContext, rule, hostnames: tuple[str, ...]) -> dict:
    ref = rule.backends[0]
    cluster: dict = {"name": clusters.backend_cluster_name(ref), "weight": 1,
                     "hostRewriteLiteral": ref.backend.hostname}
    route_config.add_typed_per_filter_config(cluster, (f.weighted_cluster_config(proxy, ref) for f in FEATURES))
    route: dict = {"name": rule.name, "match": {"prefix": "/"},
                   "route": {"weightedClusters": {"clusters": [cluster]}, "timeout": "0s"}}
    route_config.add_typed_per_filter_config(route, (f.route_config(proxy, rule) for f in FEATURES))
    vhost: dict = {"name": f"egress/{ref.backend.key.ref}", "domains": list(hostnames), "routes": [route]}
    route_config.add_typed_per_filter_config(vhost, (f.virtual_host_config(proxy, proxy.gateway.listeners[0]) for f in FEATURES))
    return vhost
