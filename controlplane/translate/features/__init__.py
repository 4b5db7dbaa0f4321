"""Envoy features, one module each, and the one ordered list that every role's builders loop over.

Each module implements the protocol of features/base.py (`Feature`): the HTTP filters it contributes,
its filter-chain and connection-manager fields, its per-virtual-host, per-route and per-weighted-cluster
configuration, and the resources it needs. `FEATURES` is the order of the HTTP filter chain, declared
here and nowhere else: the MCP filter parses first, the ExternalAuth delegation runs before the Allow
policies (upstream's evaluation order), the router is last. Each filter that denies ends the request,
so a request passes only if every level's authorizer and Allow policies allow it.

How to add a feature: write one file here with a `Feature` subclass that overrides the hooks it needs
(and returns nothing where it does not apply), then add one line to `FEATURES` at the filter position
it needs. Nothing else changes: the listener, route and cluster builders (translate/listener.py,
translate/route_config.py, translate/roles/) already call every feature's hooks.
"""

from __future__ import annotations

from controlplane.translate.features.access_log import AccessLog
from controlplane.translate.features.base import Feature
from controlplane.translate.features.ext_authz import ExtAuthz
from controlplane.translate.features.guardrail import Guardrail
from controlplane.translate.features.jsonrpc_denial import JsonRpcDenial
from controlplane.translate.features.local_rate_limit import LocalRateLimit
from controlplane.translate.features.mcp import Mcp
from controlplane.translate.features.otel import OpenTelemetry
from controlplane.translate.features.rbac import Rbac
from controlplane.translate.features.router import Router
from controlplane.translate.features.tls import DownstreamTls
from controlplane.translate.features.tools_list import ToolsList

FEATURES: tuple[Feature, ...] = (
    Mcp(),  # envoy.filters.http.mcp: JSON-RPC into dynamic metadata, fail closed
    ExtAuthz(),  # rbac.<level>_extauth marks, ext_authz.<level> delegates
    Rbac(),  # rbac.<level>: the Allow policies
    LocalRateLimit(),  # local_ratelimit.<level>: RateLimitPolicy buckets, after authorization
    Guardrail(),  # ext_proc.guardrail_<level>: GuardrailPolicy bodies to a guardrail service, fail closed
    ToolsList(),  # ext_proc.tools_list: tools/list responses filtered per caller by the control plane
    Router(),  # envoy.filters.http.router
    JsonRpcDenial(),  # local reply: a 403 as a JSON-RPC error, marked; the upstream's mark removed
    AccessLog(),  # stdout JSON access log
    OpenTelemetry(),  # with serve --otel-collector: OTLP spans and an OTLP access log beside the others
    DownstreamTls(),  # mTLS on HTTPS ports, SDS secrets
)
