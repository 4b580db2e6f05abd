"""The shared sleep of the background loops, on a fake clock: exact virtual times, no sleeping."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from receiver.core.wakeup import Wakeup
from receiver.testing import FakeClock


async def test_a_sleep_ends_at_its_time(fake_clock: FakeClock) -> None:
    wakeup = Wakeup(fake_clock)
    start = fake_clock.now()
    sleeping = asyncio.create_task(wakeup.sleep(start + timedelta(seconds=30)))
    await fake_clock.jump(29)
    assert not sleeping.done()
    await fake_clock.jump(1)
    await asyncio.wait_for(sleeping, 5)
    assert fake_clock.sleepers == 0  # the wait for a wake is gone with it


async def test_a_wake_ends_a_sleep_before_its_time(fake_clock: FakeClock) -> None:
    wakeup = Wakeup(fake_clock)
    sleeping = asyncio.create_task(wakeup.sleep(fake_clock.now() + timedelta(hours=1)))
    await fake_clock.jump(1)
    assert not sleeping.done()
    wakeup.wake()
    await asyncio.wait_for(sleeping, 5)
    assert fake_clock.sleepers == 0  # the clock's sleeper was cancelled, not left behind


async def test_without_a_time_only_a_wake_ends_it(fake_clock: FakeClock) -> None:
    wakeup = Wakeup(fake_clock)
    sleeping = asyncio.create_task(wakeup.sleep(None))
    await fake_clock.jump(timedelta(days=365))
    assert not sleeping.done()
    wakeup.wake()
    await asyncio.wait_for(sleeping, 5)


async def test_a_wake_before_the_sleep_is_kept_until_cleared(fake_clock: FakeClock) -> None:
    """A wake that comes while the loop looks at its work must not be lost; one from before
    the loop looked is forgotten by `clear`."""
    wakeup = Wakeup(fake_clock)
    wakeup.wake()
    await asyncio.wait_for(wakeup.sleep(None), 5)  # at once
    wakeup.clear()
    sleeping = asyncio.create_task(wakeup.sleep(None))
    await fake_clock.jump(60)
    assert not sleeping.done()
    wakeup.wake()
    await asyncio.wait_for(sleeping, 5)
