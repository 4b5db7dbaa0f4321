"""Shared pieces of every resource model: object metadata, resource keys and problems.

Every kind is a pydantic model; `Resource.key` names an object uniquely in one cluster,
and a `Problem` is one reason a document could not be taken, in the one-line form that
`agentic-cp validate` prints. A `FieldProblem` is the same reason found later, on a resource already
taken (the graph's checks): it knows the resource and the field, and becomes a `Problem` once the
caller says where the resource came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    """Base of the spec models: camelCase on the wire, unknown fields rejected (kubectl's strict default)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class LenientModel(BaseModel):
    """Base of kinds owned by others (Gateway API, core): fields this project does not use are kept, not checked."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)


class ObjectMeta(LenientModel):
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: datetime | None = Field(default=None, alias="creationTimestamp")
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    uid: str | None = None
    deletion_timestamp: datetime | None = Field(default=None, alias="deletionTimestamp")


@dataclass(frozen=True, order=True)
class ResourceKey:
    """Identity of an object: kind, namespace ('' for cluster-scoped kinds) and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


class Resource(LenientModel):
    """A Kubernetes object of a kind this project reads."""

    API_GROUP: ClassVar[str] = ""
    KIND: ClassVar[str] = ""
    NAMESPACED: ClassVar[bool] = True

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    status: dict[str, Any] | None = None

    @property
    def key(self) -> ResourceKey:
        namespace = (self.metadata.namespace or "default") if self.NAMESPACED else ""
        return ResourceKey(self.KIND, namespace, self.metadata.name)

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.metadata.name


@dataclass(frozen=True)
class Problem:
    """One reason a resource was not taken: `FILE:DOC_INDEX: KIND NAMESPACE/NAME: FIELD.PATH: message`."""

    origin: str  # a file path, or `cluster/<name>` for a Kubernetes source
    doc_index: int
    kind: str
    namespace: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        who = f"{self.namespace}/{self.name}" if self.namespace else (self.name or "-")
        return f"{self.origin}:{self.doc_index}: {self.kind or '-'} {who}: {self.field or '-'}: {self.message}"


@dataclass(frozen=True)
class FieldProblem:
    """One reason a parsed resource is refused: which resource, which field (a path such as
    ``spec.rules[1].authorization.cel.expression``) and why."""

    key: ResourceKey
    field: str
    message: str

    def located(self, origin: str, doc_index: int) -> Problem:
        """The problem as `validate` prints it, for the resource read from `origin`'s document `doc_index`."""
        return Problem(origin, doc_index, self.key.kind, self.key.namespace, self.key.name, self.field, self.message)
