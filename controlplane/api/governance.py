"""This project's own policy kinds (`governance.agentic-cp.dev/v1alpha1`): RateLimitPolicy.

Why a group of our own: upstream's groups are never extended with our fields (DESIGN.md). A
RateLimitPolicy attaches as XAccessPolicy does (`targetRefs` to a Gateway or an XBackend) and names
limits of N requests per second, minute or hour, each optionally narrowed to one caller (the
XAccessPolicy source shape) and to `tools/call` tool names. Every caller and every tool a limit covers
gets its own bucket. The validation here is the CRD's (helm/agentic-cp/crds), so that a manifest the
cluster rejects is rejected here too.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from controlplane.api.agentic import RULE_NAME, PolicyTargetRef, RuleSource, _same_kind, _unique
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
