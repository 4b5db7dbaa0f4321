"""Client-supplied text made safe for logs and debug pages: bounded and escaped.

A NACK's error_detail, a node id, a user agent or a resource name comes from the client. Logged
raw, 200 NACKs of 100 KB add 20 MB of log, and a newline in one forges a log line. ``clip``
escapes control characters (as ``repr`` does, so ``\\n`` stays two visible characters) and
truncates, saying how long the original was.
"""

from __future__ import annotations

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
