"""The sleep of a background loop: until a time on its clock, or until someone wakes it.

The timer loop sleeps until its earliest deadline unless a new, earlier one is armed; the
dispatcher sleeps until the next outbox row is due unless a commit enqueued or a send ended;
a heartbeat monitor would sleep until the next expected beat. Each holds one `Wakeup`: the
loop calls `clear()` before it looks at what there is to do (so a wake that comes while it
looks is not lost) and then `sleep(until)`; anyone calls `wake()`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from receiver.core.clock import Clock


class Wakeup:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._event = asyncio.Event()

    def wake(self) -> None:
        """End the current sleep, or the next one at once if none is under way."""
        self._event.set()

    def clear(self) -> None:
        """Forget earlier wakes: call it before looking at what there is to do."""
        self._event.clear()

    async def sleep(self, until: datetime | None) -> None:
        """Return at `until` on the clock (never, if None) or at a wake since `clear()`,
        whichever comes first."""
        tasks: set[asyncio.Task[None]] = {asyncio.create_task(self._wait())}
        if until is not None:
            tasks.add(asyncio.create_task(self._clock.sleep_until(until)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    async def _wait(self) -> None:
        await self._event.wait()
