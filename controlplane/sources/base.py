"""The one interface every source of resources implements (a directory, a Kubernetes cluster, several).

A source yields `ChangeSet`s. The first one it yields holds its complete initial state and has
`synced=True`; nothing downstream publishes config before that. Later change sets carry only what
changed. Problems are reported per origin (a file, or one kind in one cluster): the list given for
an origin replaces whatever was reported for it before, so an empty list clears it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from controlplane.api.base import Problem, Resource, ResourceKey


@dataclass
class ChangeSet:
    upserts: list[Resource] = field(default_factory=list)
    deletes: list[ResourceKey] = field(default_factory=list)
    problems: dict[str, list[Problem]] = field(default_factory=dict)
    synced: bool = False

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes or self.problems or self.synced)


class Source(Protocol):
    """Where resources come from. `changes()` runs until cancelled."""

    name: str

    def changes(self) -> AsyncIterator[ChangeSet]: ...
