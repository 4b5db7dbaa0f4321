"""Where audit records go: an append-only JSON-lines file, capped and rotated, and Prometheus counters.

The file: one record per line (record.FIELDS), flushed after every batch Envoy sends, so a crash loses
at most the batch being written. When it would pass `max_bytes` it is renamed to `FILE.1` (`.1` to `.2`,
and so on, `backups` kept) and a new one is started: the disk use is bounded by (backups + 1) x max_bytes.

The counters: `agentic_audit_requests_total{caller, backend, tool, decision}`; a refused request has no
upstream cluster in Envoy's report, so its `backend` label is `route <HTTPRoute rule>` instead. Their cardinality is
callers x backends x tools x 4 decisions, which the mesh's own policies bound, except that a hostile or
buggy proxy config could mint values; so at most `max_series` label sets are kept, and records beyond
that count under `overflow` labels (all four `_other`), counted in `agentic_audit_series_overflow_total`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_BACKUPS = 3
DEFAULT_MAX_SERIES = 10_000
OTHER = "_other"
NONE = "-"  # a label for a record without that value (no tool: not a tools/call)


class JsonLinesFile:
    """Appends records as JSON lines to `path`, rotating at `max_bytes`."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")

    def write(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            line = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
            if self._file.tell() and self._file.tell() + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        for index in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            newer = self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 else self.path
            if newer.exists():
                os.replace(newer, older)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._file = self.path.open("ab")


class AuditMetrics:
    """Per caller x backend x tool x decision counts, with the number of label sets bounded."""

    def __init__(self, registry: CollectorRegistry, *, max_series: int = DEFAULT_MAX_SERIES):
        self.requests = Counter("agentic_audit_requests", "Requests seen by enforcing proxies, per decision",
                                ["caller", "backend", "tool", "decision"], registry=registry)
        self.overflow = Counter("agentic_audit_series_overflow", "Records counted under _other labels "
                                "because the label-set cap was reached", registry=registry)
        self.rejected = Counter("agentic_audit_entries_rejected", "Access log entries or streams the sink "
                                "refused (malformed, unauthenticated)", ["reason"], registry=registry)
        self.max_series = max_series
        self._seen: set[tuple[str, ...]] = set()

    def count(self, record: dict[str, Any]) -> None:
        backend = record.get("backend") or (f"route {record['route']}" if record.get("route") else None)
        labels = tuple(str(value or NONE) for value in (record.get("caller"), backend, record.get("tool"),
                                                         record.get("decision")))
        if labels not in self._seen:
            if len(self._seen) >= self.max_series:
                self.overflow.inc()
                labels = (OTHER,) * 4
            self._seen.add(labels)
        self.requests.labels(*labels).inc()


class AuditSink:
    """What the access log service hands its records to: the file and the counters."""

    def __init__(self, file: JsonLinesFile, metrics: AuditMetrics):
        self.file = file
        self.metrics = metrics

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        try:
            self.file.write(records)
        except OSError as err:  # a full disk must not end the stream; the proxies' own logs still hold them
            log.error("audit log %s: %d records not written: %s", self.file.path, len(records), err)
        for record in records:
            self.metrics.count(record)

    def close(self) -> None:
        self.file.close()
