"""The directory source: bad documents reported and isolated, fixes clear problems, edits are watched."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from controlplane.api.base import ResourceKey
from controlplane.sources.directory import DirectorySource
from tests.conftest import ROOT

QUICKSTART = ROOT / "examples" / "quickstart"
BACKEND = ResourceKey("XBackend", "quickstart", "everything-mcp")
POLICY = ResourceKey("XAccessPolicy", "quickstart", "everything-tool-grants")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(QUICKSTART, tmp_path / "q")
    return tmp_path / "q"


def test_initial_load_is_complete_and_synced(folder):
    change = DirectorySource(folder).load()
    assert change.synced and not any(change.problems.values())
    assert {BACKEND, POLICY} <= {o.key for o in change.upserts}


def test_a_bad_document_is_reported_and_its_last_good_version_stays(folder):
    source = DirectorySource(folder)
    source.load()
    path = folder / "20-mcp-server.yaml"
    path.write_text(path.read_text().replace("port: 3001\n    path: /mcp", "port: 99999\n    path: /mcp"))
    change = source.reload([path])
    problems = change.problems[str(path)]
    assert [(p.doc_index, p.kind, p.name, p.field) for p in problems] == [(2, "XBackend", "everything-mcp",
                                                                            "spec.mcp.port")]
    assert not change.deletes and not change.upserts  # the last good version stays in force
    assert source._view[BACKEND].spec.mcp.port == 3001
    path.write_text(path.read_text().replace("99999", "3002"))
    fixed = source.reload([path])
    assert fixed.problems[str(path)] == [] and [o.key for o in fixed.upserts] == [BACKEND]
    assert source._view[BACKEND].spec.mcp.port == 3002


def test_an_unreadable_file_keeps_all_its_objects_until_fixed(folder):
    source = DirectorySource(folder)
    source.load()
    path = folder / "30-policies.yaml"
    good = path.read_text()
    path.write_text(good + "\n  bad: [indent\n")
    change = source.reload([path])
    assert change.problems[str(path)][0].message.startswith("cannot read")
    assert not change.deletes and POLICY in source._view
    path.write_text(good.replace('params: ["get-sum"]', 'params: ["echo"]'))
    assert POLICY in [o.key for o in source.reload([path]).upserts]


def test_unparseable_yaml_and_duplicates(folder):
    source = DirectorySource(folder)
    source.load()
    (folder / "broken.yaml").write_text("kind: [unclosed\n")
    (folder / "zz-dup.yaml").write_text((folder / "20-mcp-server.yaml").read_text())
    change = source.reload()
    assert "cannot read" in change.problems[str(folder / "broken.yaml")][0].message
    dup = change.problems[str(folder / "zz-dup.yaml")]
    assert len(dup) == 3 and all("duplicate of the object in" in p.message for p in dup)
    assert not change.upserts and not change.deletes
    (folder / "broken.yaml").unlink()
    assert source.reload().problems[str(folder / "broken.yaml")] == []


def test_deleting_a_file_deletes_its_objects(folder):
    source = DirectorySource(folder)
    source.load()
    (folder / "30-policies.yaml").unlink()
    change = source.reload()
    assert sorted(change.deletes) == sorted([POLICY, ResourceKey("XAccessPolicy", "quickstart",
                                                                 "quickstart-agents-only")])


async def test_watch_delivers_edits(folder):
    source = DirectorySource(folder, debounce_ms=10)
    changes = source.changes()
    first = await anext(changes)
    assert first.synced
    path = folder / "30-policies.yaml"

    async def edit():
        await asyncio.sleep(0.3)
        path.write_text(path.read_text().replace('params: ["get-sum"]', 'params: ["echo"]'))

    task = asyncio.create_task(edit())
    change = await asyncio.wait_for(anext(changes), timeout=10)
    await task
    assert [o.key for o in change.upserts] == [POLICY]
    await changes.aclose()
