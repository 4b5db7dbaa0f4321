"""Hand freed stream memory back to the OS after streams close.

A stream subscribed to many names leaves its freed objects in glibc's heap arenas; CPython's
allocator returns them to malloc, but malloc keeps the pages, so RSS stays high after a
burst of streams ends. ``malloc_trim(0)`` releases them. One trim runs shortly after a burst
of closes (coalesced), never per close. Without glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

TRIM_DELAY_S = 1.0


def _load_malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_freed_memory() -> bool:
    """Return free heap pages to the OS; False where malloc_trim is unavailable."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class MemoryReleaser:
    """Schedules one ``release_freed_memory`` ``delay`` seconds after the first of a burst of closes."""

    def __init__(self, delay: float = TRIM_DELAY_S) -> None:
        self._delay = delay
        self._pending: asyncio.TimerHandle | None = None
        self.trims = 0

    def stream_closed(self) -> None:
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(self._delay, self._trim)

    def _trim(self) -> None:
        self._pending = None
        if release_freed_memory():
            self.trims += 1
