"""The watch loop of one Kubernetes kind: list (paginated), stream from the list's resourceVersion,
follow bookmarks, resume from the last resourceVersion after a dropped connection and relist after
410 Gone. Lists and watches are the official client's (its typed list calls, its `watch.Watch`); the
loop around them is ours, because the official one relists on its own and hides where it stands.

It knows nothing of resources or change sets: it yields raw `Listing`s, `Event`s and `Failure`s, which
`controlplane.sources.kubernetes` turns into ChangeSets. Kept apart (kopf style) so that what the
apiserver says and what the mesh makes of it can be tested one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import watch as k8s_watch

from controlplane.kube.client import TRANSIENT_ERRORS, ApiError, KubeApi
from controlplane.kube.kinds import Kind
from controlplane.kube.typed import list_call

log = logging.getLogger(__name__)

# Answers that will not change by retrying soon: report them, and count the kind as settled.
SETTLING_STATUSES = frozenset({401, 403, 404})


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, so that many replicas do not reconnect in step."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 32))
        return base * random.uniform(1.0 - self.jitter, 1.0)


@dataclass(frozen=True)
class Listing:
    """The complete state of one kind, as of a fresh LIST."""

    kind: Kind
    objects: list[dict[str, Any]]


@dataclass(frozen=True)
class Event:
    kind: Kind
    type: str  # ADDED, MODIFIED or DELETED
    object: dict[str, Any]


@dataclass(frozen=True)
class Failure:
    """The apiserver refused to `verb` this kind (403, 404 for a CRD not installed, 401)."""

    kind: Kind
    verb: str
    error: ApiError


WatchItem = Listing | Event | Failure


def resource_version(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


async def list_all(*, api: KubeApi, kind: Kind, page_size: int) -> tuple[list[dict[str, Any]], str]:
    """Every object of the kind, page by page, and the resourceVersion to watch from."""
    objects: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": page_size}
    while True:
        page = await api.call(functools.partial(list_call, kind=kind), **params)
        for item in page.get("items") or []:
            item.setdefault("apiVersion", kind.api_version)  # list items often come without these
            item.setdefault("kind", kind.kind)
            objects.append(item)
        meta = page.get("metadata") or {}
        if not meta.get("continue"):
            return objects, str(meta.get("resourceVersion") or "")
        params = {"limit": page_size, "_continue": meta["continue"]}


@dataclass
class Cursor:
    """Where one kind's watch loop stands: the resourceVersion to resume from (None: list first)."""

    resource_version: str | None = None
    attempt: int = 0  # failures in a row, for the backoff
    lines: int = 0  # lines the last stream delivered

    @property
    def verb(self) -> str:
        return "list" if self.resource_version is None else "watch"

    def failed(self) -> int:
        self.attempt += 1
        return self.attempt - 1


async def watch_kind(
    *,
    api: KubeApi,
    kind: Kind,
    backoff: Backoff = Backoff(),
    page_size: int = 500,
    timeout_seconds: int = 300,
    failure_retry: float = 30.0,
) -> AsyncIterator[WatchItem]:
    """List, then watch from the list's resourceVersion, forever; relist only when the server says 410."""
    cursor = Cursor()
    while True:
        try:
            if cursor.resource_version is None:
                objects, cursor.resource_version = await list_all(api=api, kind=kind, page_size=page_size)
                cursor.attempt = 0
                yield Listing(kind=kind, objects=objects)
            stream = watch_stream(api=api, kind=kind, cursor=cursor, timeout_seconds=timeout_seconds)
            async with contextlib.aclosing(stream):  # closed with this loop: it holds a connection
                async for event in stream:
                    yield event
            if not cursor.lines:  # an empty stream that ends at once must not become a busy loop
                await asyncio.sleep(backoff.delay(cursor.failed()))
        except ApiError as error:
            if error.status in SETTLING_STATUSES:
                yield Failure(kind=kind, verb=cursor.verb, error=error)
            await asyncio.sleep(
                _pause_after(error, kind=kind, cursor=cursor, backoff=backoff, failure_retry=failure_retry)
            )
        except TRANSIENT_ERRORS as error:
            log.info(
                "%s: %s interrupted (%r); resuming from %s",
                kind.resource,
                cursor.verb,
                error,
                cursor.resource_version,
            )
            await asyncio.sleep(backoff.delay(cursor.failed()))


async def watch_stream(
    *, api: KubeApi, kind: Kind, cursor: Cursor, timeout_seconds: int
) -> AsyncIterator[Event]:
    """One watch request from the cursor's resourceVersion; every line (bookmarks too) moves the cursor."""
    cursor.lines = 0
    apis = await api.apis()
    async with k8s_watch.Watch(return_type="object") as stream:
        events = stream.stream(
            list_call(apis, kind=kind),
            resource_version=cursor.resource_version or "",
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_seconds,
            _request_timeout=(api.request_timeout, timeout_seconds + 30),
        )
        with api.errors():
            async for line in events:
                if not isinstance(line, dict):  # a line cut short by a dropped connection
                    raise ValueError(f"truncated watch line: {str(line)[:80]!r}")  # noqa: TRY004 - transient
                obj = line.get("raw_object") or {}
                cursor.resource_version = resource_version(obj) or cursor.resource_version
                cursor.attempt, cursor.lines = 0, cursor.lines + 1
                if line.get("type") != "BOOKMARK":
                    yield Event(kind=kind, type=line.get("type", ""), object=obj)


def _pause_after(
    error: ApiError, *, kind: Kind, cursor: Cursor, backoff: Backoff, failure_retry: float
) -> float:
    """How long to wait after an API error, and whether the next round must relist."""
    if error.status == 410:
        log.info("%s: resourceVersion %s is gone; relisting", kind.resource, cursor.resource_version)
        cursor.resource_version = None
        return 0.0
    if error.status in SETTLING_STATUSES:
        cursor.resource_version = None
        return failure_retry
    log.warning("%s: %s failed: %s", kind.resource, cursor.verb, error)
    return backoff.delay(cursor.failed())


def failure_message(failure: Failure) -> str:
    """Say what is missing in the words a cluster admin acts on: an RBAC verb, or a CRD."""
    kind, error = failure.kind, failure.error
    group = kind.group or '""'
    if error.status == 403:
        return (
            f"forbidden: cannot {failure.verb} resource {kind.plural!r} in API group {group} at the cluster "
            f"scope; grant the control plane's ServiceAccount verbs get, list, watch on {kind.resource} "
            f"(apiserver said: {error.message})"
        )
    if error.status == 404 and kind.is_crd:
        return (
            f"not found: {kind.resource} version {kind.version} is not served: its CRD is not installed "
            f"(`helm upgrade` of the agentic-cp chart installs it, unless crds.install is false). Serving "
            f"the other kinds; this one is retried slowly and read once its CRD appears, no restart needed "
            f"(apiserver said: {error.message})"
        )
    if error.status == 404:
        return f"not found: {kind.resource} version {kind.version} is not served (apiserver said: {error.message})"
    return f"cannot {failure.verb} {kind.resource}: {error.status} {error.reason}: {error.message}"
