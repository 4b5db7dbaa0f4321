"""The lines `serve` logs about its world: what it loaded, what a change touched, what it published.

Why a module of pure functions: an operator reads these lines to learn what serve did without the
admin API, so each is one line with bounded length, and a test can check the wording without a server.
It takes the controller's objects as they are (ChangeSets, Snapshots) and imports nothing of the package.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

SHOWN = 5  # objects named per line; the rest are counted
SHORT_TYPES = {"Listener": "LDS", "RouteConfiguration": "RDS", "Cluster": "CDS", "ClusterLoadAssignment": "EDS",
               "Secret": "SDS"}


def loaded(change: Any) -> str:
    """At the first complete read: counts per kind and problems."""
    kinds = Counter(obj.key.kind for obj in change.upserts)
    problems = sum(len(ps) for ps in change.problems.values())
    files = sum(1 for ps in change.problems.values() if ps)
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())) or "nothing"
    tail = f"; {problems} problems in {files} files (agentic-cp analyze lists them)" if problems else "; no problems"
    return f"loaded {len(change.upserts)} objects: {counts}{tail}"


def changed(change: Any) -> str | None:
    """Per later change: the objects upserted and deleted; None when no object changed."""
    parts = []
    if change.upserts:
        parts.append("upserted " + _named(str(obj.key) for obj in change.upserts))
    if change.deletes:
        parts.append("deleted " + _named(str(key) for key in change.deletes))
    return "change: " + "; ".join(parts) if parts else None


def published(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """One line per proxy whose snapshot changed: the types and the versions now served."""
    lines = []
    for node in sorted(set(before) | set(after)):
        old, new = before.get(node), after.get(node)
        if new is None:
            lines.append(f"published to {node}: removed (its Gateway is gone or no longer ours)")
            continue
        types = [t for t in new.type_urls if old is None or old.version(t) != new.version(t)]
        if types:
            versions = ", ".join(f"{_short(t)} {new.version(t)}" for t in types)
            lines.append(f"published to {node}: {versions}")
    return lines


def _named(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:SHOWN])
    return f"{len(names)} ({shown}{f', and {len(names) - SHOWN} more' if len(names) > SHOWN else ''})"


def _short(type_url: str) -> str:
    name = type_url.rpartition(".")[2]
    return SHORT_TYPES.get(name, name)
