"""Resources from a folder: every *.yaml, *.yml and *.json below it, multi-document, watched for changes.

A bad document is reported (file, document index, kind, name, field path) and the rest stays in force;
fixing the file clears its problems. When two documents define the same object, the first one in
path order (then document order) wins and the others are reported as duplicates, so the outcome does
not depend on the order the filesystem lists files in.

The source never fails open while a file is being written. A file that does not parse, or has an
invalid document, keeps every object it defined until it is whole again. An object missing from a
whole file (a write that stopped between two documents looks exactly like that) stays in force until
the file has been whole and unchanged for `settle_ms`; only then is it removed, and logged. An object
whose file is gone is removed at once (a rename within one watch batch moves it without a gap).

Files are read within `Limits` (size, depth, alias expansion) and in a worker thread, so a hostile
file costs a bounded amount of work and never holds up the event loop that answers Envoy and probes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from watchfiles import awatch

from controlplane.api.base import Problem, Resource, ResourceKey
from controlplane.api.changes import ChangeSet
from controlplane.api.registry import InvalidResource, parse_object
from controlplane.logs import clip
from controlplane.sources.bounded_load import Limits, read_located_documents
from controlplane.sources.printable import printable_problem
from controlplane.sources.removals import removal_effect

SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_LIMITS = Limits()
log = logging.getLogger(__name__)


@dataclass
class ParsedFile:
    objects: list[tuple[int, Resource]]
    problems: list[Problem]
    lines: list[int] = field(default_factory=list)  # each document's first line (1-based), for `analyze`

    @property
    def whole(self) -> bool:
        return not self.problems


def parse_file(path: Path, *, origin: str | None = None, limits: Limits = DEFAULT_LIMITS) -> ParsedFile:
    """Parse every document of one file; nothing raises, every failure is a problem on the file."""
    origin = origin or str(path)
    try:
        located = read_located_documents(path, limits)
    except Exception as err:  # noqa: BLE001 - whatever a hostile file makes a reader raise
        return ParsedFile([], [_file_problem(origin, f"cannot read: {_describe(err)}")])
    objects, problems = [], []
    docs = [doc for _, doc in located]
    for index, doc in enumerate(docs):
        try:
            obj = parse_object(doc, origin=origin, doc_index=index)
        except InvalidResource as err:
            problems.extend(err.problems)
            continue
        except Exception as err:  # noqa: BLE001 - parse_object's contract broken: still this document's problem
            problems.append(Problem(origin, index, "", "", "", "-", f"cannot validate: {_describe(err)}"))
            continue
        if obj is not None:
            objects.append((index, obj))
    return ParsedFile(objects, [printable_problem(p) for p in problems], [line for line, _ in located])


def _file_problem(origin: str, message: str) -> Problem:
    return printable_problem(Problem(origin, 0, "", "", "", "-", message))


def _describe(err: BaseException) -> str:
    message = " ".join(str(err).split())
    return message if isinstance(err, (OSError, ValueError)) and message else f"{type(err).__name__}: {message}"


@dataclass
class Listing:
    files: list[Path] = field(default_factory=list)
    symlink_loops: list[Path] = field(default_factory=list)


def find_files(root: Path) -> list[Path]:
    return list_tree(root).files


def list_tree(root: Path) -> Listing:
    """Files to read below `root`, following symlinks; hidden names skipped, symlink loops listed apart."""
    if not root.is_dir():
        return Listing(files=[root]) if root.is_file() else Listing()
    listing, seen = Listing(), {os.path.realpath(root)}
    for folder, dirs, files in os.walk(root, followlinks=True):
        base = Path(folder)
        for name in list(dirs):
            real = os.path.realpath(base / name)
            if name.startswith(".") or real in seen:
                dirs.remove(name)
                if not name.startswith("."):
                    listing.symlink_loops.append(base / name)
            seen.add(real)
        for name in files:
            path = base / name
            if name.startswith(".") or path.suffix not in SUFFIXES:
                continue
            if path.is_file():
                listing.files.append(path)
            elif path.is_symlink() and _is_loop(path):
                listing.symlink_loops.append(path)
    listing.files.sort()
    listing.symlink_loops.sort()
    return listing


def _is_loop(path: Path) -> bool:
    try:
        path.resolve(strict=True)
    except (RuntimeError, OSError) as err:
        return isinstance(err, RuntimeError) or err.errno == 40  # ELOOP
    return False


class DirectorySource:
    """A `Source` over one or more paths (folders or files)."""

    def __init__(self, *paths: Path, debounce_ms: int = 50, settle_ms: int = 1000, limits: Limits = DEFAULT_LIMITS,
                 clock: Callable[[], float] = time.monotonic):
        self.paths = [Path(p) for p in paths]
        # Resolved once: the watcher reports absolute paths, and the working directory may change later.
        self._roots = [p.absolute() for p in self.paths]
        self.name = ",".join(str(p) for p in self.paths)
        self.limits = limits
        self._debounce_ms = debounce_ms
        self._settle = settle_ms / 1000
        self._clock = clock
        self._files: dict[Path, ParsedFile] = {}
        self._loops: list[Path] = []
        self._view: dict[ResourceKey, Resource] = {}
        self._reported: set[str] = set()
        self._removal_due: dict[Path, float] = {}  # whole files still missing objects they defined
        self.origins: dict[ResourceKey, tuple[str, int]] = {}  # where each object in force was read

    def load(self) -> ChangeSet:
        """Read everything now; the first change set (complete, synced)."""
        self._files = {f: self._parse(f) for f in self._list()}
        return self._diff(synced=True)

    def reload(self, changed: Iterable[Path] | None = None) -> ChangeSet:
        """Re-read the given files (or all); files that appeared or vanished are found either way."""
        present = set(self._list())
        named = {self._normalize(p) for p in changed} if changed is not None else present | set(self._files)
        for path in named | (present - set(self._files)):
            self._removal_due.pop(path, None)
            if path in present:
                self._files[path] = self._parse(path)
            else:
                self._files.pop(path, None)
        for path in set(self._files) - present:
            del self._files[path]
        return self._diff(synced=False)

    def settle(self) -> ChangeSet:
        """Apply the removals whose files have stayed whole and unchanged for the settle time."""
        return self._diff(synced=False)

    def next_due(self) -> float | None:
        return min(self._removal_due.values(), default=None)

    async def changes(self) -> AsyncIterator[ChangeSet]:
        yield await asyncio.to_thread(self.load)
        batches: asyncio.Queue = asyncio.Queue()
        watcher = asyncio.create_task(self._watch(batches))
        try:
            while True:
                paths = await self._next_batch(batches)
                if paths is None:
                    change = await asyncio.to_thread(self.settle)
                else:
                    change = await asyncio.to_thread(self.reload, paths)
                if change:
                    yield change
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _watch(self, batches: asyncio.Queue) -> None:
        try:
            watched = [p for p in self._roots if p.exists()]
            async for batch in awatch(*watched, debounce=self._debounce_ms, step=20, recursive=True):
                relevant = {Path(p) for _, p in batch if not self._hidden(Path(p))}
                if relevant:
                    batches.put_nowait(relevant)
        except Exception as err:  # noqa: BLE001 - handed to the consumer, which raises it
            batches.put_nowait(err)

    async def _next_batch(self, batches: asyncio.Queue) -> set[Path] | None:
        """The next batch of changed paths, merged with any queued behind it; None when a removal is due."""
        due = self.next_due()
        try:
            item = await asyncio.wait_for(batches.get(), None if due is None else max(0.0, due - self._clock()))
        except TimeoutError:
            return None
        paths: set[Path] = set()
        while True:
            if isinstance(item, Exception):
                raise item
            paths |= item
            if batches.empty():
                return {p for p in paths if p.suffix in SUFFIXES}
            item = batches.get_nowait()

    def _hidden(self, path: Path) -> bool:
        relative = self._relative(path)
        return relative is None or any(part.startswith(".") for part in relative.parts)

    def _relative(self, path: Path) -> Path | None:
        for root in self._roots:
            if path == root or root in path.parents:
                return path.relative_to(root)
        return None

    def _normalize(self, path: Path) -> Path:
        """A path as this source keys it: absolute, under the root as given (not as resolved)."""
        path = Path(path).absolute()
        if self._relative(path) is not None:
            return path
        for root in self._roots:
            real = root.resolve()
            if path == real or real in path.parents:
                return root / path.relative_to(real)
        return path

    def _origin(self, path: Path) -> str:
        """How problems and `origins` name a file: under the root as the user wrote it."""
        for given, root in zip(self.paths, self._roots):
            if path == root:
                return str(given)
            if root in path.parents:
                return str(given / path.relative_to(root))
        return str(path)

    def _list(self) -> list[Path]:
        listings = [list_tree(root) for root in self._roots]
        self._loops = sorted(p for listing in listings for p in listing.symlink_loops)
        return [f for listing in listings for f in listing.files]

    def line_of(self, origin: str, doc_index: int) -> int | None:
        """The first line of a document read from `origin` (as problems and `origins` name it)."""
        for path, parsed in self._files.items():
            if self._origin(path) == origin and 0 <= doc_index < len(parsed.lines):
                return parsed.lines[doc_index]
        return None

    def _parse(self, path: Path) -> ParsedFile:
        return parse_file(path, origin=self._origin(path), limits=self.limits)

    def _diff(self, *, synced: bool) -> ChangeSet:
        view, owners, problems = self._merged_view()
        change = ChangeSet(synced=synced)
        for key, obj in view.items():
            previous = self._view.get(key)
            if previous is not obj and previous != obj:  # objects of unread files are the same instances
                change.upserts.append(obj)
        change.deletes = sorted(set(self._view) - set(view))
        for key in change.deletes:
            self._log_removal(key, view)
        origins = {self._origin(f) for f in self._files} | {self._origin(p) for p in self._loops}
        change.problems = {o: problems.get(o, []) for o in (origins | self._reported)}
        self._reported = {o for o, p in problems.items() if p}
        self._view = view
        self.origins = owners
        return change

    def _merged_view(self):
        view: dict[ResourceKey, Resource] = {}
        owners: dict[ResourceKey, tuple[str, int]] = {}
        problems: dict[str, list[Problem]] = {}
        for path in sorted(self._files):
            origin = self._origin(path)
            problems[origin] = list(self._files[path].problems)
            for index, obj in self._files[path].objects:
                if obj.key in view:
                    problems[origin].append(printable_problem(Problem(
                        origin, index, obj.key.kind, obj.key.namespace, obj.name, "metadata.name",
                        f"duplicate of the object in {owners[obj.key][0]}")))
                    continue
                view[obj.key] = obj
                owners[obj.key] = (origin, index)
        now = self._clock()
        previous = self._previous_by_origin()
        for path in sorted(self._files):
            for key, where in self._still_in_force(path, previous.get(self._origin(path), ()), view, now):
                view[key], owners[key] = self._view[key], where
        for loop in self._loops:
            problems[self._origin(loop)] = [_file_problem(self._origin(loop), "symlink loop (or a second link to a folder already read): not followed")]
        return view, owners, problems

    def _previous_by_origin(self) -> dict[str, list[tuple[ResourceKey, tuple[str, int]]]]:
        """The objects of the last view, grouped by the file that defined them (one pass over them all,
        not one per file)."""
        grouped: dict[str, list[tuple[ResourceKey, tuple[str, int]]]] = {}
        for key, where in self.origins.items():
            if key in self._view:
                grouped.setdefault(where[0], []).append((key, where))
        return grouped

    def _still_in_force(self, path: Path, previous, live: dict[ResourceKey, Resource], now: float):
        """Objects this file defined (`previous`) that it no longer does, and that stay until the file is
        settled: all of them while the file is not whole, else until it has been whole for the settle time."""
        missing = [(key, where) for key, where in previous if key not in live]
        if not missing or not self._files[path].whole:
            self._removal_due.pop(path, None)
            return missing
        due = self._removal_due.setdefault(path, now + self._settle)
        if now < due:
            return missing
        del self._removal_due[path]
        return []

    def _log_removal(self, key: ResourceKey, remaining: dict[ResourceKey, Resource]) -> None:
        origin = self.origins.get(key, ("-", 0))[0]
        gone = all(self._origin(f) != origin for f in self._files)
        why = "its file is gone" if gone else "no longer in its file"
        effect = removal_effect(self._view[key], remaining)
        log.warning("removed %s (%s: %s)%s", clip(str(key)), why, clip(origin),
                    f": {clip(effect, 1000)}" if effect else "")
