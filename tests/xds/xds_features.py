"""A minimal reader for the Scenario Outlines of ii/xds-test-harness .feature files.

It returns each outline's tags, steps and example rows (commented rows skipped), with
the ``<placeholders>`` of every step filled in per row, so tests run the files as they
are instead of a hand copy of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

STEP_WORDS = ("Given ", "When ", "Then ", "And ", "But ")


@dataclass(frozen=True)
class Example:
    feature: str
    title: str
    tags: frozenset[str]
    steps: tuple[str, ...]  # placeholders substituted, quotes removed

    @property
    def id(self) -> str:
        return f"{self.feature}: {self.title}"


def _fill(text: str, row: dict[str, str]) -> str:
    return re.sub(r"<([^>]+)>", lambda m: row.get(m.group(1), m.group(0)), text)


def read_examples(path: Path) -> list[Example]:
    examples: list[Example] = []
    tags: list[str] = []
    title, steps, header = "", [], None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            tags, header = line.split(), None
        elif line.startswith("Scenario Outline:"):
            title, steps, header = line.partition(":")[2].strip(), [], None
        elif line.startswith(STEP_WORDS):
            steps.append(line.partition(" ")[2])
        elif line.startswith("|"):
            cells = [c.strip().strip('"') for c in line.strip("|").split("|")]
            if header is None:
                header = cells
                continue
            row = dict(zip(header, cells, strict=True))
            filled = tuple(_fill(step, row) for step in steps)
            name = " ".join(_fill(title, row).split())
            examples.append(Example(path.stem, name, frozenset(tags), filled))
    return examples
