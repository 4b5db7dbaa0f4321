"""Fixtures for the Kubernetes source tests: a fake apiserver, a client for it, and a consumer that
rebuilds the cluster's state from ChangeSets while checking that nothing arrives twice or out of order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Self

import pytest

from controlplane.api.base import Problem, Resource, ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import InvalidResource
from controlplane.kube.client import KubeApi
from controlplane.kube.kinds import Kind, kind_named
from controlplane.kube.watch import Backoff
from controlplane.sources.kubernetes import KubernetesSource
from tests.kube.fakeapi import FakeApiServer

FAST = Backoff(initial=0.01, maximum=0.1)
_MODELS: dict[str, type[Resource]] = {}


def model_for(kind: Kind) -> type[Resource]:
    """A generic model per kind, so that these tests do not depend on the real models being written."""
    if kind.kind not in _MODELS:
        _MODELS[kind.kind] = type(kind.kind, (Resource,), {"KIND": kind.kind, "NAMESPACED": kind.namespaced})
    return _MODELS[kind.kind]


def fake_parse(doc: Any, *, origin: str = "-", doc_index: int = 0) -> Resource | None:
    """Parse with generic models; `spec.invalid: true` makes a document invalid."""
    kind = kind_named(doc["kind"])
    if (doc.get("spec") or {}).get("invalid"):
        meta = doc["metadata"]
        raise InvalidResource(
            [
                Problem(
                    origin,
                    doc_index,
                    kind.kind,
                    meta.get("namespace", ""),
                    meta["name"],
                    "spec.invalid",
                    "marked invalid by the test",
                )
            ]
        )
    return model_for(kind).model_validate(doc)


def obj(kind: Kind, name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    metadata = {"name": name, "namespace": namespace} if kind.namespaced else {"name": name}
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": metadata, "spec": dict(spec)}


class Consumer:
    """Reads a source's ChangeSets in the background and keeps the state they describe."""

    def __init__(self, source: KubernetesSource):
        self.source = source
        self.state: dict[ResourceKey, Resource] = {}
        self.problems: dict[str, list[Problem]] = {}
        self.changesets: list[ChangeSet] = []
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async for changeset in self.source.changes():
            self._apply(changeset)

    def _apply(self, changeset: ChangeSet) -> None:
        """Apply, noting any duplicate: an upsert that is not newer, or a delete of something not held."""
        if not self.changesets and not changeset.synced:
            self.errors.append("first changeset not synced")
        self.changesets.append(changeset)
        for key in changeset.deletes:
            if self.state.pop(key, None) is None:
                self.errors.append(f"delete of unknown {key}")
        for resource in changeset.upserts:
            held = self.state.get(resource.key)
            if held is not None and int(held.metadata.resource_version) >= int(
                resource.metadata.resource_version
            ):
                self.errors.append(f"stale or duplicate upsert of {resource.key}")
            self.state[resource.key] = resource
        for origin, problems in changeset.problems.items():
            if problems:
                self.problems[origin] = problems
            else:
                self.problems.pop(origin, None)

    async def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        await wait_until(predicate, timeout=timeout)

    def versions(self) -> dict[ResourceKey, str]:
        return {key: r.metadata.resource_version or "" for key, r in self.state.items()}


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll until `predicate()` holds; generous timeouts only catch hangs, they assert no speed."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def server_versions(server: FakeApiServer, kinds: tuple[Kind, ...]) -> dict[ResourceKey, str]:
    return {
        ResourceKey(kind.kind, ident[0], ident[1]): o["metadata"]["resourceVersion"]
        for kind in kinds
        for ident, o in server.objects(kind).items()
    }


@pytest.fixture
async def server() -> FakeApiServer:
    fake = FakeApiServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def api(server: FakeApiServer) -> KubeApi:
    client = KubeApi(host=server.url)
    yield client
    await client.close()


@pytest.fixture
def make_source(server: FakeApiServer) -> Callable[..., KubernetesSource]:
    def make(**overrides: Any) -> KubernetesSource:
        options: dict[str, Any] = {
            "api_client_factory": lambda: KubeApi(host=server.url),
            "parse": fake_parse,
            "name": "test",
            "backoff": FAST,
            "failure_retry": 0.2,
            "page_size": 2,
            "timeout_seconds": 30,
            "batch_window": 0.02,
        }
        options.update(overrides)
        return KubernetesSource(**options)

    return make
