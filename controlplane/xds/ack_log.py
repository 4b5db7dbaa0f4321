"""One info line per proxy, type and version when a push is ACKed or NACKed, with how long it took.

An operator reads from the log which proxy took which version, and how fast. At scale a stream sees the
same outcome many times (a re-subscription, a resent version, an ACK that answers nothing new), so a line
is written only when the (version, outcome) of a type changes on that stream: bounded by the number of
types, and quiet while nothing changes.
"""

from __future__ import annotations

import logging
import time

from controlplane.logs import clip

log = logging.getLogger("controlplane.xds.acks")


class AckLog:
    """The last outcome logged for each type on one proxy's stream."""

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self._last: dict[str, tuple[str, str]] = {}

    def outcome(self, outcome: str, type_label: str, version: str, pushed_at: float | None,
                error: str | None = None) -> bool:
        """Log `outcome` (ACK or NACK) of `version` unless this type's last line said the same; True if logged.

        `pushed_at` is the `time.monotonic()` stamp of the push being answered, if known."""
        if self._last.get(type_label) == (version, outcome):
            return False
        self._last[type_label] = (version, outcome)
        took = "" if pushed_at is None else f" in {(time.monotonic() - pushed_at) * 1000:.0f} ms"
        reason = f": {clip(error)}" if error else ""
        log.info("%s %s %s version %s%s%s", clip(self._node_id), outcome, type_label, clip(version or "-"),
                 took, reason)
        return True
