"""The upstream kube-agentic-networking kinds: XAccessPolicy (v1alpha1, v0alpha0) and XBackend (v0alpha0).

Validation is the CRDs' (enums, patterns, item and length limits) plus their
`x-kubernetes-validations` CEL rules, re-expressed in Python with the CRDs' own messages, so that
a manifest the cluster rejects is rejected here too. v0alpha0 policies are converted to v1alpha1 on
read, as upstream's proposal 0008 maps them; everything downstream sees only v1alpha1.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from controlplane.api.base import Model, Resource
from controlplane.api.regex import envoy_regex_match

GROUP = "agentic.networking.x-k8s.io"
GATEWAY_GROUP = "gateway.networking.k8s.io"

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
GROUP_PATTERN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
SPIFFE_PATTERN = r"^spiffe://[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HTTP_PATH_PATTERN = r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$"
RULE_NAME = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_SUBDOMAIN)]


class Action(str, Enum):
    ALLOW = "Allow"
    EXTERNAL_AUTH = "ExternalAuth"


class SourceType(str, Enum):
    SERVICE_ACCOUNT = "ServiceAccount"
    SPIFFE = "SPIFFE"


class AuthorizationType(str, Enum):
    INLINE = "Inline"
    CEL = "CEL"


class BaseProtocolOption(str, Enum):
    SKIP = "SKIP_BASE_PROTOCOL_METHODS"
    MATCH = "MATCH_BASE_PROTOCOL_METHODS"


MCP_CATEGORIES = ("tools", "prompts", "resources")
MCP_LIST_METHODS = ("prompts/list", "tools/list", "resources/list", "resources/templates/list")
MCP_PARAM_METHODS = ("prompts/get", "tools/call", "resources/subscribe", "resources/unsubscribe", "resources/read")
MCPMethodName = Literal[
    "tools", "prompts", "resources",
    "prompts/list", "tools/list", "resources/list", "resources/templates/list",
    "prompts/get", "tools/call", "resources/subscribe", "resources/unsubscribe", "resources/read",
]
HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


def _unique(values: list, what: str) -> list:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be unique")
    return values


def _same_kind(refs: list) -> list:
    if any(ref.kind != refs[0].kind for ref in refs):
        raise ValueError("All targetRefs must have the same Kind")
    return refs


def _unique_rule_names(rules: list | None) -> list | None:
    if rules is not None and len({r.name for r in rules}) != len(rules):
        raise ValueError("AccessRule names must be unique")
    return rules


# --- references -----------------------------------------------------------------------------------------


class PolicyTargetRef(Model):
    """Gateway API LocalPolicyTargetReferenceWithSectionName."""

    group: str = Field(max_length=253, pattern=GROUP_PATTERN)
    kind: str = Field(min_length=1, max_length=63, pattern=KIND_PATTERN)
    name: str = Field(min_length=1, max_length=253)
    section_name: str | None = Field(default=None, alias="sectionName", min_length=1, max_length=253,
                                     pattern=DNS_SUBDOMAIN)


class BackendObjectRef(Model):
    """Gateway API BackendObjectReference (used by ExternalAuth)."""

    group: str = Field(default="", max_length=253, pattern=GROUP_PATTERN)
    kind: str = Field(default="Service", min_length=1, max_length=63, pattern=KIND_PATTERN)
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, min_length=1, max_length=63, pattern=DNS_LABEL)
    port: int | None = Field(default=None, ge=1, le=65535)

    @model_validator(mode="after")
    def _service_needs_port(self) -> BackendObjectRef:
        if self.group == "" and self.kind == "Service" and self.port is None:
            raise ValueError("Must have port for Service reference")
        return self


class GRPCAuthConfig(Model):
    allowed_headers: list[str] | None = Field(default=None, alias="allowedHeaders", max_length=64)


class HTTPAuthConfig(Model):
    path: str | None = Field(default=None, max_length=1024, pattern=HTTP_PATH_PATTERN)
    allowed_headers: list[str] | None = Field(default=None, alias="allowedHeaders", max_length=64)
    allowed_response_headers: list[str] | None = Field(default=None, alias="allowedResponseHeaders",
                                                       max_length=64)


class ForwardBody(Model):
    max_size: int | None = Field(default=None, alias="maxSize", ge=0)


class ExternalAuth(Model):
    """Gateway API HTTPExternalAuthFilter."""

    protocol: Literal["HTTP", "GRPC"]
    backend_ref: BackendObjectRef = Field(alias="backendRef")
    grpc: GRPCAuthConfig | None = None
    http: HTTPAuthConfig | None = None
    forward_body: ForwardBody | None = Field(default=None, alias="forwardBody")

    @model_validator(mode="after")
    def _protocol_matches_config(self) -> ExternalAuth:
        if self.protocol == "GRPC" and self.grpc is None:
            raise ValueError("grpc must be specified when protocol is set to 'GRPC'")
        if self.grpc is not None and self.protocol != "GRPC":
            raise ValueError("protocol must be 'GRPC' when grpc is set")
        if self.protocol == "HTTP" and self.http is None:
            raise ValueError("http must be specified when protocol is set to 'HTTP'")
        if self.http is not None and self.protocol != "HTTP":
            raise ValueError("protocol must be 'HTTP' when http is set")
        return self


# --- v1alpha1 access rules -----------------------------------------------------------------------------


class ServiceAccountRef(Model):
    name: str
    namespace: str | None = None


class RuleSource(Model):
    type: SourceType | None = None
    spiffe: str | None = Field(default=None, pattern=SPIFFE_PATTERN)
    service_account: ServiceAccountRef | None = Field(default=None, alias="serviceAccount")


class MCPMethod(Model):
    name: MCPMethodName
    params: list[Annotated[str, Field(max_length=20)]] | None = Field(default=None, max_length=10)

    @field_validator("params")
    @classmethod
    def _params_set(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _unique(v, "params")

    @model_validator(mode="after")
    def _params_only_for_parameterised(self) -> MCPMethod:
        if self.params and self.name not in MCP_PARAM_METHODS:
            raise ValueError("Params can only be specified for get, call, subscribe, unsubscribe, or read methods")
        return self


class MCPAttributes(Model):
    methods: list[MCPMethod] | None = Field(default=None, max_length=10)
    base_protocol: BaseProtocolOption = Field(default=BaseProtocolOption.SKIP, alias="mcpBaseProtocolMethodsOption")

    @field_validator("methods")
    @classmethod
    def _method_names_unique(cls, v: list[MCPMethod] | None) -> list[MCPMethod] | None:
        if v is not None:
            _unique([m.name for m in v], "methods[].name")
        return v


class HTTPPathMatch(Model):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = Field(default="", max_length=1024)

    @model_validator(mode="after")
    def _envoy_regex(self) -> Self:
        return envoy_regex_match(self)


class HTTPHeaderMatch(Model):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str = Field(min_length=1, max_length=256, pattern=HEADER_NAME_PATTERN)
    value: str = Field(min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _envoy_regex(self) -> Self:
        return envoy_regex_match(self)


class CELRule(Model):
    expression: str
    message: str | None = None


class Authorization(Model):
    type: AuthorizationType
    methods: list[HTTPMethod] | None = Field(default=None, max_length=9)
    paths: list[HTTPPathMatch] | None = Field(default=None, max_length=10)
    headers: list[HTTPHeaderMatch] | None = Field(default=None, max_length=10)
    hosts: list[Annotated[str, Field(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)]] | None = Field(
        default=None, max_length=10)
    ports: list[Annotated[int, Field(ge=1, le=65535)]] | None = Field(default=None, max_length=10)
    mcp: MCPAttributes | None = None
    cel: CELRule | None = None

    @field_validator("methods", "hosts", "ports")
    @classmethod
    def _sets(cls, v: list | None) -> list | None:
        return None if v is None else _unique(v, "items")

    @model_validator(mode="after")
    def _cel_iff_cel_type(self) -> Authorization:
        if self.type is AuthorizationType.CEL and self.cel is None:
            raise ValueError("cel must be specified when type is set to 'CEL'")
        if self.type is AuthorizationType.INLINE and self.cel is not None:
            raise ValueError("cel must not be specified when type is set to 'Inline'")
        return self


class AccessRule(Model):
    name: RULE_NAME
    source: RuleSource | None = None
    authorization: Authorization | None = None


class AccessPolicySpec(Model):
    target_refs: list[PolicyTargetRef] = Field(alias="targetRefs", min_length=1, max_length=10)
    action: Action
    external_auth: ExternalAuth | None = Field(default=None, alias="externalAuth")
    rules: list[AccessRule] | None = Field(default=None, max_length=10)

    @field_validator("target_refs")
    @classmethod
    def _targets(cls, v: list[PolicyTargetRef]) -> list[PolicyTargetRef]:
        return _same_kind(v)

    @field_validator("rules")
    @classmethod
    def _rule_names_unique(cls, v: list[AccessRule] | None) -> list[AccessRule] | None:
        return _unique_rule_names(v)

    @model_validator(mode="after")
    def _external_auth_for_action(self) -> AccessPolicySpec:
        if self.action is Action.EXTERNAL_AUTH and self.external_auth is None:
            raise ValueError("externalAuth must be specified when action is set to 'ExternalAuth'")
        return self


class XAccessPolicy(Resource):
    """XAccessPolicy as v1alpha1 (v0alpha0 documents are converted on read: see `XAccessPolicyV0`)."""

    API_GROUP: ClassVar[str] = GROUP
    KIND: ClassVar[str] = "XAccessPolicy"
    spec: AccessPolicySpec


# --- v0alpha0 --------------------------------------------------------------------------------------------


class V0RuleSource(RuleSource):
    type: SourceType


class V0Authorization(Model):
    type: Literal["InlineTools", "ExternalAuth", "CEL"]
    tools: list[str] | None = None
    external_auth: ExternalAuth | None = Field(default=None, alias="externalAuth")
    cel: CELRule | None = None

    @model_validator(mode="after")
    def _one_member_for_type(self) -> V0Authorization:
        if self.type == "InlineTools" and self.tools is None:
            raise ValueError("tools must be specified when type is set to 'InlineTools'")
        if self.type == "ExternalAuth" and self.external_auth is None:
            raise ValueError("externalAuth must be specified when type is set to 'ExternalAuth'")
        if self.type == "CEL" and self.cel is None:
            raise ValueError("cel must be specified when type is set to 'CEL'")
        if sum(x is not None for x in (self.tools, self.external_auth, self.cel)) > 1:
            raise ValueError("only one of tools, externalAuth or cel can be specified")
        return self


class V0AccessRule(Model):
    name: RULE_NAME
    source: V0RuleSource
    authorization: V0Authorization | None = None


class V0AccessPolicySpec(Model):
    target_refs: list[PolicyTargetRef] = Field(alias="targetRefs", min_length=1, max_length=10)
    rules: list[V0AccessRule] = Field(min_length=1, max_length=10)

    @field_validator("target_refs")
    @classmethod
    def _kinds(cls, v: list[PolicyTargetRef]) -> list[PolicyTargetRef]:
        allowed = {(GROUP, "XBackend"), (GATEWAY_GROUP, "Gateway")}
        if any((ref.group, ref.kind) not in allowed for ref in v):
            raise ValueError("TargetRef must have group agentic.networking.x-k8s.io and kind XBackend, "
                             "or group gateway.networking.k8s.io and kind Gateway")
        return _same_kind(v)

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: list[V0AccessRule]) -> list[V0AccessRule]:
        _unique_rule_names(v)
        if sum(1 for r in v if r.authorization and r.authorization.type == "ExternalAuth") > 1:
            raise ValueError("a maximum of one rule per policy can specify 'ExternalAuth'")
        return v


class XAccessPolicyV0(Resource):
    """The legacy v0alpha0 form, read and converted; never kept."""

    API_GROUP: ClassVar[str] = GROUP
    KIND: ClassVar[str] = "XAccessPolicy"
    spec: V0AccessPolicySpec

    def to_v1alpha1(self) -> XAccessPolicy:
        """Proposal 0008's mapping: flat tools -> Inline tools/call params; rule ExternalAuth -> spec.action.

        A v0alpha0 policy that mixes an ExternalAuth rule with other rules has no single v1alpha1
        equivalent; it is refused (ValueError) rather than converted with rules silently dropped.
        """
        ext_rule = next((r for r in self.spec.rules if r.authorization and r.authorization.type == "ExternalAuth"),
                        None)
        if ext_rule is not None and len(self.spec.rules) > 1:
            raise ValueError("a v0alpha0 policy with an ExternalAuth rule and other rules has no v1alpha1 "
                             "equivalent: split it into an ExternalAuth policy and an Allow policy")
        if ext_rule is not None:
            spec = AccessPolicySpec(targetRefs=self.spec.target_refs, action=Action.EXTERNAL_AUTH,
                                    externalAuth=ext_rule.authorization.external_auth,
                                    rules=[AccessRule(name=ext_rule.name, source=_v1_source(ext_rule.source))])
        else:
            spec = AccessPolicySpec(targetRefs=self.spec.target_refs, action=Action.ALLOW,
                                    rules=[_v1_rule(r) for r in self.spec.rules])
        return XAccessPolicy(apiVersion=f"{GROUP}/v1alpha1", kind="XAccessPolicy", metadata=self.metadata,
                             spec=spec, status=self.status)


def _v1_source(source: V0RuleSource) -> RuleSource:
    return RuleSource(type=source.type, spiffe=source.spiffe, serviceAccount=source.service_account)


def _v1_rule(rule: V0AccessRule) -> AccessRule:
    auth = rule.authorization
    if auth is None:
        return AccessRule(name=rule.name, source=_v1_source(rule.source))
    if auth.type == "CEL":
        authorization = Authorization(type=AuthorizationType.CEL, cel=auth.cel)
    else:
        # An empty v0 tools list allowed no tool; MATCH keeps the base protocol usable, as v0 did.
        methods = [MCPMethod(name="tools/call", params=list(auth.tools))] if auth.tools else None
        authorization = Authorization(type=AuthorizationType.INLINE,
                                      mcp=MCPAttributes(methods=methods,
                                                        mcpBaseProtocolMethodsOption=BaseProtocolOption.MATCH))
    return AccessRule(name=rule.name, source=_v1_source(rule.source), authorization=authorization)


# --- XBackend -------------------------------------------------------------------------------------------


class MCPBackend(Model):
    service_name: str | None = Field(default=None, alias="serviceName")
    hostname: str | None = None
    port: int = Field(ge=1, le=65535)
    path: str = "/mcp"

    @model_validator(mode="after")
    def _exactly_one_destination(self) -> MCPBackend:
        if (self.service_name is None) == (self.hostname is None):
            raise ValueError("exactly one of the fields in [serviceName hostname] must be set")
        return self


class BackendSpec(Model):
    mcp: MCPBackend


class XBackend(Resource):
    API_GROUP: ClassVar[str] = GROUP
    KIND: ClassVar[str] = "XBackend"
    spec: BackendSpec
