"""The conformance results reader: what the suite writes is read as it means; anything else is a failed
scenario that says why, never a crash, never a pass, never a scenario silently missing."""

from __future__ import annotations

import json

import pytest

from tests.support.conformance import ScenarioResult, compare, read_results

STAMP = "2025-06-01T10-00-00-000Z"
PASSING = [{"id": "server-initialize", "status": "SUCCESS"}, {"id": "note", "status": "INFO"}]


def write(out, scenario: str, text: str | bytes) -> None:
    folder = out / f"server-{scenario}-{STAMP}"
    folder.mkdir(parents=True)
    path = folder / "checks.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def test_what_the_suite_writes_is_read_as_it_means(tmp_path):
    write(tmp_path, "ping", json.dumps(PASSING))
    write(tmp_path, "tools-call-simple-text", json.dumps(
        [*PASSING, {"id": "b-check", "status": "FAILURE"}, {"id": "a-check", "status": "FAILURE"},
         {"id": "w", "status": "WARNING"}]))
    assert read_results(tmp_path) == {
        "ping": ScenarioResult(passed=True, failed_checks=()),
        "tools-call-simple-text": ScenarioResult(passed=False, failed_checks=("a-check", "b-check"))}


@pytest.mark.parametrize("text, reason", [
    ('[{"id": "server-initialize", "status": "SUCC', "JSONDecodeError"),  # half-written
    ("", "JSONDecodeError"),                                              # created, nothing written yet
    (b"\xff\xfe[]", "UnicodeDecodeError"),                                # not UTF-8
    ("{}", "non-empty list"),                                             # not a list
    ("[]", "non-empty list"),                                             # no checks: proves nothing
    ('"SUCCESS"', "non-empty list"),
    ('[1, 2]', "check 0"),                                                # checks that are not objects
    ('[{"id": "x"}]', "check 0"),                                         # no status
    ('[{"id": "x", "status": "SUCCESS"}, {"status": "SUCCESS"}]', "check 1"),  # no id
    ('[{"id": "x", "status": null}]', "check 0"),
])
def test_an_unreadable_checks_file_is_a_failed_scenario_that_says_why(tmp_path, text, reason):
    write(tmp_path, "ping", text)
    result = read_results(tmp_path)["ping"]
    assert not result.passed
    (why,) = result.failed_checks
    assert why.startswith("unreadable checks.json: ") and reason in why and "\n" not in why


def test_one_bad_file_loses_nothing_else_and_shows_as_a_difference(tmp_path):
    direct, gateway = tmp_path / "direct", tmp_path / "gateway"
    for out in (direct, gateway):
        write(out, "ping", json.dumps(PASSING))
        write(out, "tools-list", json.dumps(PASSING))
    (gateway / f"server-tools-list-{STAMP}" / "checks.json").write_text('[{"id": "x", "sta')
    results = read_results(gateway)
    assert results["ping"].passed and not results["tools-list"].passed
    (line,) = compare(read_results(direct), results)
    assert line.startswith("tools-list: direct passed, through the gateway failed unreadable checks.json")


def test_folders_that_are_not_results_are_ignored(tmp_path):
    (tmp_path / "suite-output.txt").write_text("log")
    (tmp_path / "server-ping-not-a-timestamp").mkdir()
    (tmp_path / f"server-ping-{STAMP}").mkdir()  # a scenario that has not written its checks yet
    (tmp_path / f"server-echo-{STAMP}").write_text("a file, not a folder")
    assert read_results(tmp_path) == {}
