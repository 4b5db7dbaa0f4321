import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.identity.rotation import CertificateManager

A = "spiffe://example.org/ns/a/sa/one"
B = "spiffe://example.org/ns/a/sa/two"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def manager(ca, clock):
    return CertificateManager(ca, ttl=timedelta(hours=24), renew_fraction=0.5, clock=clock)


def test_get_issues_once_and_caches(manager):
    first = manager.get(A)
    assert manager.get(A) is first
    assert first.not_before == T0 - timedelta(minutes=2)
    assert manager.known() == [A]


def test_renewal_point_is_a_fraction_of_the_lifetime(manager, clock):
    manager.get(A)
    renew_at = manager.renewal_time(A)
    assert renew_at == T0 - timedelta(minutes=2) + (timedelta(hours=24) + timedelta(minutes=2)) / 2
    assert manager.due_for_renewal(renew_at - timedelta(seconds=1)) == []
    assert manager.due_for_renewal(renew_at) == [A]


def test_renew_due_reissues_only_what_is_due(manager, clock):
    old_a = manager.get(A)
    clock.advance(timedelta(hours=6))
    old_b = manager.get(B)
    clock.advance(timedelta(hours=7))  # A is 13 h old (due), B is 7 h old (not due)
    assert manager.renew_due() == [A]
    new_a = manager.get(A)
    assert new_a is not old_a and new_a.key_pem != old_a.key_pem
    assert new_a.not_before == clock.now - timedelta(minutes=2)
    assert manager.get(B) is old_b
    assert manager.due_for_renewal() == []
    assert manager.next_renewal() == manager.renewal_time(B)


def test_expired_cert_is_replaced_on_get(manager, clock):
    old = manager.get(A)
    clock.advance(timedelta(days=2))
    assert manager.get(A) is not old
    assert manager.get(A).not_after > clock.now


def test_forget_stops_renewal(manager, clock):
    manager.get(A)
    manager.forget(A)
    clock.advance(timedelta(days=1))
    assert manager.renew_due() == []


def test_bad_fraction_is_rejected(ca):
    with pytest.raises(ValueError):
        CertificateManager(ca, renew_fraction=1.0)


async def test_run_loop_reports_renewals_and_survives_callback_errors(manager, clock):
    manager.get(A)
    seen: list[list[str]] = []

    async def on_renewed(ids):
        seen.append(ids)
        raise RuntimeError("push failed")  # must not stop the loop

    task = asyncio.create_task(manager.run(on_renewed, interval=0.01))
    await asyncio.sleep(0.05)
    assert seen == []
    clock.advance(timedelta(hours=13))
    for _ in range(100):
        if len(seen) >= 1:
            break
        await asyncio.sleep(0.01)
    clock.advance(timedelta(hours=13))
    for _ in range(100):
        if len(seen) >= 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [[A], [A]]
