"""ExternalAuth policies: delegate a request to the authorizer a policy names, per level (Gateway, XBackend).

Two filters per level sit in every listener's chain, before the Allow policies' RBAC (upstream's
evaluation order): `rbac.<level>_extauth`, an allow-all RBAC whose shadow rules are the policy's rules,
and `ext_authz.<level>`. A matching shadow rule only writes `<level>_extauth_shadow_effective_policy_id`
into the `envoy.filters.http.rbac` dynamic metadata, which is what switches the level's ext_authz filter
on for that request (filter_enabled_metadata), as upstream does. The listener's ext_authz filter has a
placeholder service (Envoy 1.40 accepts a cluster that does not exist and resolves it per request); the
virtual host (Gateway level) or weighted cluster (XBackend level) names the policy's real authorizer
(`ExtAuthzPerRoute.check_settings`). It fails closed: a failed or unreachable authorizer denies (403,
answered as the JSON-RPC denial), and the authorizer's EDS cluster has no endpoints until the Service has
ready ones. The authorizer receives the MCP metadata (method, params.name) and the peer certificate.
"""

from __future__ import annotations

from controlplane.api.agentic import Action, ExternalAuth
from controlplane.graph.view import BackendRefView, ListenerView, PolicyAttachment
from controlplane.translate import clusters
from controlplane.translate.context import BACKEND, GATEWAY, PortContext, ProxyContext
from controlplane.translate.features.base import Feature
from controlplane.translate.features.rbac import (
    ANY,
    MCP_METADATA,
    RBAC_PER_ROUTE_TYPE,
    SHADOW_POLICY_ID_KEY,
    fully_parsed,
    level_filter_config,
    rule_policy,
)
from controlplane.xds.resources import Resource

EXT_AUTHZ_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
EXT_AUTHZ_PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
EXT_AUTHZ_UNSET_CLUSTER = "ext-authz-unset"  # never defined: reached only if a route forgot its override
EXT_AUTHZ_TIMEOUT = "2s"  # Gateway API has no field for it; Envoy's 200 ms default is tight for a remote authorizer


def extauth_rbac_filter(level: str) -> str:
    return f"envoy.filters.http.rbac.{level}_extauth"


def ext_authz_filter(level: str) -> str:
    return f"envoy.filters.http.ext_authz.{level}"


def extauth_stat_prefix(level: str) -> str:
    return f"{level}_extauth_"


def delegated_key(level: str) -> str:
    """The RBAC dynamic-metadata key that is present exactly when a delegating shadow rule matched."""
    return extauth_stat_prefix(level) + SHADOW_POLICY_ID_KEY


def ext_authz_cluster_name(protocol: str, namespace: str, name: str, port: int | None) -> str:
    """One cluster per authorizer Service port and protocol (a gRPC cluster needs HTTP/2, HTTP not)."""
    return f"ext-authz/{protocol.lower()}/{namespace}/{name}/{port or 0}"


class ExtAuthz(Feature):
    name = "ext_authz"

    def http_filters(self, port: PortContext) -> list[dict]:
        if not port.proxy.enforces_policy:
            return []
        marks = [{"name": extauth_rbac_filter(level), "typedConfig": level_filter_config(f"{level}_extauth")}
                 for level in (GATEWAY, BACKEND)]
        return marks + [{"name": ext_authz_filter(level), "typedConfig": _ext_authz(level)}
                        for level in (GATEWAY, BACKEND)]

    def virtual_host_config(self, proxy: ProxyContext, listener: ListenerView) -> dict:
        return _level_config(listener.policies, GATEWAY)

    def weighted_cluster_config(self, proxy: ProxyContext, backend: BackendRefView) -> dict:
        return _level_config(backend.backend.policies, BACKEND)

    def resources(self, proxy: ProxyContext) -> list[Resource]:
        """An EDS cluster per authorizer the Gateway's and its backends' policies delegate to."""
        out: list[Resource] = []
        for listener in proxy.gateway.listeners:
            out += _authorizer_clusters(listener.policies)
            for attachment in listener.routes:
                for ref in attachment.rule.backends:
                    out += _authorizer_clusters(ref.backend.policies)
        return out


def _delegating(policies: tuple[PolicyAttachment, ...]) -> PolicyAttachment | None:
    """The target's ExternalAuth policy in force (admission allows one per target), if any."""
    external = next((p for p in policies if p.action is Action.EXTERNAL_AUTH), None)
    return None if external is None or external.withheld else external  # withheld: features/rbac.py denies


