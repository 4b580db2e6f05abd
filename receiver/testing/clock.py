"""A clock for tests: virtual time that moves only when told to, and only once every task is
blocked.

`FakeClock.jump` stops at each sleeper's wake-up time and lets what woke run until every task
of the loop waits again (`wait_all_tasks_blocked`, after trio.testing's): however many awaits a
woken task passes through before it sleeps again, it sleeps from the time it asked for, so a
fake-clock test cannot pass or fail by how long the tasks happen to take. "Blocked" means
waiting on a future, a timer, a socket or a thread; a task waiting on a thread (the store's)
counts as blocked, as in trio, so tests wait for the store's results by polling it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

# Loop turns wait_all_tasks_blocked allows before it calls a task that never waits a bug.
MAX_TURNS = 100_000


class FakeClock:
    """A clock that moves only when told to; sleepers wake as virtual time passes them."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._seq), future))
        await future

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError("a FakeClock never goes backwards")
        self._now = when
        while self._sleepers and self._sleepers[0][0] <= when:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def advance(self, delta: timedelta | float) -> None:
        seconds = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        self.set(self._now + seconds)

    async def jump(self, delta: timedelta | float) -> None:
        """Move time forward, stopping at every sleeper's wake-up time on the way and letting
        the woken tasks run until all are blocked again, so each one observes exactly the time
        it asked for."""
        seconds = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        target = self._now + seconds
        # A task about to sleep arms its wake-up before time moves past it.
        await wait_all_tasks_blocked()
        while (wake := self._next_wake()) is not None and wake <= target:
            self.set(max(wake, self._now))
            await wait_all_tasks_blocked()
        self.set(target)
        await wait_all_tasks_blocked()

    def _next_wake(self) -> datetime | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled sleepers
        return self._sleepers[0][0] if self._sleepers else None

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())


async def wait_all_tasks_blocked(max_turns: int = MAX_TURNS) -> None:
    """Return once every other task of the running loop is blocked: the loop's ready queue
    (callbacks due to run, woken tasks among them) stayed empty across two whole turns, the
    second of which polled for I/O. Raises RuntimeError after `max_turns` turns with work
    still ready: a task that never waits would keep virtual time still for ever."""
    ready = _ready_queue(asyncio.get_running_loop())
    quiet = 0
    for _ in range(max_turns):
        await asyncio.sleep(0)
        # Our own wake-up was taken off the queue to run us: anything there is someone else's.
        quiet = quiet + 1 if not ready else 0
        if quiet == 2:
            return
    raise RuntimeError(f"tasks were still running after {max_turns} loop turns")


def _ready_queue(loop: asyncio.AbstractEventLoop) -> deque[Any]:
    ready = getattr(loop, "_ready", None)
    if not isinstance(ready, deque):
        # uvloop keeps its queue in C: there is no asking it whether everything waits.
        raise TypeError(f"FakeClock needs asyncio's own event loop, not {type(loop).__name__}")
    return ready
