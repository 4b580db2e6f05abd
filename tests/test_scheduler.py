"""The timer loop on a fake clock: exact virtual times, no sleeping."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from receiver.core.errors import StoreUnavailable
from receiver.escalation.timer import GRACE, Scheduler
from receiver.testing import FakeClock


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_fires_in_order_at_virtual_times(fake_clock: FakeClock) -> None:
    fired: list[tuple[list[int], float]] = []
    start = fake_clock.now()

    async def fire(ids: list[int]) -> None:
        fired.append((ids, (fake_clock.now() - start).total_seconds()))

    scheduler = Scheduler(fake_clock, fire)
    scheduler.start()
    scheduler.arm(2, start + timedelta(minutes=5))
    scheduler.arm(1, start + timedelta(seconds=30))
    scheduler.arm(3, start + timedelta(minutes=5))
    await settle()
    assert fired == []
    await fake_clock.jump(29)
    assert fired == []
    await fake_clock.jump(1)
    assert fired == [([1], 30.0)]
    await fake_clock.jump(timedelta(minutes=30))
    assert fired == [([1], 30.0), ([2, 3], 300.0)]
    await scheduler.stop()


async def test_an_earlier_arm_replans_the_sleep(fake_clock: FakeClock) -> None:
    fired: list[int] = []

    async def fire(ids: list[int]) -> None:
        fired.extend(ids)

    scheduler = Scheduler(fake_clock, fire)
    scheduler.start()
    scheduler.arm(1, fake_clock.now() + timedelta(hours=1))
    await settle()
    scheduler.arm(2, fake_clock.now() + timedelta(seconds=1))
    await settle()
    await fake_clock.jump(1)
    assert fired == [2]
    await scheduler.stop()


async def test_passed_deadlines_fire_at_once_after_load(fake_clock: FakeClock) -> None:
    lateness: list[float] = []
    fired: list[int] = []

    async def fire(ids: list[int]) -> None:
        fired.extend(ids)

    scheduler = Scheduler(fake_clock, fire, lateness.append)
    scheduler.load([(7, fake_clock.now() - timedelta(minutes=3)), (8, fake_clock.now())])
    scheduler.start()
    await settle()
    assert fired == [7, 8]
    assert lateness == [180.0, 0.0]
    await scheduler.stop()


async def test_store_trouble_retries_instead_of_losing(fake_clock: FakeClock) -> None:
    attempts: list[list[int]] = []

    async def fire(ids: list[int]) -> None:
        attempts.append(ids)
        if len(attempts) == 1:
            raise StoreUnavailable("database is locked")

    scheduler = Scheduler(fake_clock, fire)
    scheduler.arm(1, fake_clock.now())
    scheduler.start()
    await settle()
    assert attempts == [[1]]
    assert len(scheduler) == 1
    await fake_clock.jump(1)
    assert attempts == [[1], [1]]
    assert len(scheduler) == 0
    await scheduler.stop()


async def test_one_deadline_that_fails_neither_drops_nor_holds_the_others(
    fake_clock: FakeClock,
) -> None:
    """A deadline whose firing raises (a bug, a state it cannot read) failed its whole batch's
    job, and every deadline of the batch was dropped from the heap until a restart: 511 steps
    lost for one. Now the others fire at once, each alone, and the faulty one is tried again
    a minute later, for as long as it fails."""
    attempts: list[list[int]] = []
    broken = {2}

    async def fire(ids: list[int]) -> None:
        attempts.append(ids)
        if broken & set(ids):
            raise ValueError("cannot read the escalation state")

    scheduler = Scheduler(fake_clock, fire)
    scheduler.load([(1, fake_clock.now()), (2, fake_clock.now()), (3, fake_clock.now())])
    scheduler.start()
    await settle()
    assert attempts == [[1, 2, 3], [1], [2], [3]]
    assert len(scheduler) == 1  # the faulty one, armed again
    await fake_clock.jump(59)
    assert attempts[4:] == []
    await fake_clock.jump(1)
    assert attempts[4:] == [[2]]
    broken.clear()  # fixed (a reload, a transient fault gone)
    await fake_clock.jump(60)
    assert attempts[4:] == [[2], [2]]
    assert len(scheduler) == 0
    await scheduler.stop()


async def test_a_deadline_another_replica_tries_first_is_tried_a_grace_later(
    fake_clock: FakeClock,
) -> None:
    """Replicas share due deadlines: this one tries the even ids at their due time and the
    others GRACE later, should their replica not have fired them (it died)."""
    fired: list[tuple[list[int], float]] = []
    lateness: list[float] = []
    start = fake_clock.now()

    async def fire(ids: list[int]) -> None:
        fired.append((ids, (fake_clock.now() - start).total_seconds()))

    scheduler = Scheduler(fake_clock, fire, lateness.append, first_try=lambda i: i % 2 == 0)
    scheduler.arm(1, start + timedelta(seconds=10))
    scheduler.arm(2, start + timedelta(seconds=10))
    scheduler.load([(3, start), (4, start), (5, start - timedelta(seconds=5))])
    scheduler.start()
    await settle()
    assert fired == [([5, 4], 0.0)]  # passed even with the grace, and this one's own
    await fake_clock.jump(GRACE)
    assert fired[1:] == [([3], GRACE.total_seconds())]
    await fake_clock.jump(timedelta(seconds=10) - GRACE)
    assert fired[2:] == [([2], 10.0)]
    await fake_clock.jump(GRACE)
    assert fired[3:] == [([1], 10.0 + GRACE.total_seconds())]
    # Lateness against when this timer planned to try each.
    assert lateness == [(timedelta(seconds=5) - GRACE).total_seconds(), 0.0, 0.0, 0.0, 0.0]
    await scheduler.stop()
