"""Credential injection at the egress (Envoy's `envoy.filters.http.credential_injector`), so that agents
never hold an LLM provider's or external MCP server's key.

Why an *upstream* HTTP filter (in the XBackend's cluster, `HttpProtocolOptions.http_filters`) and not one
in the connection manager: the injector has no per-route configuration, and each credential must reach
its own provider and no other. In the cluster it runs once the request is routed to that provider,
after every decision (a denied request never carries it). It holds a generic credential read from an SDS
secret (`credential/<ns>/<xbackend>`, identity/sds.credential_secret) into the header the XBackend's
annotation names (api/egress.py); `overwrite` replaces whatever the agent sent there. Used by the egress
role only (translate/roles/egress.py), so it is not in `FEATURES`.
"""

from __future__ import annotations

from controlplane.api.base import ResourceKey
from controlplane.translate.context import ADS

FILTER = "envoy.filters.http.credential_injector"
INJECTOR_TYPE = "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector"
GENERIC_TYPE = "type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic"
CODEC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def credential_secret_name(backend: ResourceKey) -> str:
    return f"credential/{backend.namespace}/{backend.name}"


def protocol_options(backend: ResourceKey, header: str) -> dict:
    """The cluster's `typedExtensionProtocolOptions`: HTTP/1.1 upstream, the injector, then the codec."""
    generic = {"@type": GENERIC_TYPE, "credential": {"name": credential_secret_name(backend), "sdsConfig": ADS},
               "header": header}
    injector = {"name": FILTER, "typedConfig": {
        "@type": INJECTOR_TYPE, "overwrite": True,
        "credential": {"name": "envoy.http.injected_credentials.generic", "typedConfig": generic}}}
    codec = {"name": "envoy.filters.http.upstream_codec", "typedConfig": {"@type": CODEC_TYPE}}
    return {HTTP_PROTOCOL_OPTIONS: {"@type": f"type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}",
                                    "explicitHttpConfig": {"httpProtocolOptions": {}},
                                    "httpFilters": [injector, codec]}}
