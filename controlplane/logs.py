"""Logging setup for `agentic-cp serve`: text or JSON lines, and no line a log message can forge.

Why: messages carry untrusted text (resource names, file contents, NACK errors from Envoy, peers'
SPIFFE IDs). In text mode a newline in one of them would start what looks like a new, independent
record; `SafeTextFormatter` escapes control characters in the whole rendered record (tracebacks
included), so one record is always one line. `JsonFormatter` writes one JSON object per record (JSON
escapes control characters itself), with the standard fields and any `extra=` a call site passed.
stdlib logging is enough for this; structlog would add a dependency for the same two formatters.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["LOG_FORMATS", "JsonFormatter", "SafeTextFormatter", "bound", "clip", "configure_logging", "escape_control"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


# Untrusted text (a NACK's error_detail, a node id, a resource name, a file's content) is clipped before it
# is logged: 200 NACKs of 100 KB would otherwise add 20 MB of log.
LOG_LIMIT = 500  # characters of client text per log field
DEBUG_LIMIT = 4096  # characters kept for /debug/syncz (e.g. the last NACK's error)


def clip(text: object, limit: int = LOG_LIMIT) -> str:
    """``text`` escaped like repr (without quotes) and cut to ``limit`` chars plus "... (N bytes)"."""
    if text is None:
        return "None"
    raw = str(text)
    shown = raw[: limit + 1].encode("unicode_escape").decode("ascii")
    if len(raw) <= limit and len(shown) <= limit:
        return shown
    return f"{shown[:limit]}... ({len(raw.encode('utf-8', 'surrogatepass'))} bytes)"


def bound(text: str | None, limit: int = DEBUG_LIMIT) -> str | None:
    """``text`` cut to ``limit`` characters (kept unescaped: debug pages encode it as JSON)."""
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text.encode('utf-8', 'surrogatepass'))} bytes)"


def escape_control(text: str) -> str:
    """`text` with every control character (and Unicode line separators) written as an escape."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"
                                             if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"), text)


class SafeTextFormatter(logging.Formatter):
    """The usual text format, one line per record whatever the message holds."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_control(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, exception, and the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        return json.dumps(entry, default=str)  # ASCII: no raw U+2028 either


def configure_logging(level: str = "info", log_format: str = "text", *, stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers with one writing `log_format` records at `level` and above."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else SafeTextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
