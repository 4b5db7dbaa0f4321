"""Resources from a folder: every *.yaml, *.yml and *.json below it, multi-document, watched for changes.

A bad document is reported (file, document index, kind, name, field path) and the rest stays in force;
fixing the file clears its problems. When two documents define the same object, the first one in
path order (then document order) wins and the others are reported as duplicates, so the outcome does
not depend on the order the filesystem lists files in.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from watchfiles import awatch

from controlplane.api.base import Problem, Resource, ResourceKey
from controlplane.api.registry import InvalidResource, parse_object
from controlplane.sources.base import ChangeSet

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class ParsedFile:
    objects: list[tuple[int, Resource]]
    problems: list[Problem]


def parse_file(path: Path, *, origin: str | None = None) -> ParsedFile:
    """Parse every document of one file; problems never raise."""
    origin = origin or str(path)
    try:
        text = path.read_text(encoding="utf-8")
        docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as err:
        message = " ".join(str(err).split())
        return ParsedFile([], [Problem(origin, 0, "", "", "", "-", f"cannot read: {message}")])
    if path.suffix == ".json" and isinstance(docs[0], dict) and docs[0].get("kind", "").endswith("List"):
        docs = docs[0].get("items") or []
    objects, problems = [], []
    for index, doc in enumerate(docs):
        try:
            obj = parse_object(doc, origin=origin, doc_index=index)
        except InvalidResource as err:
            problems.extend(err.problems)
            continue
        if obj is not None:
            objects.append((index, obj))
    return ParsedFile(objects, problems)


def find_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


class DirectorySource:
    """A `Source` over one or more paths (folders or files)."""

    def __init__(self, *paths: Path, debounce_ms: int = 50):
        self.paths = [Path(p) for p in paths]
        self.name = ",".join(str(p) for p in self.paths)
        self._debounce_ms = debounce_ms
        self._files: dict[Path, ParsedFile] = {}
        self._view: dict[ResourceKey, Resource] = {}
        self._reported: set[str] = set()
        self.origins: dict[ResourceKey, tuple[str, int]] = {}  # where each object in force was read

    def load(self) -> ChangeSet:
        """Read everything now; the first change set (complete, synced)."""
        self._files = {f: parse_file(f) for f in self._all_files()}
        return self._diff(synced=True)

    def reload(self, changed: Iterable[Path] | None = None) -> ChangeSet:
        """Re-read the given files (or all); return what changed."""
        present = set(self._all_files())
        for path in (present | set(self._files)) if changed is None else changed:
            path = Path(path)
            if path in present:
                self._files[path] = parse_file(path)
            else:
                self._files.pop(path, None)
        for path in set(self._files) - present:
            del self._files[path]
        return self._diff(synced=False)

    async def changes(self) -> AsyncIterator[ChangeSet]:
        yield self.load()
        watched = [p for p in self.paths if p.exists()]
        async for batch in awatch(*watched, debounce=self._debounce_ms, step=20, recursive=True):
            paths = {Path(p) for _, p in batch if Path(p).suffix in SUFFIXES}
            if paths:
                change = self.reload(paths)
                if change:
                    yield change

    def _all_files(self) -> list[Path]:
        return [f for root in self.paths for f in find_files(root)]

    def _diff(self, *, synced: bool) -> ChangeSet:
        view, problems = self._merged_view()
        change = ChangeSet(synced=synced)
        for key, obj in view.items():
            if self._view.get(key) != obj:
                change.upserts.append(obj)
        change.deletes = sorted(set(self._view) - set(view))
        origins = {str(f) for f in self._files}
        change.problems = {o: problems.get(o, []) for o in (origins | self._reported)}
        self._reported = {o for o, p in problems.items() if p}
        self._view = view
        return change

    def _merged_view(self) -> tuple[dict[ResourceKey, Resource], dict[str, list[Problem]]]:
        view: dict[ResourceKey, Resource] = {}
        owner: dict[ResourceKey, tuple[str, int]] = {}
        problems: dict[str, list[Problem]] = {}
        for path in sorted(self._files):
            parsed = self._files[path]
            origin = str(path)
            problems[origin] = list(parsed.problems)
            for index, obj in parsed.objects + self._last_good(origin, parsed.problems):
                if obj.key in view:
                    problems[origin].append(Problem(origin, index, obj.key.kind, obj.key.namespace, obj.name,
                                                    "metadata.name",
                                                    f"duplicate of the object in {owner[obj.key][0]}"))
                    continue
                view[obj.key] = obj
                owner[obj.key] = (origin, index)
        self.origins = owner
        return view, problems

    def _last_good(self, origin: str, problems: list[Problem]) -> list[tuple[int, Resource]]:
        """Objects this file defined before its documents turned bad: they stay in force until fixed.

        A broken document keeps its object's last good version (matched by kind, namespace and name);
        a file that cannot be read at all keeps every object it had.
        """
        unreadable = any(p.kind == "" for p in problems)
        broken = {(p.kind, p.namespace, p.name) for p in problems}
        kept = []
        for key, (where, index) in self.origins.items():
            if where != origin or key not in self._view:
                continue
            if unreadable or (key.kind, key.namespace, key.name) in broken or \
                    (key.kind, "", key.name) in broken:
                kept.append((index, self._view[key]))
        return kept
