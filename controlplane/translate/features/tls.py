"""Downstream mTLS on HTTPS ports: the client certificate is required and validated against the mesh
trust bundle; the server certificate and the bundle are delivered over SDS (identity/sds.py).

A gateway presents its gateway certificate; a sidecar's inbound side presents its workload's SVID
(STRICT mTLS: a caller without a certificate from the mesh CA gets no connection)."""

from __future__ import annotations

from controlplane.identity.sds import SERVER_CERT_SECRET, TRUST_BUNDLE_SECRET, WORKLOAD_CERT_SECRET
from controlplane.translate.context import ADS, SIDECAR_INBOUND, PortContext, ProxyContext
from controlplane.translate.features.base import Feature
from controlplane.xds.resources import Resource

DOWNSTREAM_TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


class DownstreamTls(Feature):
    name = "tls"

    def filter_chain_patch(self, port: PortContext) -> dict:
        if not port.tls:
            return {}
        cert = WORKLOAD_CERT_SECRET if port.proxy.role == SIDECAR_INBOUND else SERVER_CERT_SECRET
        return {"transportSocket": {"name": "envoy.transport_sockets.tls", "typedConfig": downstream_tls(cert)}}

    def resources(self, proxy: ProxyContext) -> list[Resource]:
        """The SDS secrets, only where some port terminates TLS."""
        return list(proxy.secrets) if any(listener.tls for listener in proxy.gateway.listeners) else []


def downstream_tls(cert_secret: str = SERVER_CERT_SECRET) -> dict:
    return {
        "@type": DOWNSTREAM_TLS_TYPE,
        "requireClientCertificate": True,
        "commonTlsContext": {
            "tlsCertificateSdsSecretConfigs": [{"name": cert_secret, "sdsConfig": ADS}],
            "validationContextSdsSecretConfig": {"name": TRUST_BUNDLE_SECRET, "sdsConfig": ADS},
            "alpnProtocols": ["h2", "http/1.1"],
        },
    }
