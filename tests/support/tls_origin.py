"""A local Envoy that takes plain HTTP and calls an mTLS gateway with an agent's SVID (a static bootstrap).

Why: a client that cannot present a client certificate (the MCP conformance suite's Node client has no
such option) still has to reach the gateway as a caller the policies name. Envoy in front of it, on
loopback, holds the agent's certificate and key, verifies the gateway by the SPIFFE ID in its
certificate's URI SAN against the mesh CA bundle, and forwards every request unchanged: no route
timeout (SSE streams stay open as long as the caller wants), HTTP/1.1 both ways as the client spoke it.

    bootstrap = tls_originating_bootstrap(listen_port=..., gateway_port=..., cert=..., key=..., bundle=...,
                                          gateway_spiffe_id="spiffe://cluster.local/ns/quickstart/sa/agent-gateway")
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["tls_originating_bootstrap"]


def tls_originating_bootstrap(*, listen_port: int, gateway_port: int, cert: Path, key: Path, bundle: Path,
                              gateway_spiffe_id: str) -> dict:
    """The bootstrap (a dict; ``envoy.write_config`` writes it) of the plain-HTTP -> mTLS forwarder."""
    return {
        "admin": {"address": _address(0)},
        "static_resources": {
            "listeners": [{
                "name": "plain-http",
                "address": _address(listen_port),
                "filter_chains": [{"filters": [_http_connection_manager()]}],
            }],
            "clusters": [{
                "name": "gateway",
                "type": "STATIC",
                "connect_timeout": "5s",
                "load_assignment": {"cluster_name": "gateway", "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": _address(gateway_port)}}]}]},
                "transport_socket": _upstream_mtls(cert, key, bundle, gateway_spiffe_id),
            }],
        },
    }


def _address(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _http_connection_manager() -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                     "HttpConnectionManager",
            "stat_prefix": "tls_origin",
            "stream_idle_timeout": "0s",  # an idle SSE stream is the caller's to close
            "route_config": {"virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "gateway", "timeout": "0s"}}],
            }]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        },
    }


def _upstream_mtls(cert: Path, key: Path, bundle: Path, gateway_spiffe_id: str) -> dict:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": str(cert)},
                                      "private_key": {"filename": str(key)}}],
                "validation_context": {
                    "trusted_ca": {"filename": str(bundle)},
                    "match_typed_subject_alt_names": [{"san_type": "URI",
                                                       "matcher": {"exact": gateway_spiffe_id}}],
                },
            },
        },
    }
