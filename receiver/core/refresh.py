"""Reading state again when told it changed elsewhere (another replica's commit).

A replica keeps what the API changes at run time (maintenance windows, on-call overrides) in
memory, so that no decision waits for a read. When another replica's commit changes it, this
one is told (a NOTIFY) and reads it again. Notifications come in bursts and a read takes a
round trip: `Refresh` runs one read at a time, and a notice that comes during a read starts
exactly one more after it, so the last read always begins after the last change committed.
A read that fails (the database is away) is tried again every RETRY seconds until it works.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from receiver.core.errors import StoreUnavailable
from receiver.core.tasks import cancel

log = logging.getLogger(__name__)

RETRY = 0.5  # seconds between attempts while the store is unavailable


class Refresh:
    def __init__(self, what: str, read: Callable[[], Awaitable[None]]) -> None:
        self._what = what
        self._read = read
        self._again = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def __call__(self) -> None:
        """Read again soon (once the read under way, if any, has finished)."""
        if self._stopped:
            return  # the daemon is stopping: its store is closing, a read would only fail
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"ackd-refresh-{self._what}")

    async def _run(self) -> None:
        while self._again:
            self._again = False
            try:
                await self._read()
            except StoreUnavailable as exc:
                log.warning("cannot read the %s again, retrying: %s", self._what, exc)
                self._again = True
                await asyncio.sleep(RETRY)

    async def stop(self) -> None:
        self._stopped = True
        await cancel(self._task)
        self._task = None
