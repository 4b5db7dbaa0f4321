"""Backends -> Envoy clusters and ClusterLoadAssignments (proto3 JSON).

In-cluster backends (an XBackend's `serviceName`, a Service backendRef) and the Services that
ExternalAuth policies name as authorizers (features/ext_authz.py) are EDS clusters fed from ready EndpointSlice addresses; a backend with no ready endpoint gets an explicit empty
ClusterLoadAssignment, so that Envoy's cluster warms at once and answers 503 instead of waiting for
the initial fetch timeout (for an authorizer: every request delegated to it is denied, fail closed).
A gRPC authorizer's cluster speaks HTTP/2 to its upstream, which gRPC requires. An XBackend's `hostname` is a LOGICAL_DNS cluster with TLS origination:
SNI set to the hostname and the server certificate validated against the system CA bundle.
"""

from __future__ import annotations

from pathlib import Path

from controlplane.graph.view import BackendRefView
from controlplane.translate.context import ADS
from controlplane.xds.resources import CLUSTER, ENDPOINT, Resource

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
UPSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
SYSTEM_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
CONNECT_TIMEOUT = "5s"


def xbackend_cluster_name(namespace: str, name: str) -> str:
    return f"xbackend/{namespace}/{name}"


def service_cluster_name(namespace: str, name: str, port: int) -> str:
    return f"service/{namespace}/{name}/{port}"


def backend_cluster_name(ref: BackendRefView) -> str:
    key = ref.backend.key
    if ref.backend.is_mcp:
        return xbackend_cluster_name(key.namespace, key.name)
    return service_cluster_name(key.namespace, key.name, ref.port)


def backend_clusters(ref: BackendRefView) -> list[Resource]:
    """The cluster (and its endpoints, unless it resolves DNS itself) of one backend of a route."""
    name, backend = backend_cluster_name(ref), ref.backend
    if backend.is_mcp and backend.hostname:
        return [Resource(CLUSTER, name, external_cluster(name, backend.hostname, backend.port))]
    return eds(name, backend.endpoints if backend.is_mcp else backend.endpoints_on(ref.port))


def eds(name: str, endpoints: tuple, *, http2: bool = False) -> list[Resource]:
    """An EDS cluster and its ClusterLoadAssignment."""
    return [Resource(CLUSTER, name, eds_cluster(name, http2=http2)),
            Resource(ENDPOINT, name, load_assignment(name, endpoints))]


def eds_cluster(name: str, *, http2: bool = False) -> dict:
    cluster = {"name": name, "type": "EDS", "connectTimeout": CONNECT_TIMEOUT,
               "edsClusterConfig": {"edsConfig": ADS}, "lbPolicy": "ROUND_ROBIN"}
    if http2:
        cluster["typedExtensionProtocolOptions"] = {HTTP_PROTOCOL_OPTIONS: {
            "@type": f"type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}", "explicitHttpConfig": {"http2ProtocolOptions": {}}}}
    return cluster


def load_assignment(name: str, endpoints: tuple[tuple[str, int], ...]) -> dict:
    lb_endpoints = [{"endpoint": {"address": {"socketAddress": {"address": address, "portValue": port}}}}
                    for address, port in endpoints]
    return {"clusterName": name, "endpoints": [{"lbEndpoints": lb_endpoints}] if lb_endpoints else []}


def external_cluster(name: str, hostname: str, port: int) -> dict:
    tls = {"@type": UPSTREAM_TLS_TYPE, "sni": hostname,
           "commonTlsContext": {"validationContext": {
               "trustedCa": {"filename": system_ca_bundle()},
               "matchTypedSubjectAltNames": [{"sanType": "DNS", "matcher": {"exact": hostname}}]}}}
    endpoint = {"endpoint": {"address": {"socketAddress": {"address": hostname, "portValue": port}}}}
    return {"name": name, "type": "LOGICAL_DNS", "connectTimeout": CONNECT_TIMEOUT,
            "dnsLookupFamily": "V4_PREFERRED", "lbPolicy": "ROUND_ROBIN",
            "loadAssignment": {"clusterName": name, "endpoints": [{"lbEndpoints": [endpoint]}]},
            "transportSocket": {"name": "envoy.transport_sockets.tls", "typedConfig": tls}}


def system_ca_bundle() -> str:
    return next((p for p in SYSTEM_CA_BUNDLES if Path(p).exists()), SYSTEM_CA_BUNDLES[0])
