"""What each proxy should have, and at which version: snapshots keyed by node key.

The cache knows nothing about Kubernetes, policies or streams' protocol state (the
go-control-plane split). A translator sets a complete ``Snapshot`` per node key;
streams read it and are woken when it changes. A stream whose node key has no
snapshot yet is not served at all, so a restarting control plane never sends a
partial or empty world (R22, R32).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from controlplane.xds.resources import XdsResource

_EMPTY: Mapping[str, XdsResource] = MappingProxyType({})


def _content_hash(resources: Mapping[str, XdsResource]) -> str:
    digest = hashlib.sha256()
    for name in sorted(resources):
        digest.update(f"{name}\0{resources[name].version}\n".encode())
    return digest.hexdigest()[:16]


class Snapshot:
    """An immutable set of resources, grouped by type URL and unique by name within a type.

    The per-type version is ``<prefix>-<hash of sorted (name, version) pairs>``: equal
    content gives equal hashes everywhere, and the prefix (set by the cache, random per
    replica and start) keeps versions from different replicas or restarts apart (R33).
    """

    __slots__ = ("_by_type", "_hashes", "version_prefix")

    def __init__(self, resources: Iterable[XdsResource] = (), *, version_prefix: str = "") -> None:
        by_type: dict[str, dict[str, XdsResource]] = {}
        for resource in resources:
            names = by_type.setdefault(resource.type_url, {})
            if resource.name in names:
                raise ValueError(f"duplicate resource {resource.name!r} of type {resource.type_url}")
            names[resource.name] = resource
        self._by_type = {t: MappingProxyType(names) for t, names in by_type.items()}
        self._hashes = {t: _content_hash(names) for t, names in by_type.items()}
        self.version_prefix = version_prefix

    @classmethod
    def _from_parts(
        cls, by_type: Mapping[str, Mapping[str, XdsResource]], hashes: Mapping[str, str], version_prefix: str
    ) -> Snapshot:
        snapshot = cls.__new__(cls)
        snapshot._by_type = dict(by_type)
        snapshot._hashes = dict(hashes)
        snapshot.version_prefix = version_prefix
        return snapshot

    @property
    def type_urls(self) -> tuple[str, ...]:
        return tuple(self._by_type)

    def resources(self, type_url: str) -> Mapping[str, XdsResource]:
        """Resources of one type by name (read-only; empty when the type is absent)."""
        return self._by_type.get(type_url, _EMPTY)

    def content_hash(self, type_url: str) -> str:
        return self._hashes.get(type_url) or _content_hash(_EMPTY)

    def version(self, type_url: str) -> str:
        """The type's version string, sent as DiscoveryResponse.version_info."""
        return f"{self.version_prefix}-{self.content_hash(type_url)}"

    def with_prefix(self, version_prefix: str) -> Snapshot:
        """The same content under another version prefix (shares all resource maps)."""
        if version_prefix == self.version_prefix:
            return self
        return self._from_parts(self._by_type, self._hashes, version_prefix)

    def with_resources(self, *resources: XdsResource) -> Snapshot:
        """A copy with these resources added or replaced; untouched types are shared."""
        changed: dict[str, dict[str, XdsResource]] = {}
        for resource in resources:
            names = changed.setdefault(resource.type_url, dict(self.resources(resource.type_url)))
            names[resource.name] = resource
        return self._replace(changed)

    def without(self, type_url: str, *names: str) -> Snapshot:
        """A copy with these names of one type removed."""
        remaining = {n: r for n, r in self.resources(type_url).items() if n not in names}
        return self._replace({type_url: remaining})

    def _replace(self, changed: Mapping[str, Mapping[str, XdsResource]]) -> Snapshot:
        by_type = dict(self._by_type)
        hashes = dict(self._hashes)
        for type_url, names in changed.items():
            by_type[type_url] = MappingProxyType(dict(names))
            hashes[type_url] = _content_hash(names)
        return self._from_parts(by_type, hashes, self.version_prefix)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        mine = {t: h for t, h in self._hashes.items() if self._by_type[t]}
        theirs = {t: h for t, h in other._hashes.items() if other._by_type[t]}
        return mine == theirs and self.version_prefix == other.version_prefix

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        counts = ", ".join(f"{t.rpartition('.')[2]}={len(r)}" for t, r in self._by_type.items())
        return f"Snapshot({self.version_prefix!r}: {counts})"


Watcher = Callable[[], None]
# (node key, type URL, version NACKed, the proxy's error detail)
NackListener = Callable[[str, str, str, str], None]


class SnapshotCache:
    """Snapshots per node key, plus change notification for the streams serving that key.

    Watchers are plain callbacks run synchronously inside ``set_snapshot``; a stream's
    callback only marks itself dirty and wakes its own loop, so a slow stream never
    delays the writer or the other streams. Call it from the event loop's thread (the
    streams' queues are not thread-safe); from another thread, use
    ``loop.call_soon_threadsafe(cache.set_snapshot, key, snapshot)``.
    """

    def __init__(self, *, version_prefix: str | None = None) -> None:
        self.version_prefix = version_prefix if version_prefix is not None else secrets.token_hex(4)
        self._snapshots: dict[str, Snapshot] = {}
        self._set_at: dict[str, float] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        self._nack_listeners: list[NackListener] = []

    def set_snapshot(self, node_key: str, snapshot: Snapshot) -> None:
        """Publish a complete snapshot for a node key and wake its streams."""
        self._snapshots[node_key] = snapshot.with_prefix(self.version_prefix)
        self._set_at[node_key] = time.monotonic()
        for watcher in list(self._watchers.get(node_key, ())):
            watcher()

    def get(self, node_key: str) -> Snapshot | None:
        return self._snapshots.get(node_key)

    def set_at(self, node_key: str) -> float | None:
        """``time.monotonic()`` of the last ``set_snapshot`` for the key (for convergence time)."""
        return self._set_at.get(node_key)

    def is_ready(self, node_key: str) -> bool:
        """True once a first snapshot exists for the key: only then are its streams served."""
        return node_key in self._snapshots

    def remove(self, node_key: str) -> None:
        """Forget a key's snapshot. Connected streams keep what they have; nothing is sent."""
        self._snapshots.pop(node_key, None)
        self._set_at.pop(node_key, None)

    def node_keys(self) -> tuple[str, ...]:
        return tuple(self._snapshots)

    def on_nack(self, listener: NackListener) -> None:
        """Call ``listener(node_key, type_url, version, error)`` whenever a proxy rejects a version."""
        self._nack_listeners.append(listener)

    def report_nack(self, node_key: str, type_url: str, version: str, error: str) -> None:
        """A stream tells the cache's owner that a proxy refused ``version`` (so it can isolate the cause)."""
        for listener in list(self._nack_listeners):
            listener(node_key, type_url, version, error)

    def watch(self, node_key: str, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher()`` after every ``set_snapshot(node_key, ...)``; returns an unwatch function."""
        self._watchers.setdefault(node_key, set()).add(watcher)

        def unwatch() -> None:
            watchers = self._watchers.get(node_key)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[node_key]

        return unwatch
