"""Upstream's admission rules for policies on one target (pkg/controller/accesspolicy.go).

At most five policies per target and at most one ExternalAuth policy per target; seniority decides
(creationTimestamp, then namespace/name). A resource read from a directory has no creationTimestamp:
such policies sort after every timestamped one, by namespace/name, which is stable across reloads.
Policies with an invalid CEL expression are refused with `InvalidCEL` and take no slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from controlplane.api import cel
from controlplane.api.agentic import Action, AuthorizationType, XAccessPolicy
from controlplane.api.base import FieldProblem

MAX_POLICIES_PER_TARGET = 5
_NO_TIMESTAMP = datetime.max.replace(tzinfo=UTC)

ACCEPTED = "Accepted"
LIMIT_EXCEEDED = "LimitPerTargetExceeded"
INVALID_CEL = "InvalidCEL"
TARGET_NOT_FOUND = "TargetNotFound"
UNSUPPORTED_TARGET = "UnsupportedTargetKind"


@dataclass(frozen=True)
class Condition:
    accepted: bool
    reason: str
    message: str


def seniority(policy: XAccessPolicy) -> tuple:
    created = policy.metadata.creation_timestamp
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (created or _NO_TIMESTAMP, policy.namespace, policy.name)


@dataclass(frozen=True)
class InvalidCel:
    """A rule whose CEL expression does not compile: the rule's name (for the status condition) and the
    field problem (for `validate`), so that neither is parsed back out of the other."""

    rule: str
    problem: FieldProblem

    @property
    def condition_message(self) -> str:
        return f"rule {self.rule}: {self.problem.message}"


def cel_problem(policy: XAccessPolicy) -> InvalidCel | None:
    """The first CEL compile error of the policy's rules, or None."""
    for index, rule in enumerate(policy.spec.rules or []):
        auth = rule.authorization
        if auth is not None and auth.type is AuthorizationType.CEL:
            try:
                cel.compile_expression(auth.cel.expression)
            except cel.CELError as err:
                field = f"spec.rules[{index}].authorization.cel.expression"
                return InvalidCel(rule.name, FieldProblem(policy.key, field, str(err)))
    return None


def admit(policies: list[XAccessPolicy]) -> dict:
    """Conditions, keyed by policy key, for the policies attached to one existing target."""
    result = {}
    accepted = 0
    has_external = False
    for policy in sorted(policies, key=seniority):
        problem = cel_problem(policy)
        if problem is not None:
            result[policy.key] = Condition(False, INVALID_CEL, problem.condition_message)
        elif policy.spec.action is Action.EXTERNAL_AUTH and has_external:
            result[policy.key] = Condition(False, LIMIT_EXCEEDED,
                                           "only one ExternalAuth policy is allowed per target; an older one "
                                           "already applies")
        elif accepted >= MAX_POLICIES_PER_TARGET:
            result[policy.key] = Condition(False, LIMIT_EXCEEDED,
                                           f"at most {MAX_POLICIES_PER_TARGET} policies may target one resource; "
                                           "older policies hold every slot")
        else:
            accepted += 1
            has_external |= policy.spec.action is Action.EXTERNAL_AUTH
            result[policy.key] = Condition(True, ACCEPTED, "Policy has been accepted")
    return result
