"""The Kubernetes source: list and watch every kind this project reads, and emit ChangeSets.

Two halves, kopf style, kept apart:

- `controlplane.kube.watch.watch_kind` is the watch loop of one kind (list, watch, resume, relist
  after 410). It knows nothing of resources or change sets: it yields raw `Listing`s, `Event`s and
  `Failure`s.
- `Mirror` (here) consumes them. It holds what the cluster has, so a relist is diffed against it and only
  real changes go out; it parses documents, turns bad ones into Problems (keeping the last good
  version, so that bad input never takes the mesh down) and folds everything into a `Batch`.

`KubernetesSource` wires the two together: one task per kind, one queue, batches of events that
arrive close together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from controlplane.api.base import Problem, Resource, ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import InvalidResource, parse_object
from controlplane.kube.client import ApiError, KubeApi
from controlplane.kube.kinds import ALL_KINDS, Kind
from controlplane.kube.watch import (
    SETTLING_STATUSES,
    Backoff,
    Event,
    Failure,
    Listing,
    WatchItem,
    failure_message,
    list_all,
    resource_version,
    watch_kind,
)

log = logging.getLogger(__name__)

ParseFunction = Callable[..., Resource | None]
DEFAULT_BACKOFF = Backoff()


@dataclass
class Batch:
    """Changes folded by key: the last word on each object and each origin wins."""

    resources: dict[ResourceKey, Resource | None] = field(default_factory=dict)
    problems: dict[str, list[Problem]] = field(default_factory=dict)

    def upsert(self, resource: Resource) -> None:
        self.resources[resource.key] = resource

    def delete(self, key: ResourceKey) -> None:
        self.resources[key] = None


@dataclass
class Held:
    resource_version: str
    resource: Resource | None  # the last version that parsed; None if none did
    invalid: bool  # Problems are reported under its origin


class Mirror:
    """What one cluster holds, kept from Listings and Events; it emits only what really changed."""

    def __init__(self, *, name: str, parse: ParseFunction):
        self.name = name
        self._parse = parse
        self._held: dict[Kind, dict[tuple[str, str], Held]] = {}
        self._failed: set[Kind] = set()
        self._published: set[ResourceKey] = set()

    def apply(self, item: WatchItem, batch: Batch) -> None:
        if isinstance(item, Listing):
            self._relist(item.kind, item.objects, batch)
        elif isinstance(item, Failure):
            self._fail(item, batch)
        elif item.type == "DELETED":
            self._forget(item.kind, _ident(item.object), batch)
        else:
            self._take(item.kind, item.object, batch)

    def changeset(self, batch: Batch, *, synced: bool = False) -> ChangeSet:
        """The batch as a ChangeSet; a delete of something never published is dropped."""
        upserts = [r for r in batch.resources.values() if r is not None]
        deletes = [k for k, r in batch.resources.items() if r is None and k in self._published]
        self._published.difference_update(deletes)
        self._published.update(r.key for r in upserts)
        return ChangeSet(upserts=upserts, deletes=deletes, problems=dict(batch.problems), synced=synced)

    def kind_origin(self, kind: Kind) -> str:
        return f"cluster/{self.name}/{kind.plural}"

    def object_origin(self, kind: Kind, ident: tuple[str, str]) -> str:
        namespace, name = ident
        return (
            f"{self.kind_origin(kind)}/{namespace}/{name}"
            if namespace
            else f"{self.kind_origin(kind)}/{name}"
        )

    def _relist(self, kind: Kind, objects: list[dict[str, Any]], batch: Batch) -> None:
        if kind in self._failed:
            self._failed.discard(kind)
            batch.problems[self.kind_origin(kind)] = []
        seen = set()
        for obj in objects:
            seen.add(_ident(obj))
            self._take(kind, obj, batch)
        for ident in set(self._held.get(kind, {})) - seen:
            self._forget(kind, ident, batch)

    def _fail(self, failure: Failure, batch: Batch) -> None:
        kind = failure.kind
        if failure.error.status == 404:
            self._relist(kind, [], batch)  # a CRD that is gone takes its objects with it
        self._failed.add(kind)
        problem = Problem(self.kind_origin(kind), 0, kind.kind, "", "", "", failure_message(failure))
        batch.problems[self.kind_origin(kind)] = [problem]

    def _take(self, kind: Kind, obj: dict[str, Any], batch: Batch) -> None:
        ident = _ident(obj)
        held = self._held.setdefault(kind, {}).get(ident)
        version = resource_version(obj) or ""
        if held is not None and held.resource_version == version:
            return
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        (obj.get("metadata") or {}).pop("managedFields", None)
        origin = self.object_origin(kind, ident)
        resource, problems = self._parsed(kind, obj, origin)
        if resource is None and not problems and held is not None and held.resource is not None:
            batch.delete(held.resource.key)
        if problems:
            resource = held.resource if held is not None else None
        elif resource is not None:
            batch.upsert(resource)
        if problems or (held is not None and held.invalid):
            batch.problems[origin] = problems
        self._held[kind][ident] = Held(resource_version=version, resource=resource, invalid=bool(problems))

    def _forget(self, kind: Kind, ident: tuple[str, str], batch: Batch) -> None:
        held = self._held.get(kind, {}).pop(ident, None)
        if held is None:
            return
        if held.resource is not None:
            batch.delete(held.resource.key)
        if held.invalid:
            batch.problems[self.object_origin(kind, ident)] = []

    def _parsed(self, kind: Kind, obj: dict[str, Any], origin: str) -> tuple[Resource | None, list[Problem]]:
        try:
            return self._parse(obj, origin=origin, doc_index=0), []
        except InvalidResource as invalid:
            return None, list(invalid.problems)
        except Exception as error:  # a bug in one model must not stop the cluster's other objects
            log.exception("parsing %s failed", origin)
            namespace, name = _ident(obj)
            return None, [Problem(origin, 0, kind.kind, namespace, name, "", f"could not be read: {error!r}")]


def _ident(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class KubernetesSource:
    """A `Source` over one cluster: every kind in `kinds`, listed then watched."""

    def __init__(
        self,
        *,
        api_client_factory: Callable[[], KubeApi] | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool = False,
        kinds: tuple[Kind, ...] = ALL_KINDS,
        parse: ParseFunction = parse_object,
        name: str = "cluster",
        backoff: Backoff = DEFAULT_BACKOFF,
        failure_retry: float = 30.0,
        page_size: int = 500,
        timeout_seconds: int = 300,
        batch_window: float = 0.05,
    ):
        self.name = name
        self._api_client_factory = api_client_factory or _default_factory(
            kubeconfig=kubeconfig, context=context, in_cluster=in_cluster
        )
        self._kinds = tuple(kinds)
        self._parse = parse
        self._watch_options = {
            "backoff": backoff,
            "failure_retry": failure_retry,
            "page_size": page_size,
            "timeout_seconds": timeout_seconds,
        }
        self._backoff = backoff
        self._batch_window = batch_window

    async def changes(self) -> AsyncIterator[ChangeSet]:
        """First the complete state (synced), then batches of changes, until cancelled."""
        api = self._api_client_factory()
        queue: asyncio.Queue[WatchItem] = asyncio.Queue()
        tasks = [
            asyncio.create_task(self._pump(api, kind, queue), name=f"watch {kind.resource}")
            for kind in self._kinds
        ]
        mirror = Mirror(name=self.name, parse=self._parse)
        try:
            yield mirror.changeset(await self._initial(mirror, queue), synced=True)
            while True:
                changeset = mirror.changeset(await self._next_batch(mirror, queue))
                if changeset:
                    yield changeset
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await api.close()

    async def _initial(self, mirror: Mirror, queue: asyncio.Queue[WatchItem]) -> Batch:
        """Wait until every kind was listed or refused, then take whatever else is already queued."""
        batch, pending = Batch(), set(self._kinds)
        while pending:
            item = await queue.get()
            mirror.apply(item, batch)
            if not isinstance(item, Event):
                pending.discard(item.kind)
        while not queue.empty():
            mirror.apply(queue.get_nowait(), batch)
        return batch

    async def _next_batch(self, mirror: Mirror, queue: asyncio.Queue[WatchItem]) -> Batch:
        """Block for one item, then gather what arrives within the batch window."""
        batch = Batch()
        mirror.apply(await queue.get(), batch)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._batch_window
        while (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):  # not wait_for: it can swallow a cancellation
                    item = await queue.get()
            except TimeoutError:
                break
            mirror.apply(item, batch)
        return batch

    async def _pump(self, api: KubeApi, kind: Kind, queue: asyncio.Queue[WatchItem]) -> None:
        """Feed one kind's watch loop into the queue; a bug in it restarts it (and so relists)."""
        attempt = 0
        while True:
            try:
                items = watch_kind(api=api, kind=kind, **self._watch_options)
                async with contextlib.aclosing(items):  # a cancelled pump closes its watch connection
                    async for item in items:
                        await queue.put(item)
            except Exception:
                log.exception("watch loop for %s crashed; restarting", kind.resource)
                await asyncio.sleep(self._backoff.delay(attempt))
                attempt += 1


