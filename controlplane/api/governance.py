"""This project's own policy kinds (`governance.agentic-cp.dev/v1alpha1`): RateLimitPolicy, GuardrailPolicy.

Why a group of our own: upstream's groups are never extended with our fields (DESIGN.md). A
RateLimitPolicy attaches as XAccessPolicy does (`targetRefs` to a Gateway or an XBackend) and names
limits of N requests per second, minute or hour, each optionally narrowed to one caller (the
XAccessPolicy source shape) and to `tools/call` tool names. Every caller and every tool a limit covers
gets its own bucket. A GuardrailPolicy attaches the same way and sends MCP request and response bodies
to a guardrail service (Envoy's ext_proc protocol) that may block them. The validation here is the CRD's (helm/agentic-cp/crds), so that a manifest the
cluster rejects is rejected here too.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, ClassVar

from pydantic import Field, field_validator, model_validator

from controlplane.api.agentic import (
    RULE_NAME,
    BackendObjectRef,
    PolicyTargetRef,
    RuleSource,
    _same_kind,
    _unique,
)
from controlplane.api.base import Model, Resource

GOVERNANCE_GROUP = "governance.agentic-cp.dev"
TOOL_NAME = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_./-]+$")]
MAX_REQUESTS = 1_000_000


class Per(str, Enum):
    SECOND = "Second"
    MINUTE = "Minute"
    HOUR = "Hour"

    @property
    def seconds(self) -> int:
        return {"Second": 1, "Minute": 60, "Hour": 3600}[self.value]


class RateLimit(Model):
    """N requests per interval, per caller x tool, for the callers and tools it names (all when unset)."""

    name: RULE_NAME
    source: RuleSource | None = None
    tools: list[TOOL_NAME] | None = Field(default=None, min_length=1, max_length=16)
    requests: int = Field(ge=1, le=MAX_REQUESTS)
    per: Per

    @field_validator("tools")
    @classmethod
    def _tools_set(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _unique(v, "tools")


class RateLimitPolicySpec(Model):
    target_refs: list[PolicyTargetRef] = Field(alias="targetRefs", min_length=1, max_length=10)
    limits: list[RateLimit] = Field(min_length=1, max_length=16)

    @field_validator("target_refs")
    @classmethod
    def _targets(cls, v: list[PolicyTargetRef]) -> list[PolicyTargetRef]:
        return _same_kind(v)

    @field_validator("limits")
    @classmethod
    def _limit_names_unique(cls, v: list[RateLimit]) -> list[RateLimit]:
        _unique([limit.name for limit in v], "limits[].name")
        return v


class RateLimitPolicy(Resource):
    API_GROUP: ClassVar[str] = GOVERNANCE_GROUP
    KIND: ClassVar[str] = "RateLimitPolicy"
    spec: RateLimitPolicySpec


# --- GuardrailPolicy -------------------------------------------------------------------------------------

GUARDRAIL_TIMEOUT = r"^[0-9]{1,5}(ms|s)$"  # Gateway API's Duration, narrowed to what a guardrail needs
MAX_GUARDRAIL_TIMEOUT_MS = 10_000  # the listener's fixed ext_proc message timeout (features/guardrail.py)
HOST_PORT = r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?):[0-9]{1,5}$"
MCP_METHOD_NAME = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_/.*-]+$")]


class Inspect(str, Enum):
    REQUESTS = "Requests"
    RESPONSES = "Responses"
    BOTH = "Both"

    @property
    def requests(self) -> bool:
        return self is not Inspect.RESPONSES

    @property
    def responses(self) -> bool:
        return self is not Inspect.REQUESTS


class FailureMode(str, Enum):
    CLOSED = "Closed"  # the guardrail unreachable, slow or broken: the call is refused
    OPEN = "Open"  # ... the call passes unchecked (an explicit choice, never the default)


def timeout_ms(duration: str) -> int:
    """`500ms` or `2s` (already matched against GUARDRAIL_TIMEOUT) in milliseconds."""
    return int(duration[:-2]) if duration.endswith("ms") else int(duration[:-1]) * 1000


class GuardrailService(Model):
    """Where the guardrail runs: a Service (`backendRef`) or a fixed `address` (HOST:PORT), exactly one."""

    backend_ref: BackendObjectRef | None = Field(default=None, alias="backendRef")
    address: str | None = Field(default=None, max_length=261, pattern=HOST_PORT)
    timeout: str = Field(default="2s", pattern=GUARDRAIL_TIMEOUT)

    @model_validator(mode="after")
    def _one_destination(self) -> GuardrailService:
        if (self.backend_ref is None) == (self.address is None):
            raise ValueError("exactly one of backendRef and address must be set")
        if self.backend_ref is not None and (self.backend_ref.group, self.backend_ref.kind) != ("", "Service"):
            raise ValueError("backendRef must name a core Service")
        if self.address is not None and not 1 <= int(self.address.rpartition(":")[2]) <= 65535:
            raise ValueError("address port must be between 1 and 65535")
        if not 0 < timeout_ms(self.timeout) <= MAX_GUARDRAIL_TIMEOUT_MS:
            raise ValueError(f"timeout must be more than 0 and at most {MAX_GUARDRAIL_TIMEOUT_MS // 1000}s")
        return self


class GuardrailPolicySpec(Model):
    target_refs: list[PolicyTargetRef] = Field(alias="targetRefs", min_length=1, max_length=10)
    service: GuardrailService
    inspect: Inspect = Inspect.BOTH
    methods: list[MCP_METHOD_NAME] = Field(default_factory=lambda: ["tools/call"], min_length=1, max_length=16)
    failure_mode: FailureMode = Field(default=FailureMode.CLOSED, alias="failureMode")

    @field_validator("target_refs")
    @classmethod
    def _targets(cls, v: list[PolicyTargetRef]) -> list[PolicyTargetRef]:
        return _same_kind(v)

    @field_validator("methods")
    @classmethod
    def _methods_set(cls, v: list[str]) -> list[str]:
        return _unique(v, "methods")


class GuardrailPolicy(Resource):
    API_GROUP: ClassVar[str] = GOVERNANCE_GROUP
    KIND: ClassVar[str] = "GuardrailPolicy"
    spec: GuardrailPolicySpec
