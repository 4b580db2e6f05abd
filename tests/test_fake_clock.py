"""FakeClock moves time only once every task is blocked, so a fake-clock test cannot pass or
fail by luck: how many awaits a woken task takes before it sleeps again does not matter."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta

import pytest
import uvloop

from receiver.testing import FakeClock, wait_all_tasks_blocked

# More loop turns than the fixed twenty FakeClock.jump used to allow a woken task.
LONG_WAY = 50


async def _ticker(clock: FakeClock, seen: list[datetime], turns: int) -> None:
    for _ in range(3):
        await clock.sleep_until(clock.now() + timedelta(seconds=10))
        for _ in range(turns):
            await asyncio.sleep(0)  # a long way from waking to the next sleep
        seen.append(clock.now())


@pytest.mark.parametrize("turns", [0, 1, LONG_WAY])
async def test_each_wake_up_is_seen_at_its_own_time_however_long_the_way(
    fake_clock: FakeClock, turns: int
) -> None:
    start, seen = fake_clock.now(), []
    task = asyncio.create_task(_ticker(fake_clock, seen, turns))
    await fake_clock.jump(timedelta(minutes=1))
    assert [(t - start).total_seconds() for t in seen] == [10.0, 20.0, 30.0]
    await task


async def test_a_chain_of_woken_tasks_runs_to_its_end_before_time_moves_on(
    fake_clock: FakeClock,
) -> None:
    """One task's wake-up wakes another, which takes the long way to its own sleep."""
    start, handed, seen = fake_clock.now(), asyncio.Event(), []

    async def first() -> None:
        await fake_clock.sleep_until(start + timedelta(seconds=5))
        handed.set()

    async def second() -> None:
        await handed.wait()
        for _ in range(LONG_WAY):
            await asyncio.sleep(0)
        await fake_clock.sleep_until(fake_clock.now() + timedelta(seconds=5))
        seen.append(fake_clock.now() - start)

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await fake_clock.jump(timedelta(seconds=30))
    assert seen == [timedelta(seconds=10)]
    await asyncio.gather(*tasks)


async def test_a_task_that_never_waits_is_an_error_not_a_hang() -> None:
    async def spin() -> None:
        while True:  # noqa: ASYNC110 (the point: a task that never waits on anything)
            await asyncio.sleep(0)

    spinner = asyncio.create_task(spin())
    try:
        with pytest.raises(RuntimeError, match="still running after 1000 loop turns"):
            await wait_all_tasks_blocked(max_turns=1000)
    finally:
        spinner.cancel()


async def test_a_task_waiting_on_a_thread_counts_as_blocked() -> None:
    """As in trio: the store's threads are waited for by polling what they write."""
    release = threading.Event()
    loop = asyncio.get_running_loop()
    waiting = loop.run_in_executor(None, release.wait)
    await wait_all_tasks_blocked()
    assert not waiting.done()
    release.set()
    assert await waiting is True


def test_uvloop_is_refused_by_name() -> None:
    async def main() -> None:
        await wait_all_tasks_blocked()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner, pytest.raises(
        TypeError, match="asyncio's own event loop"
    ):
        runner.run(main())
