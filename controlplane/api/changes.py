"""`ChangeSet`: what a source hands the graph, one batch of upserts, deletes and problems.

It lives in `api/` (beside `Resource` and `Problem`, the things it carries) so that the graph can apply
change sets without importing the sources that produce them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.api.base import Problem, Resource, ResourceKey

__all__ = ["ChangeSet"]


@dataclass
class ChangeSet:
    """Upserts and deletes since the last change set, and the problems per origin (a list replaces
    what was reported for that origin before; an empty list clears it). `synced` marks the first, complete one."""

    upserts: list[Resource] = field(default_factory=list)
    deletes: list[ResourceKey] = field(default_factory=list)
    problems: dict[str, list[Problem]] = field(default_factory=dict)
    synced: bool = False

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes or self.problems or self.synced)
