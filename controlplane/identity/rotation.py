"""Issued SVIDs, cached, and renewed well before they expire.

A proxy asks for its certificate over SDS many times (every stream, every reconnect); signing each time would
hand out a new key on every reconnect and make "what does this proxy hold" unanswerable. So we issue once
per SPIFFE ID, keep it, and re-issue when a fixed fraction of its lifetime has passed (half, by default:
upstream kube-agentic-networking refreshes a 24 h cert at notAfter - 12 h), which leaves the other half for
the push to reach Envoy and for retries.

Time is injected (``clock``), and ``due_for_renewal``/``renew_due`` take ``now`` explicitly, so the policy is
a pure function of time and tests need no sleeping. ``run`` is the thin async loop a server attaches.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from controlplane.identity.ca import CertificateAuthority, IssuedIdentity

__all__ = ["CertificateManager", "renewal_time"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
OnRenewed = Callable[[list[str]], "Awaitable[None] | None"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def renewal_time(identity: IssuedIdentity, *, renew_fraction: float) -> datetime:
    """The moment ``identity`` should be replaced: ``renew_fraction`` of the way through its lifetime."""
    return identity.not_before + identity.lifetime * renew_fraction


class CertificateManager:
    """Issue-on-first-use cache of SVIDs, keyed by SPIFFE ID, with renewal at a lifetime fraction."""

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        ttl: timedelta = timedelta(hours=24),
        renew_fraction: float = 0.5,
        clock: Clock = _utcnow,
    ):
        if not 0 < renew_fraction < 1:
            raise ValueError("renew_fraction must be between 0 and 1 (exclusive)")
        self.ca = ca
        self.ttl = ttl
        self.renew_fraction = renew_fraction
        self._clock = clock
        self._issued: dict[str, IssuedIdentity] = {}
        self._lock = threading.Lock()  # get() may be called from gRPC worker threads

    @property
    def bundle_pem(self) -> bytes:
        return self.ca.bundle_pem

    def get(self, spiffe_id: str, *, xds_role: str | None = None) -> IssuedIdentity:
        """The current SVID for ``spiffe_id``; issued now if there is none or the cached one has expired.

        ``xds_role`` asks for a proxy credential (ca.issue): a cached SVID without that role is re-issued
        with it, and keeps it through renewals (the gateway's listener certificate is the same SVID)."""
        with self._lock:
            current = self._issued.get(spiffe_id)
            now = self._clock()
            role = xds_role or (current.xds_role if current is not None else None)
            if current is None or now >= current.not_after or current.xds_role != role:
                current = self._issue(spiffe_id, now, xds_role=role)
            return current

    def peek(self, spiffe_id: str) -> IssuedIdentity | None:
        """The cached SVID, without issuing one."""
        return self._issued.get(spiffe_id)

    def known(self) -> list[str]:
        return sorted(self._issued)

    def forget(self, spiffe_id: str) -> None:
        """Drop an identity that no proxy uses any more, so it is not renewed forever."""
        with self._lock:
            self._issued.pop(spiffe_id, None)

    def renewal_time(self, spiffe_id: str) -> datetime | None:
        ident = self._issued.get(spiffe_id)
        return None if ident is None else renewal_time(ident, renew_fraction=self.renew_fraction)

    def due_for_renewal(self, now: datetime | None = None) -> list[str]:
        """SPIFFE IDs whose renewal point is at or before ``now`` (default: the clock), sorted."""
        now = now or self._clock()
        with self._lock:
            return self._due(now)

    def renew_due(self, now: datetime | None = None) -> list[str]:
        """Re-issue every SVID past its renewal point; returns the renewed IDs (sorted)."""
        now = now or self._clock()
        with self._lock:
            due = self._due(now)
            for sid in due:
                self._issue(sid, now, xds_role=self._issued[sid].xds_role)
        return due

    def _due(self, now: datetime) -> list[str]:
        return sorted(sid for sid, ident in self._issued.items()
                      if now >= renewal_time(ident, renew_fraction=self.renew_fraction))

    def next_renewal(self) -> datetime | None:
        """The earliest renewal point among cached SVIDs (for a loop that wants to sleep exactly)."""
        with self._lock:
            times = [renewal_time(i, renew_fraction=self.renew_fraction) for i in self._issued.values()]
        return min(times, default=None)

    def _issue(self, spiffe_id: str, now: datetime, *, xds_role: str | None = None) -> IssuedIdentity:
        ident = self.ca.issue(spiffe_id, ttl=self.ttl, now=now, xds_role=xds_role)
        self._issued[spiffe_id] = ident
        return ident

    async def run(self, on_renewed: OnRenewed, *, interval: float = 30.0) -> None:
        """Renew due SVIDs every ``interval`` seconds and report them to ``on_renewed`` (sync or async).

        A failing callback is logged and the loop goes on: one bad push must not stop rotation for everyone.
        Cancel the task to stop.
        """
        while True:
            renewed = self.renew_due()
            if renewed:
                try:
                    result = on_renewed(renewed)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("on_renewed callback failed for %s", renewed)
            await asyncio.sleep(interval)