def _default_factory(
    *, kubeconfig: str | None, context: str | None, in_cluster: bool
) -> Callable[[], KubeApi]:
    if in_cluster:
        return KubeApi.from_in_cluster
    return lambda: KubeApi.from_kubeconfig(path=kubeconfig, context=context)


@dataclass
class Snapshot:
    """One listing of every kind, as `agentic-cp analyze --kubeconfig` reads a cluster: no watch."""

    change: ChangeSet
    origins: dict[ResourceKey, tuple[str, int]]  # as DirectorySource.origins: where each object came from
    failures: list[Failure]  # kinds the apiserver refused to list (403) or does not serve (404)

    def line_of(self, origin: str, doc_index: int) -> int | None:
        """Objects from a cluster have no line numbers; problems name the object instead."""
        return None


async def snapshot(api: KubeApi, *, kinds: tuple[Kind, ...] = ALL_KINDS, parse: ParseFunction = parse_object,
                   name: str = "cluster", page_size: int = 500) -> Snapshot:
    """List every kind once through the same Mirror the watch feeds, so a cluster is parsed and reported as
    `serve` would. A refused kind becomes a Failure (the rest are still read); a connection error or a
    5xx is raised, since a partial picture of the cluster would report objects as missing."""
    mirror, batch, failures = Mirror(name=name, parse=parse), Batch(), []
    origins: dict[ResourceKey, tuple[str, int]] = {}
    for kind in kinds:
        try:
            objects, _ = await list_all(api=api, kind=kind, page_size=page_size)
        except ApiError as error:
            if error.status not in SETTLING_STATUSES:
                raise
            failures.append(Failure(kind=kind, verb="list", error=error))
            continue
        mirror.apply(Listing(kind=kind, objects=objects), batch)
        for obj in objects:
            namespace, object_name = _ident(obj)
            origins[ResourceKey(kind.kind, namespace, object_name)] = (mirror.object_origin(kind, (namespace, object_name)), 0)
    return Snapshot(change=mirror.changeset(batch, synced=True), origins=origins, failures=failures)
