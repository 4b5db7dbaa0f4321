"""The one interface every source of resources implements (a directory, a Kubernetes cluster, several).

A source yields `ChangeSet`s (`controlplane.api.changes`). The first one it yields holds its complete
initial state and has `synced=True`; nothing downstream publishes config before that. Later change sets
carry only what changed. Problems are reported per origin (a file, or one kind in one cluster): the list
given for an origin replaces whatever was reported for it before, so an empty list clears it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from controlplane.api.changes import ChangeSet


class Source(Protocol):
    """Where resources come from. `changes()` runs until cancelled."""

    name: str

    def changes(self) -> AsyncIterator[ChangeSet]: ...