def _level_config(policies: tuple[PolicyAttachment, ...], level: str) -> dict:
    external = _delegating(policies)
    if external is None:
        return {}
    return {extauth_rbac_filter(level): external_auth_rbac(external, stat_prefix=extauth_stat_prefix(level)),
            ext_authz_filter(level): ext_authz_per_route(external)}


def _ext_authz(level: str) -> dict:
    """A level's ext_authz filter: off unless the level's `*_extauth` shadow rules delegated the request."""
    return {
        "@type": EXT_AUTHZ_TYPE,
        "grpcService": {"envoyGrpc": {"clusterName": EXT_AUTHZ_UNSET_CLUSTER}},
        "transportApiVersion": "V3",
        "failureModeAllow": False,
        "metadataContextNamespaces": [MCP_METADATA],
        "includePeerCertificate": True,
        "statPrefix": level,
        "filterEnabledMetadata": {"filter": "envoy.filters.http.rbac", "path": [{"key": delegated_key(level)}],
                                  "value": {"presentMatch": True}},
    }


def external_auth_rbac(policy: PolicyAttachment, *, stat_prefix: str) -> dict:
    """RBACPerRoute that lets everything through and marks, via its shadow rules, what to delegate.

    A policy without rules resolves to one any/any rule (it applies to all traffic)."""
    policies = {rule.ref: rule_policy(rule) for rule in policy.rules}
    allow_all = {"action": "ALLOW", "policies": {"allow-all": {"permissions": [fully_parsed()], "principals": [ANY]}}}
    rbac = {"rules": allow_all, "shadowRules": {"action": "ALLOW", "policies": policies},
            "shadowRulesStatPrefix": stat_prefix}
    return {"@type": RBAC_PER_ROUTE_TYPE, "rbac": rbac}


def authorizer_cluster(policy: PolicyAttachment) -> str:
    auth = policy.authorizer
    return ext_authz_cluster_name(auth.protocol, auth.namespace, auth.name, auth.port)


def ext_authz_per_route(policy: PolicyAttachment) -> dict:
    """The policy's authorizer as this route's ext_authz service; a body is forwarded whole or not at all.

    `allowPartialMessage: false`: a body over `forwardBody.maxSize` is refused (413), never sent
    truncated, since an authorizer judging half a JSON-RPC message could be fooled (fail closed)."""
    auth, authorizer = policy.external_auth, policy.authorizer
    cluster = authorizer_cluster(policy)
    authority = f"{authorizer.name}.{authorizer.namespace}.svc.cluster.local"
    if auth.protocol == "GRPC":
        settings: dict = {"grpcService": {"envoyGrpc": {"clusterName": cluster, "authority": authority},
                                          "timeout": EXT_AUTHZ_TIMEOUT}}
    else:
        settings = {"httpService": _http_service(auth, cluster, f"http://{authority}:{authorizer.port or 80}")}
    if auth.forward_body is not None and auth.forward_body.max_size:
        settings["withRequestBody"] = {"maxRequestBytes": auth.forward_body.max_size, "allowPartialMessage": False}
    return {"@type": EXT_AUTHZ_PER_ROUTE_TYPE, "checkSettings": settings}


def _http_service(auth: ExternalAuth, cluster: str, uri: str) -> dict:
    service: dict = {"serverUri": {"uri": uri, "cluster": cluster, "timeout": EXT_AUTHZ_TIMEOUT}}
    if auth.http.path:
        service["pathPrefix"] = auth.http.path
    if auth.http.allowed_response_headers:
        service["authorizationResponse"] = {"allowedUpstreamHeaders": {"patterns": [
            {"exact": h, "ignoreCase": True} for h in auth.http.allowed_response_headers]}}
    return service


def _authorizer_clusters(policies: tuple[PolicyAttachment, ...]) -> list[Resource]:
    """An EDS cluster per ExternalAuth policy's authorizer (HTTP/2 for gRPC); no endpoints: fail closed."""
    return [resource for policy in policies if policy.action is Action.EXTERNAL_AUTH
            for resource in clusters.eds(authorizer_cluster(policy), policy.authorizer.endpoints,
                                         http2=policy.authorizer.protocol == "GRPC")]
