"""`agentic-cp audit`: the audit records of one or more files, filtered, as a table or JSON lines.

Reads the sink's file (`serve --audit-log`, default STATE_DIR/audit.jsonl, and its rotated `.1`, `.2`,
...) or a proxy's own stdout access log (the same fields, by the same names), or both. What is not a
record is reported on stderr, one line each (a count for Envoy's own log lines), and skipped.
Exit 0 when the files were read (even with no match), 1 when none could be, 2 for a bad flag.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controlplane.audit.query import Filters, ReadReport, as_json_lines, parse_since, read_records, table
from controlplane.audit.record import DECISIONS
from controlplane.commands.common import CommandFailed, UsageError

DEFAULT_FILE = Path("state") / "audit.jsonl"


def add_parser(sub) -> None:
    p = sub.add_parser("audit", help="query the audit trail: who called what, and what was decided",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--file", action="append", metavar="FILE",
                   help=f"an audit JSON-lines file or a proxy's access log (repeatable; default {DEFAULT_FILE})")
    p.add_argument("--since", help="only records from this long ago (10m, 2h, 30s, 1d) or this RFC3339 time on")
    p.add_argument("--caller", metavar="SPIFFE_ID", help="only this caller")
    p.add_argument("--tool", help="only calls of this tool")
    p.add_argument("--decision", choices=DECISIONS, help="only this decision")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table",
                   help="a table for people, or one JSON record per line (record.FIELDS) for tools")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since) if args.since is not None else None
    except ValueError as err:
        raise UsageError(str(err)) from None
    paths = [Path(f) for f in args.file or [DEFAULT_FILE]]
    report = ReadReport()
    filters = Filters(since=since, caller=args.caller, tool=args.tool, decision=args.decision)
    # in time order: a proxy streams in batches, and several files (the sink's, a proxy's log) interleave
    records = sorted(read_records(paths, filters, report), key=lambda record: str(record.get("time") or ""))
    for problem in report.problems:
        print(f"agentic-cp audit: {problem}", file=sys.stderr)
    for path, count in report.other_lines.items():
        print(f"agentic-cp audit: {path}: {count} lines that are not access log records (Envoy's own log) skipped",
              file=sys.stderr)
    unreadable = [p for p in paths if not p.is_file()]
    if len(unreadable) == len(paths):
        raise CommandFailed("no file could be read: " + ", ".join(str(p) for p in unreadable))
    text = as_json_lines(records) if args.output == "json" else table(records)
    if text:
        print(text)
    return 0
