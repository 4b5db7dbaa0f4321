"""Edits in progress never open access: objects leave only with their file, or once a whole file has settled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.api.base import ResourceKey
from controlplane.sources.directory import DirectorySource
from tests.conftest import ROOT

QUICKSTART = ROOT / "examples" / "quickstart"
GRANTS = ResourceKey("XAccessPolicy", "quickstart", "everything-tool-grants")
GATEWAY_POLICY = ResourceKey("XAccessPolicy", "quickstart", "quickstart-agents-only")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(QUICKSTART, tmp_path / "q")
    return tmp_path / "q"


def _documents(path: Path) -> tuple[str, str]:
    """The policies file split after its first document (the gateway-level policy)."""
    text = path.read_text()
    cut = text.index("---", text.index("quickstart-agents-only"))
    return text[:cut], text[cut:]


def test_an_object_missing_from_a_whole_file_stays_until_the_file_settles(folder, caplog):
    clock = Clock()
    source = DirectorySource(folder, settle_ms=1000, clock=clock)
    source.load()
    path = folder / "30-policies.yaml"
    first, _ = _documents(path)
    path.write_text(first)
    change = source.reload([path])
    assert not change.deletes and GRANTS in source._view
    clock.now += 0.5
    assert not source.settle().deletes
    clock.now += 1.0
    with caplog.at_level(logging.WARNING):
        change = source.settle()
    assert change.deletes == [GRANTS] and GATEWAY_POLICY in source._view
    assert "removed XAccessPolicy quickstart/everything-tool-grants (no longer in its file" in caplog.text
    assert "opened access to XBackend quickstart/everything-mcp (no policy left there" in caplog.text


def test_an_edit_restarts_the_settle_time(folder):
    clock = Clock()
    source = DirectorySource(folder, settle_ms=1000, clock=clock)
    source.load()
    path = folder / "30-policies.yaml"
    first, _ = _documents(path)
    path.write_text(first)
    source.reload([path])
    clock.now += 0.9
    path.write_text(first + "\n")
    source.reload([path])
    clock.now += 0.9
    assert not source.settle().deletes
    clock.now += 0.2
    assert source.settle().deletes == [GRANTS]


def test_a_file_that_is_not_whole_keeps_every_object_however_long(folder):
    clock = Clock()
    source = DirectorySource(folder, settle_ms=1000, clock=clock)
    source.load()
    path = folder / "30-policies.yaml"
    first, rest = _documents(path)
    path.write_text(first + rest[: len(rest) // 2] + "\n  - [unclosed\n")
    source.reload([path])
    clock.now += 3600
    change = source.settle()
    assert not change.deletes and {GRANTS, GATEWAY_POLICY} <= set(source._view)
    path.write_text(first + rest)
    assert not source.reload([path]).deletes


def test_a_deleted_file_removes_its_objects_at_once_and_says_so(folder, caplog):
    source = DirectorySource(folder)
    source.load()
    with caplog.at_level(logging.WARNING):
        (folder / "30-policies.yaml").unlink()
        change = source.reload([folder / "30-policies.yaml"])
    assert sorted(change.deletes) == sorted([GRANTS, GATEWAY_POLICY])
    assert "(its file is gone" in caplog.text and "opened access to Gateway quickstart/agent-gateway" in caplog.text


def test_a_rename_in_one_batch_moves_the_objects_without_a_gap(folder):
    source = DirectorySource(folder)
    source.load()
    old, new = folder / "30-policies.yaml", folder / "31-policies.yaml"
    old.rename(new)
    change = source.reload([old, new])
    assert not change.deletes and not change.upserts
    assert source.origins[GRANTS][0] == str(new)


@contextlib.asynccontextmanager
async def _watching(source: DirectorySource) -> AsyncIterator[list]:
    """The source's changes as they come (a list that grows), from its first synced one; stopped on exit."""
    changes: list = []

    async def collect() -> None:
        async for change in source.changes():
            changes.append(change)

    task = asyncio.create_task(collect())
    try:
        await _wait_for(changes, lambda c: c.synced)
        yield changes
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _wait_for(changes: list, predicate, timeout: float = 20.0) -> None:
    async def poll():
        while not any(predicate(c) for c in changes):
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


async def test_a_two_step_write_through_the_watcher_never_drops_the_grants(folder):
    path = folder / "30-policies.yaml"
    first, rest = _documents(path)
    source = DirectorySource(folder, debounce_ms=10, settle_ms=60_000)
    async with _watching(source) as changes:
        with path.open("w") as file:
            file.write(first)
            file.flush()
            await asyncio.sleep(0.5)  # the watcher sees the half-written file
            file.write(rest.replace('params: ["get-sum"]', 'params: ["echo"]'))
        await _wait_for(changes, lambda c: GRANTS in [o.key for o in c.upserts])
        assert not any(c.deletes for c in changes)
        assert GRANTS in source._view


async def test_a_removal_takes_effect_through_the_watcher_once_settled(folder):
    path = folder / "30-policies.yaml"
    first, _ = _documents(path)
    source = DirectorySource(folder, debounce_ms=10, settle_ms=200)
    async with _watching(source) as changes:
        path.write_text(first)
        await _wait_for(changes, lambda c: c.deletes)
        assert [c.deletes for c in changes if c.deletes] == [[GRANTS]]


async def test_a_relative_config_path_sees_edits(folder, monkeypatch):
    monkeypatch.chdir(folder.parent)
    source = DirectorySource(Path("q"), debounce_ms=10)
    async with _watching(source) as changes:
        path = folder / "30-policies.yaml"
        path.write_text(path.read_text().replace('params: ["get-sum"]', 'params: ["echo"]'))
        await _wait_for(changes, lambda c: [o.key for o in c.upserts] == [GRANTS])
        assert source.origins[GRANTS][0] == "q/30-policies.yaml"  # named as the user wrote it
        assert not any(c.deletes for c in changes)


async def test_the_watcher_survives_a_symlink_loop(folder):
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to("..")
    source = DirectorySource(folder, debounce_ms=10)
    async with _watching(source) as changes:
        path = folder / "30-policies.yaml"
        path.write_text(path.read_text().replace('params: ["get-sum"]', 'params: ["echo"]'))
        await _wait_for(changes, lambda c: GRANTS in [o.key for o in c.upserts])
