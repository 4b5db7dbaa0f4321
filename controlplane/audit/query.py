"""Reading audit records back: from the sink's JSON-lines file or a proxy's own stdout access log.

A proxy's log holds Envoy's own lines too; they are not records and are counted, not reported one by one.
A line that starts like a record but is not valid JSON is reported with its file and line and skipped;
a last line without its newline is a write in progress (or a crash mid-write) and is reported as such.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controlplane.audit.record import FIELDS, normalize, record_time

MAX_LINE_BYTES = 1024 * 1024  # a longer line is not a record we wrote
DURATION = re.compile(r"(\d+)([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass
class Filters:
    since: datetime | None = None
    caller: str | None = None
    tool: str | None = None
    decision: str | None = None

    def keep(self, record: dict[str, Any]) -> bool:
        if self.since is not None:
            moment = record_time(record)
            if moment is None or moment < self.since:
                return False
        return all(want is None or record.get(name) == want
                   for name, want in (("caller", self.caller), ("tool", self.tool), ("decision", self.decision)))


@dataclass
class ReadReport:
    """What was not a record, per file: one line each for the odd ones, a count for Envoy's own lines."""

    problems: list[str] = field(default_factory=list)
    other_lines: dict[str, int] = field(default_factory=dict)


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """`10m`, `2h`, `30s`, `1d` (ago) or an RFC3339 time; ValueError with a one-line reason."""
    match = DURATION.fullmatch(text.strip())
    if match:
        return (now or datetime.now(UTC)) - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: want a duration (10m, 2h, 30s, 1d) or an RFC3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_records(paths: Iterable[Path], filters: Filters, report: ReadReport) -> Iterator[dict[str, Any]]:
    for path in paths:
        yield from (record for record in _read_file(Path(path), report) if filters.keep(record))


def _read_file(path: Path, report: ReadReport) -> Iterator[dict[str, Any]]:
    try:
        handle = path.open("rb")
    except OSError as err:
        report.problems.append(f"{path}: {err.strerror or err}")
        return
    with handle:
        number = 0
        for number, line in enumerate(handle, start=1):
            record = _record_of(line, path, number, report)
            if record is not None:
                yield record


def _record_of(line: bytes, path: Path, number: int, report: ReadReport) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith(b"{"):
        if text:
            report.other_lines[str(path)] = report.other_lines.get(str(path), 0) + 1
        return None
    where = f"{path}:{number}"
    if len(line) > MAX_LINE_BYTES:
        report.problems.append(f"{where}: line of {len(line)} bytes skipped (over {MAX_LINE_BYTES})")
        return None
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as err:
        half = not line.endswith(b"\n")
        report.problems.append(f"{where}: {'incomplete last line (being written?)' if half else 'not JSON'}"
                               f"{'' if half else f' ({err})'}; skipped")
        return None
    if not isinstance(raw, dict) or not any(name in raw for name in ("caller", "status", "time")):
        report.problems.append(f"{where}: a JSON line that is not an access log record; skipped")
        return None
    return normalize(raw)


TABLE_COLUMNS = ("time", "caller", "backend", "mcp_method", "tool", "decision", "status", "rule")


def deciding(record: dict[str, Any]) -> str:
    """Who decided, briefly: the limit, the refusing level, or the allowing rules."""
    if record["decision"] == "limited":
        return f"limit {record['limit'] or '?'}"
    if record["decision"] == "denied":
        levels = [level for level in ("gateway", "backend") if record.get(f"{level}_result") == "denied"]
        if record.get("details") == "ext_authz_denied":
            return "authorizer (via " + (record.get("gateway_extauth_rule") or record.get("backend_extauth_rule")
                                         or "?") + ")"
        return "no rule at " + (levels[0] if levels else "?") + " level"
    rules = [record[name] for name in ("gateway_rule", "backend_rule") if record.get(name)]
    return ", ".join(rules) or "-"


def table(records: list[dict[str, Any]]) -> str:
    rows = [[_short(record, column) for column in TABLE_COLUMNS] for record in records]
    widths = [max([len(column)] + [len(row[i]) for row in rows]) for i, column in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(column.upper().ljust(widths[i]) for i, column in enumerate(TABLE_COLUMNS)).rstrip()]
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)


def _short(record: dict[str, Any], column: str) -> str:
    value = deciding(record) if column == "rule" else record.get(column)
    text = "-" if value is None else str(value)
    return text.encode("unicode_escape").decode("ascii")  # a control character never reaches the terminal


def as_json_lines(records: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps({name: record.get(name) for name in FIELDS}) for record in records)
