"""Reading audit records back: the sink's file and Envoy's own log alike, bad lines reported and skipped."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from controlplane.audit.query import Filters, ReadReport, parse_since, read_records
from controlplane.audit.record import normalize
from controlplane.audit.sink import AuditMetrics, JsonLinesFile
from controlplane.cli import main as cli

STDOUT_LINE = {"time": "2025-01-01T10:00:00.000Z", "caller": "spiffe://td/ns/a/sa/b", "mcp_method": "tools/call",
               "tool": "echo", "status": 200, "decision": None, "upstream": "xbackend/a/mcp", "jsonrpc_id": 3.0,
               "duration_ms": "12", "flags": "-"}


def run_audit(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(["audit", *args])
    return code, out.getvalue(), err.getvalue()


def test_a_stdout_line_normalizes_to_the_record_the_sink_writes():
    record = normalize(STDOUT_LINE)
    assert (record["decision"], record["backend"], record["jsonrpc_id"], record["duration_ms"], record["flags"]) == (
        "allow", "a/mcp", 3, 12, None)
    assert normalize(record) == record


def test_envoy_lines_malformed_and_half_written_lines_are_reported_and_skipped(tmp_path):
    log = tmp_path / "envoy.log"
    log.write_text("[2025-01-01 10:00:00][info] starting\n" + json.dumps(STDOUT_LINE) + "\n"
                   + '{"caller": "broken\n' + "[1, 2]\n" + '{"unrelated": 1}\n' + '{"caller": "half')
    code, out, err = run_audit("--file", str(log), "-o", "json")
    assert code == 0
    assert [json.loads(line)["tool"] for line in out.splitlines()] == ["echo"]
    assert f"{log}:3: not JSON" in err and f"{log}:6: incomplete last line" in err
    assert f"{log}:5: a JSON line that is not an access log record" in err
    assert "2 lines that are not access log records" in err  # the Envoy line and the JSON array


def test_filters_by_since_caller_tool_and_decision(tmp_path):
    path = tmp_path / "audit.jsonl"
    lines = [dict(STDOUT_LINE), dict(STDOUT_LINE, tool="get-sum", decision="limited"),
             dict(STDOUT_LINE, time="2024-01-01T00:00:00.000Z", caller="spiffe://td/ns/a/sa/old")]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    def tools(**filters):
        return [r["tool"] for r in read_records([path], Filters(**filters), ReadReport())]

    assert tools(decision="limited") == ["get-sum"]
    assert tools(tool="echo", caller="spiffe://td/ns/a/sa/b") == ["echo"]
    assert tools(since=datetime(2024, 6, 1, tzinfo=UTC)) == ["echo", "get-sum"]
    code, out, _ = run_audit("--file", str(path), "--decision", "limited")
    assert code == 0 and "limited" in out.splitlines()[1] and len(out.splitlines()) == 2  # header + one row


@pytest.mark.parametrize("bad", ["10x", "yesterday", "-5m", ""])
def test_a_bad_since_is_a_usage_error(tmp_path, bad):
    (tmp_path / "a.jsonl").write_text("")
    code, _, err = run_audit("--file", str(tmp_path / "a.jsonl"), f"--since={bad}")
    assert code == 2 and "--since" in err and err.count("\n") == 1


def test_since_accepts_durations_and_rfc3339():
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now=now) == datetime(2025, 1, 1, 11, 50, tzinfo=UTC)
    assert parse_since("2025-01-01T11:00:00Z") == datetime(2025, 1, 1, 11, 0, tzinfo=UTC)


def test_no_readable_file_fails_in_one_line(tmp_path):
    code, _, err = run_audit("--file", str(tmp_path / "missing.jsonl"))
    assert code == 1 and "no file could be read" in err


def test_the_file_rotates_at_its_cap_and_keeps_its_backups(tmp_path):
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesFile(path, max_bytes=300, backups=2)
    for index in range(40):
        sink.write([{"n": index, "pad": "x" * 50}])
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(p.stat().st_size <= 300 for p in tmp_path.iterdir())
    assert json.loads(path.read_text().splitlines()[-1])["n"] == 39


def test_counters_are_capped_in_label_sets():
    registry = CollectorRegistry()
    metrics = AuditMetrics(registry, max_series=2)
    for caller in ("a", "b", "c", "d"):
        metrics.count({"caller": caller, "backend": "x", "tool": "t", "decision": "allow"})
    text = generate_latest(registry).decode()
    assert 'caller="a"' in text and 'caller="b"' in text and 'caller="c"' not in text
    assert 'agentic_audit_requests_total{backend="_other",caller="_other",decision="_other",tool="_other"} 2.0' in text
    assert "agentic_audit_series_overflow_total 2.0" in text


def test_records_of_several_files_are_printed_in_time_order(tmp_path):
    sink, proxy_log = tmp_path / "audit.jsonl", tmp_path / "gateway.log"
    sink.write_text(json.dumps({**STDOUT_LINE, "time": "2025-01-01T10:00:02.000Z", "tool": "late"}) + "\n"
                    + json.dumps({**STDOUT_LINE, "time": "2025-01-01T10:00:00.000Z", "tool": "first"}) + "\n")
    proxy_log.write_text(json.dumps({**STDOUT_LINE, "time": "2025-01-01T10:00:01.000Z", "tool": "middle"}) + "\n")
    code, out, _ = run_audit("--file", str(sink), "--file", str(proxy_log), "-o", "json")
    assert code == 0
    assert [json.loads(line)["tool"] for line in out.splitlines()] == ["first", "middle", "late"]
