"""Gateway API kinds this project reads: GatewayClass, Gateway, HTTPRoute (v1) and ReferenceGrant (v1beta1).

Only the fields the control plane acts on are modelled and checked (with Gateway API's own limits);
other fields are kept as they are, since Gateway API owns these kinds and grows them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from controlplane.api.agentic import DNS_SUBDOMAIN, GATEWAY_GROUP, GROUP_PATTERN, KIND_PATTERN
from controlplane.api.base import LenientModel, Resource
from controlplane.api.regex import envoy_regex_match

SECTION_NAME = DNS_SUBDOMAIN
GATEWAY_HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
OUR_CONTROLLER = "sigs.k8s.io/kube-agentic-networking-controller"


class LabelSelectorRequirement(LenientModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(LenientModel):
    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, alias="matchExpressions")

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(_requirement_holds(r, labels) for r in self.match_expressions)


def _requirement_holds(req: LabelSelectorRequirement, labels: dict[str, str]) -> bool:
    present = req.key in labels
    match req.operator:
        case "In":
            return present and labels[req.key] in req.values
        case "NotIn":
            return not present or labels[req.key] not in req.values
        case "Exists":
            return present
        case _:
            return not present


# --- GatewayClass -----------------------------------------------------------------------------------------


class GatewayClassSpec(LenientModel):
    controller_name: str = Field(alias="controllerName", min_length=1, max_length=253)


class GatewayClass(Resource):
    API_GROUP: ClassVar[str] = GATEWAY_GROUP
    KIND: ClassVar[str] = "GatewayClass"
    NAMESPACED: ClassVar[bool] = False
    spec: GatewayClassSpec


# --- Gateway --------------------------------------------------------------------------------------------


class ObjectRef(LenientModel):
    """A SecretObjectReference / ConfigMap reference: group, kind, name, optional namespace."""

    group: str = Field(default="", pattern=GROUP_PATTERN)
    kind: str = Field(default="Secret", pattern=KIND_PATTERN)
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = None


class ListenerTLS(LenientModel):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: list[ObjectRef] = Field(default_factory=list, alias="certificateRefs", max_length=64)


class RouteNamespaces(LenientModel):
    from_: Literal["All", "Same", "Selector", "None"] = Field(default="Same", alias="from")
    selector: LabelSelector | None = None


class RouteGroupKind(LenientModel):
    group: str = GATEWAY_GROUP
    kind: str


class AllowedRoutes(LenientModel):
    namespaces: RouteNamespaces = Field(default_factory=RouteNamespaces)
    kinds: list[RouteGroupKind] = Field(default_factory=list, max_length=8)


class Listener(LenientModel):
    name: str = Field(min_length=1, max_length=253, pattern=SECTION_NAME)
    hostname: str | None = Field(default=None, max_length=253, pattern=GATEWAY_HOSTNAME)
    port: int = Field(ge=1, le=65535)
    protocol: str = Field(min_length=1, max_length=255)
    tls: ListenerTLS | None = None
    allowed_routes: AllowedRoutes = Field(default_factory=AllowedRoutes, alias="allowedRoutes")


class FrontendValidation(LenientModel):
    ca_certificate_refs: list[ObjectRef] = Field(default_factory=list, alias="caCertificateRefs", max_length=8)
    mode: str = "AllowValidOnly"


class FrontendTLSConfig(LenientModel):
    validation: FrontendValidation | None = None


class FrontendTLSPort(LenientModel):
    port: int = Field(ge=1, le=65535)
    tls: FrontendTLSConfig


class FrontendTLS(LenientModel):
    default: FrontendTLSConfig | None = None
    per_port: list[FrontendTLSPort] = Field(default_factory=list, alias="perPort")


class GatewayTLS(LenientModel):
    frontend: FrontendTLS | None = None


class Infrastructure(LenientModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class GatewaySpec(LenientModel):
    gateway_class_name: str = Field(alias="gatewayClassName", min_length=1, max_length=253)
    listeners: list[Listener] = Field(min_length=1, max_length=64)
    tls: GatewayTLS | None = None
    infrastructure: Infrastructure | None = None

    @field_validator("listeners")
    @classmethod
    def _unique_names(cls, v: list[Listener]) -> list[Listener]:
        if len({lst.name for lst in v}) != len(v):
            raise ValueError("Listener name must be unique within the Gateway")
        return v

    @model_validator(mode="after")
    def _tls_for_https(self) -> GatewaySpec:
        for listener in self.listeners:
            if listener.protocol in ("HTTP", "TCP", "UDP") and listener.tls is not None:
                raise ValueError(f"tls must not be specified for protocols ['HTTP', 'TCP', 'UDP'] "
                                 f"(listener {listener.name})")
        return self


class Gateway(Resource):
    API_GROUP: ClassVar[str] = GATEWAY_GROUP
    KIND: ClassVar[str] = "Gateway"
    spec: GatewaySpec


# --- HTTPRoute -------------------------------------------------------------------------------------------


class ParentRef(LenientModel):
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    namespace: str | None = None
    name: str = Field(min_length=1, max_length=253)
    section_name: str | None = Field(default=None, alias="sectionName", pattern=SECTION_NAME)
    port: int | None = Field(default=None, ge=1, le=65535)


class PathMatch(LenientModel):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = Field(default="/", max_length=1024)

    @model_validator(mode="after")
    def _absolute(self) -> PathMatch:
        if self.type != "RegularExpression" and not self.value.startswith("/"):
            raise ValueError("value must be an absolute path and start with '/' when type one of "
                             "['Exact', 'PathPrefix']")
        return envoy_regex_match(self)


class HeaderMatch(LenientModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=4096)

    @model_validator(mode="after")
    def _envoy_regex(self) -> HeaderMatch:
        return envoy_regex_match(self)


class RouteMatch(LenientModel):
    path: PathMatch | None = Field(default_factory=PathMatch)
    headers: list[HeaderMatch] = Field(default_factory=list, max_length=16)
    query_params: list[HeaderMatch] = Field(default_factory=list, alias="queryParams", max_length=16)
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] | None = None


class HeaderValue(LenientModel):
    name: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=4096)


class HeaderModifier(LenientModel):
    set: list[HeaderValue] = Field(default_factory=list, max_length=16)
    add: list[HeaderValue] = Field(default_factory=list, max_length=16)
    remove: list[str] = Field(default_factory=list, max_length=16)


class PathModifier(LenientModel):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = Field(default=None, alias="replaceFullPath")
    replace_prefix_match: str | None = Field(default=None, alias="replacePrefixMatch")

    @model_validator(mode="after")
    def _value_for_type(self) -> PathModifier:
        if self.type == "ReplaceFullPath" and self.replace_full_path is None:
            raise ValueError("replaceFullPath must be specified when type is set to 'ReplaceFullPath'")
        if self.type == "ReplacePrefixMatch" and self.replace_prefix_match is None:
            raise ValueError("replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'")
        return self


class URLRewrite(LenientModel):
    hostname: str | None = None
    path: PathModifier | None = None


class RequestRedirect(LenientModel):
    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    status_code: Literal[301, 302, 303, 307, 308] = Field(default=302, alias="statusCode")


FILTER_TYPES = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "RequestRedirect",
                "URLRewrite", "ExtensionRef", "CORS", "ExternalAuth")


class RouteFilter(LenientModel):
    type: Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "RequestRedirect",
                  "URLRewrite", "ExtensionRef", "CORS", "ExternalAuth"]
    request_header_modifier: HeaderModifier | None = Field(default=None, alias="requestHeaderModifier")
    response_header_modifier: HeaderModifier | None = Field(default=None, alias="responseHeaderModifier")
    request_redirect: RequestRedirect | None = Field(default=None, alias="requestRedirect")
    url_rewrite: URLRewrite | None = Field(default=None, alias="urlRewrite")

    @model_validator(mode="after")
    def _config_for_type(self) -> RouteFilter:
        needed = {"RequestHeaderModifier": ("requestHeaderModifier", self.request_header_modifier),
                  "ResponseHeaderModifier": ("responseHeaderModifier", self.response_header_modifier),
                  "RequestRedirect": ("requestRedirect", self.request_redirect),
                  "URLRewrite": ("urlRewrite", self.url_rewrite)}
        if self.type in needed and needed[self.type][1] is None:
            raise ValueError(f"filter.{needed[self.type][0]} must be specified for {self.type} filter.type")
        return self


class BackendRef(LenientModel):
    group: str = ""
    kind: str = "Service"
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    weight: int = Field(default=1, ge=0, le=1000000)

    @model_validator(mode="after")
    def _service_port(self) -> BackendRef:
        if self.group == "" and self.kind == "Service" and self.port is None:
            raise ValueError("Must have port for Service reference")
        return self


class RouteRule(LenientModel):
    name: str | None = Field(default=None, pattern=SECTION_NAME)
    matches: list[RouteMatch] = Field(default_factory=lambda: [RouteMatch()], max_length=64)
    filters: list[RouteFilter] = Field(default_factory=list, max_length=16)
    backend_refs: list[BackendRef] = Field(default_factory=list, alias="backendRefs", max_length=16)

    @model_validator(mode="after")
    def _filters(self) -> RouteRule:
        kinds = [f.type for f in self.filters]
        if "RequestRedirect" in kinds and "URLRewrite" in kinds:
            raise ValueError("May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, "
                             "but not both")
        if kinds.count("RequestRedirect") > 1 or kinds.count("URLRewrite") > 1:
            raise ValueError("RequestRedirect and URLRewrite filters may each be given at most once")
        return self


class HTTPRouteSpec(LenientModel):
    parent_refs: list[ParentRef] = Field(default_factory=list, alias="parentRefs", max_length=32)
    hostnames: list[str] = Field(default_factory=list, max_length=16)
    rules: list[RouteRule] = Field(default_factory=lambda: [RouteRule()], max_length=16)


class HTTPRoute(Resource):
    API_GROUP: ClassVar[str] = GATEWAY_GROUP
    KIND: ClassVar[str] = "HTTPRoute"
    spec: HTTPRouteSpec


# --- ReferenceGrant --------------------------------------------------------------------------------------


class GrantFrom(LenientModel):
    group: str
    kind: str
    namespace: str


class GrantTo(LenientModel):
    group: str
    kind: str
    name: str | None = None


class ReferenceGrantSpec(LenientModel):
    from_: list[GrantFrom] = Field(alias="from", min_length=1, max_length=16)
    to: list[GrantTo] = Field(min_length=1, max_length=16)


class ReferenceGrant(Resource):
    API_GROUP: ClassVar[str] = GATEWAY_GROUP
    KIND: ClassVar[str] = "ReferenceGrant"
    spec: ReferenceGrantSpec

    def permits(self, *, from_group: str, from_kind: str, from_namespace: str, to_group: str, to_kind: str,
                to_name: str) -> bool:
        source_ok = any(f.group == from_group and f.kind == from_kind and f.namespace == from_namespace
                        for f in self.spec.from_)
        return source_ok and any(t.group == to_group and t.kind == to_kind and t.name in (None, to_name)
                                 for t in self.spec.to)
