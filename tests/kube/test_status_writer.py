"""Status goes back to the cluster through one writer: the leader's."""

from __future__ import annotations

import asyncio

from controlplane.kube.kinds import XACCESSPOLICY
from controlplane.kube.leader import LeaderElector
from controlplane.kube.status_writer import StatusWriter, merge_patch
from tests.kube.conftest import obj, wait_until

ACCEPTED = {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]}
REJECTED = {"conditions": [{"type": "Accepted", "status": "False", "reason": "InvalidCEL"}]}


class Fixed:
    """An elector whose answer the test decides (for the cases where who leads is not the point)."""

    def __init__(self, leading: bool):
        self.is_leader = leading

    def subscribe(self, callback):
        pass


def status_of(server, name):
    return server.get(XACCESSPOLICY, "default", name).get("status")


def patches(server):
    return [r for r in server.requests if r.method == "PATCH"]


async def test_only_the_leader_writes_and_a_new_leader_writes_what_it_was_asked(server, api):
    server.create(obj(XACCESSPOLICY, "policy"))
    timings = {
        "lease_duration": 1.0,
        "renew_deadline": 0.6,
        "retry_period": 0.1,
        "namespace": "agentic-system",
    }
    first = LeaderElector(api=api, identity="replica-1", **timings)
    second = LeaderElector(api=api, identity="replica-2", **timings)
    first.start()
    await wait_until(lambda: first.is_leader)
    second.start()
    leader_writer = StatusWriter(api=api, elector=first)
    follower_writer = StatusWriter(api=api, elector=second)

    assert not await follower_writer.write("XAccessPolicy", "default", "policy", REJECTED)
    assert status_of(server, "policy") is None and patches(server) == []

    assert await leader_writer.write("XAccessPolicy", "default", "policy", ACCEPTED)
    assert status_of(server, "policy") == ACCEPTED
    assert not await leader_writer.write(XACCESSPOLICY, "default", "policy", dict(ACCEPTED))  # identical
    assert len(patches(server)) == 1
    assert patches(server)[0].path.endswith("/namespaces/default/xaccesspolicies/policy/status")

    await first.stop()
    await wait_until(lambda: status_of(server, "policy") == REJECTED)  # the new leader's pending wish
    assert second.is_leader
    await second.stop()
    await leader_writer.aclose()
    await follower_writer.aclose()


async def test_a_gone_object_is_not_an_error(server, api):
    writer = StatusWriter(api=api, elector=Fixed(True))
    assert not await writer.write("XAccessPolicy", "default", "missing", ACCEPTED)


async def test_conflicts_are_retried(server, api):
    server.create(obj(XACCESSPOLICY, "policy"))
    server.inject(method="PATCH", path_contains="/status", status=409, times=2)
    writer = StatusWriter(api=api, elector=Fixed(True), conflict_delay=0.01)
    assert await writer.write("XAccessPolicy", "default", "policy", ACCEPTED)
    assert status_of(server, "policy") == ACCEPTED and len(patches(server)) == 3


async def test_keys_that_go_away_are_removed_from_the_status(server, api):
    server.create(obj(XACCESSPOLICY, "policy"))
    writer = StatusWriter(api=api, elector=Fixed(True))
    await writer.write("XAccessPolicy", "default", "policy", {**ACCEPTED, "note": "x"})
    await writer.write("XAccessPolicy", "default", "policy", ACCEPTED)
    assert status_of(server, "policy") == ACCEPTED


def test_merge_patch_nulls_what_went_away():
    assert merge_patch({"a": 1, "b": {"c": 1, "d": 2}}, {"b": {"c": 2}}) == {
        "a": None,
        "b": {"c": 2, "d": None},
    }
    assert merge_patch(None, {"a": [1]}) == {"a": [1]}


async def test_a_write_while_following_is_sent_on_winning(server, api):
    server.create(obj(XACCESSPOLICY, "policy"))
    leader = LeaderElector(
        api=api,
        namespace="agentic-system",
        identity="solo",
        lease_duration=1.0,
        renew_deadline=0.6,
        retry_period=0.1,
    )
    writer = StatusWriter(api=api, elector=leader)
    assert not await writer.write("XAccessPolicy", "default", "policy", ACCEPTED)
    leader.start()
    await wait_until(lambda: status_of(server, "policy") == ACCEPTED)
    await leader.stop()
    await asyncio.sleep(0)
    await writer.aclose()
