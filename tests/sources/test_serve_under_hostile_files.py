"""A real `agentic-cp serve` keeps answering /healthz and stays up while hostile files are written."""

from __future__ import annotations

import json

import pytest

from bench import hostile_files


@pytest.mark.slow
def test_serve_answers_healthz_while_hostile_files_are_written():
    report = hostile_files.run(rounds=1)
    print(json.dumps({"hostile_files": report}))  # figures for the reader; not asserted
    assert report["alive"] and report["probes"] > 0 and report["failed_probes"] == 0
