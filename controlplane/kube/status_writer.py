"""The one writer of status back to the cluster: merge-patches on `/status`, by the leader only.

The patches go through the official client's `CustomObjectsApi` (`patch_*_custom_object_status`, as
a JSON merge patch): every kind with a status we write is a CRD (Gateway API, kube-agentic-networking).

Why one writer: every replica computes the same statuses, but if all of them wrote, they would
fight over resourceVersions and flood watchers with identical updates. So every replica says what
it wants (`write`), and only the elected leader sends it; a follower keeps the latest wish for each
object and sends them all when it becomes leader. Identical statuses are not re-sent within one
term of leadership (each write is an event for every watcher, this source included).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from controlplane.kube.client import ApiError, Apis, KubeApi
from controlplane.kube.kinds import Kind, kind_named

log = logging.getLogger(__name__)

ObjectKey = tuple[Kind, str, str]
MERGE_PATCH = "application/merge-patch+json"


class Elector(Protocol):
    @property
    def is_leader(self) -> bool: ...

    def subscribe(self, callback: Any) -> None: ...


def merge_patch(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) that turns `old` into `new`: keys that went away are set to null."""
    patch: dict[str, Any] = {}
    old = old or {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            patch[key] = merge_patch(old[key], value)
        else:
            patch[key] = value
    return patch


class StatusWriter:
    """`write` says what status an object should have; the leader sends it."""

    def __init__(
        self, *, api: KubeApi, elector: Elector, conflict_retries: int = 5, conflict_delay: float = 0.1
    ):
        self._api = api
        self._elector = elector
        self._conflict_retries = conflict_retries
        self._conflict_delay = conflict_delay
        self._desired: dict[ObjectKey, dict[str, Any]] = {}
        self._written: dict[ObjectKey, dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        self._flush_task: asyncio.Task[None] | None = None
        elector.subscribe(self._on_leadership)

    async def write(self, kind: Kind | str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Record the wish, and send it now if this replica leads. True when it was sent now."""
        key = (kind_named(kind) if isinstance(kind, str) else kind, namespace or "", name)
        self._desired[key] = status
        if not self._elector.is_leader:
            return False
        return await self._send(key)

    def forget(self, kind: Kind | str, namespace: str, name: str) -> None:
        """Drop the wish for an object that is gone."""
        key = (kind_named(kind) if isinstance(kind, str) else kind, namespace or "", name)
        self._desired.pop(key, None)
        self._written.pop(key, None)

    async def flush(self) -> None:
        """Send every wish that differs from what was written (used when leadership is won)."""
        for key in list(self._desired):
            if not self._elector.is_leader:
                return
            try:
                await self._send(key)
            except Exception as error:  # noqa: BLE001 - one object's failure must not stop the others
                log.warning("status of %s %s/%s not written: %r", key[0].kind, key[1], key[2], error)

    async def aclose(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            await asyncio.gather(self._flush_task, return_exceptions=True)

    async def _send(self, key: ObjectKey) -> bool:
        async with self._lock:
            status = self._desired.get(key)
            if status is None or not self._elector.is_leader or self._written.get(key) == status:
                return False
            kind, namespace, name = key
            body = {"status": merge_patch(self._written.get(key), status)}
            for attempt in range(self._conflict_retries + 1):
                try:
                    await self._api.call(_status_patch_of(kind), *_status_target(kind, namespace, name), body,
                                         _content_type=MERGE_PATCH)
                except ApiError as error:
                    if error.status == 404:  # the object is gone: nothing to report on
                        self._desired.pop(key, None)
                        self._written.pop(key, None)
                        return False
                    if error.status != 409 or attempt == self._conflict_retries:
                        raise
                    await asyncio.sleep(self._conflict_delay * (attempt + 1))
                    continue
                self._written[key] = status
                return True
            return False

    def _on_leadership(self, leading: bool) -> None:
        # Another leader may have written in between: what this replica wrote before is no longer known.
        self._written.clear()
        if leading:
            self._flush_task = asyncio.get_running_loop().create_task(self.flush())



def _status_patch_of(kind: Kind) -> Callable[[Apis], Callable[..., Any]]:
    """The official status patch of a custom object: namespaced or cluster-scoped."""
    if kind.namespaced:
        return lambda k: k.custom.patch_namespaced_custom_object_status
    return lambda k: k.custom.patch_cluster_custom_object_status


def _status_target(kind: Kind, namespace: str, name: str) -> tuple[str, ...]:
    if kind.namespaced:
        return kind.group, kind.version, namespace, kind.plural, name
    return kind.group, kind.version, kind.plural, name
