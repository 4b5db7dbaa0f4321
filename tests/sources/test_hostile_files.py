"""A hostile file is one problem on that file: it never raises out of parse_file, never stalls, never forges logs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controlplane.api.registry import InvalidResource, parse_object
from controlplane.cli import main
from controlplane.sources.bounded_load import Limits
from controlplane.sources.directory import DirectorySource, parse_file
from tests.conftest import ROOT
from tests.sources.hostile import BILLION_LAUGHS, NESTED_JSON, NESTED_YAML, RECURSIVE_ALIAS, oversize

QUICKSTART = ROOT / "examples" / "quickstart"


def _only_problem(path: Path, **limits) -> str:
    parsed = parse_file(path, limits=Limits(**limits))
    assert parsed.objects == [] and len(parsed.problems) == 1
    return parsed.problems[0].message


@pytest.mark.parametrize("name,text,expected", [
    ("nested.yaml", NESTED_YAML, "nested deeper than 64 levels"),
    ("nested.json", NESTED_JSON, "nested deeper than 64 levels"),
    ("deeper.json", "[" * 200_000 + "]" * 200_000, "nested deeper than 64 levels"),
    ("deeper.yaml", "[" * 200_000 + "]" * 200_000, "maximum nesting depth"),  # libyaml stops it first
    ("laughs.yaml", BILLION_LAUGHS, "document expands to over 50000 nodes"),
    ("loop.yaml", RECURSIVE_ALIAS, "recursive document"),
    ("binary.yaml", "\udcff", "cannot read"),
])
def test_a_hostile_file_is_one_problem_not_an_exception(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text, errors="surrogateescape")
    assert expected in _only_problem(path)


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(oversize(1))
    assert _only_problem(path, max_file_bytes=2**20) == \
        f"cannot read: file is {2**20 + 4} bytes, over the limit {2**20} (--max-file-bytes)"


def test_a_document_over_the_size_limit_is_refused(tmp_path):
    path = tmp_path / "doc.yaml"
    path.write_text("a: 1\n---\nk: " + "x" * 5000 + "\n")
    assert "over the limit 4096" in _only_problem(path, max_document_bytes=4096)


def test_parse_object_raises_only_invalid_resource_for_a_deep_document():
    spec: dict = {}
    for _ in range(5000):
        spec = {"mcp": spec}
    doc = {"apiVersion": "agentic.networking.x-k8s.io/v0alpha0", "kind": "XBackend",
           "metadata": {"name": "x", "namespace": "ns"}, "spec": spec}
    with pytest.raises(InvalidResource):
        parse_object(doc)


def test_untrusted_text_in_a_problem_cannot_forge_a_line(tmp_path):
    path = tmp_path / "forge.yaml"
    path.write_text('apiVersion: agentic.networking.x-k8s.io/v0alpha0\nkind: XBackend\n'
                    'metadata: {name: "x\\n2026 WARNING forged line", namespace: "' + "n" * 1000 + '"}\n'
                    'spec: {mcp: {serviceName: s, port: 99999}}\n')
    problems = parse_file(path).problems
    assert problems and all("\n" not in str(p) for p in problems)
    assert all(len(p.namespace) <= 330 and len(p.message) <= 330 for p in problems)  # 300 + '... (N bytes)'
    assert "x\\n2026 WARNING forged line" in str(problems[0])


def test_a_hostile_file_beside_good_ones_does_not_stop_the_load(tmp_path):
    folder = tmp_path / "q"
    shutil.copytree(QUICKSTART, folder)
    for name, text in (("nested.yaml", NESTED_YAML), ("laughs.yaml", BILLION_LAUGHS), ("n.json", NESTED_JSON)):
        (folder / name).write_text(text)
    change = DirectorySource(folder).load()
    assert len(change.upserts) == 12
    bad = {Path(o).name for o, problems in change.problems.items() if problems}
    assert bad == {"nested.yaml", "laughs.yaml", "n.json"}


def test_validate_reports_the_size_limit_with_its_flag(tmp_path, capsys):
    (tmp_path / "big.yaml").write_text(oversize(1))
    assert main(["validate", str(tmp_path), "--max-file-bytes", "1000"]) == 1
    assert "over the limit 1000 (--max-file-bytes)" in capsys.readouterr().out


def test_symlink_loops_are_reported(tmp_path):
    folder = tmp_path / "q"
    shutil.copytree(QUICKSTART, folder)
    (folder / "self.yaml").symlink_to("self.yaml")
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to("..")
    change = DirectorySource(folder).load()
    assert len(change.upserts) == 12
    problems = {Path(o).name: ps[0].message for o, ps in change.problems.items() if ps}
    assert set(problems) == {"self.yaml", "up"} and all("symlink loop" in m for m in problems.values())
