"""Leader election over a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it.

Why: every replica serves xDS from the same cluster, but only one may write status (and, later, run
the CA). There is no home-made consensus here: the apiserver's optimistic concurrency (update with
the resourceVersion last read; 409 if someone got there first) decides who holds the Lease.

Expiry is judged by the local monotonic clock from the moment this replica last saw the Lease record
change, never by comparing timestamps written by another machine, so clock skew cannot elect two
leaders. A leader that cannot renew for `renew_deadline` (shorter than the lease duration) steps
down before anyone else may take over.

The Lease is read, created and replaced through the official client's `CoordinationV1Api`. Why not
`kubernetes_asyncio.leaderelection` (the same loop over a LeaseLock): it measures expiry on the wall
clock (`time.time()`), which a clock step can move; this loop uses the monotonic clock, bounds each
attempt by the renew deadline, and releases the Lease on stop (what tests/kube/test_leader.py holds).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from controlplane.kube.client import ApiError, KubeApi
from controlplane.kube.kinds import LEASE

log = logging.getLogger(__name__)

LEADER, FOLLOWER, FAILED = "leader", "follower", "failed"


def micro_time() -> str:
    """A `MicroTime` as the Lease API spells it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaigns for one Lease until stopped; `is_leader` and `leading` tell whether this replica leads."""

    def __init__(
        self,
        *,
        api: KubeApi,
        namespace: str,
        name: str = "agentic-cp-leader",
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        release_on_stop: bool = True,
    ):
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.identity = identity
        self.leading = asyncio.Event()
        self._api = api
        self._namespace, self._name = namespace, name
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._release_on_stop = release_on_stop
        self._listeners: list[Callable[[bool], None]] = []
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    def subscribe(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(is_leader)` whenever leadership changes."""
        self._listeners.append(callback)

    def start(self) -> asyncio.Task[None]:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name=f"leader election {self.identity}")
        return self._task

    async def stop(self, *, release: bool | None = None) -> None:
        """Stop campaigning; give the Lease up at once (unless told not to) so that another replica need not wait."""
        self._stopping = True  # belt and braces: the loop ends even if a cancellation got lost
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        was_leader = self.is_leader
        self._set_leader(False)
        if was_leader and (self._release_on_stop if release is None else release):
            await self._release()

    async def run(self) -> None:
        while not self._stopping:
            outcome = await self._attempt()
            now = time.monotonic()
            if outcome == LEADER:
                self._renewed_at = now
                self._set_leader(True)
            elif outcome == FOLLOWER or now - self._renewed_at > self._renew_deadline:
                self._set_leader(False)
            await asyncio.sleep(self._retry_period)

    async def _attempt(self) -> str:
        """One try to acquire or renew, bounded so that a hung request cannot outlast the renew deadline."""
        timeout = self._renew_deadline
        if self.is_leader:
            timeout = max(0.05, self._renewed_at + self._renew_deadline - time.monotonic())
        try:
            async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can swallow a cancellation
                return await self._acquire_or_renew()
        except Exception as error:  # noqa: BLE001 - whatever failed, the lease was not renewed
            log.info("%s: lease %s/%s not renewed: %r", self.identity, self._namespace, self._name, error)
            return FAILED

    async def _acquire_or_renew(self) -> str:
        try:
            lease = await self._read()
        except ApiError as error:
            if error.status != 404:
                raise
            return await self._create()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self._observe(spec)
        if holder and holder != self.identity and not self._expired(spec):
            return FOLLOWER
        now = micro_time()
        new_spec = {**spec, "renewTime": now, "leaseDurationSeconds": self._lease_seconds()}
        if holder != self.identity:
            new_spec.update(
                holderIdentity=self.identity,
                acquireTime=now,
                leaseTransitions=int(spec.get("leaseTransitions") or 0) + 1,
            )
        lease["spec"] = new_spec
        try:
            await self._replace(lease)  # carries metadata.resourceVersion: 409 if someone wrote first
        except ApiError as error:
            if error.status == 409:
                return FAILED
            raise
        return LEADER

    async def _create(self) -> str:
        now = micro_time()
        body = {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._lease_seconds(),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            await self._api.call(lambda k: k.coordination.create_namespaced_lease, self._namespace, body)
        except ApiError as error:
            if error.status == 409:  # another replica created it first
                return FOLLOWER
            raise
        return LEADER

    async def _read(self) -> dict[str, Any]:
        return await self._api.call(lambda k: k.coordination.read_namespaced_lease, self._name, self._namespace)

    async def _replace(self, lease: dict[str, Any]) -> None:
        await self._api.call(lambda k: k.coordination.replace_namespaced_lease, self._name, self._namespace, lease)

    def _observe(self, spec: dict[str, Any]) -> None:
        record = tuple(
            spec.get(k) for k in ("holderIdentity", "renewTime", "acquireTime", "leaseDurationSeconds")
        )
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()

    def _expired(self, spec: dict[str, Any]) -> bool:
        duration = float(spec.get("leaseDurationSeconds") or self._lease_seconds())
        return time.monotonic() > self._observed_at + duration

    def _lease_seconds(self) -> int:
        return max(1, math.ceil(self._lease_duration))

    async def _release(self) -> None:
        try:
            lease = await self._read()
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = micro_time()
            lease["spec"] = {
                **spec,
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
            }
            await self._replace(lease)
        except (TimeoutError, ApiError, OSError) as error:
            log.info("%s: could not release lease: %r", self.identity, error)

    def _set_leader(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        log.info(
            "%s %s leading %s/%s",
            self.identity,
            "started" if leading else "stopped",
            self._namespace,
            self._name,
        )
        if leading:
            self.leading.set()
        else:
            self.leading.clear()
        for callback in list(self._listeners):
            callback(leading)
