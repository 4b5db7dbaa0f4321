"""Leader election over a Lease on the fake apiserver: one leader, takeover after expiry, stepping down."""

from __future__ import annotations

import asyncio

from controlplane.kube.kinds import LEASE
from controlplane.kube.leader import LeaderElector
from tests.kube.conftest import wait_until

TIMINGS = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1}


def elector(api, identity, **overrides):
    return LeaderElector(api=api, namespace="agentic-system", identity=identity, **{**TIMINGS, **overrides})


def holder(server):
    lease = server.get(LEASE, "agentic-system", "agentic-cp-leader")
    return lease and lease["spec"]["holderIdentity"]


async def test_one_leads_and_the_other_takes_over_when_it_stops(server, api):
    first, second = elector(api, "replica-1"), elector(api, "replica-2")
    first.start()
    await wait_until(lambda: first.is_leader)
    second.start()
    for _ in range(15):  # across more than a lease duration, the leader keeps renewing
        await asyncio.sleep(0.1)
        assert first.is_leader and not second.is_leader
    assert holder(server) == "replica-1"
    await first.stop(release=False)  # as if it crashed: the lease must expire first
    assert not first.is_leader
    await asyncio.wait_for(second.leading.wait(), 10)
    assert holder(server) == "replica-2"
    lease = server.get(LEASE, "agentic-system", "agentic-cp-leader")
    assert lease["spec"]["leaseTransitions"] == 1 and lease["spec"]["leaseDurationSeconds"] == 1
    await second.stop()


async def test_a_released_lease_is_taken_without_waiting_for_expiry(server, api):
    slow = {"lease_duration": 30.0, "renew_deadline": 20.0, "retry_period": 0.1}
    first, second = elector(api, "replica-1", **slow), elector(api, "replica-2", **slow)
    first.start()
    await wait_until(lambda: first.is_leader)
    second.start()
    await asyncio.sleep(0.3)
    assert not second.is_leader
    await first.stop()  # releases: a 30 s lease need not run out
    await asyncio.wait_for(second.leading.wait(), 5)
    await second.stop()


async def test_only_one_leads_when_both_start_together(server, api):
    electors = [elector(api, f"replica-{i}") for i in range(3)]
    for e in electors:
        e.start()
    await wait_until(lambda: any(e.is_leader for e in electors))
    for _ in range(10):
        await asyncio.sleep(0.1)
        assert sum(e.is_leader for e in electors) == 1
    for e in electors:
        await e.stop()


async def test_leader_steps_down_when_it_cannot_renew(server, api):
    changes = []
    leader = elector(api, "replica-1")
    leader.subscribe(changes.append)
    leader.start()
    await wait_until(lambda: leader.is_leader)
    server.forbid("leases", verbs=("get", "update"))
    await wait_until(lambda: not leader.is_leader)
    assert changes == [True, False]
    server.allow("leases")
    await wait_until(lambda: leader.is_leader)  # its own lease: it takes it back
    await leader.stop()
