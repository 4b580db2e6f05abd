"""A clock for tests: virtual time that moves only when told to."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta


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
        the woken tasks run, so each one observes exactly the time it asked for."""
        seconds = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        target = self._now + seconds
        while (wake := self._next_wake()) is not None and wake <= target:
            self.set(max(wake, self._now))
            await _settle()
        self.set(target)
        await _settle()

    def _next_wake(self) -> datetime | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled sleepers
        return self._sleepers[0][0] if self._sleepers else None

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())


async def _settle() -> None:
    # Enough loop turns for woken tasks to run through a few awaits of their own.
    for _ in range(20):
        await asyncio.sleep(0)
