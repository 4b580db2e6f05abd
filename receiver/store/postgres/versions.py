"""The webhook memos' version reads on PostgreSQL, several callers' in one statement.

Every resend answered from a memo first reads the versions (xmin) of its incidents' rows,
unlocked (`Store.open_versions`, grouping.HeldGroups): the most frequent statement of the
ingest mix, each a round trip that costs both processes more than the index lookup it
carries. Resends that arrive together share one read: a caller's ids join the next read,
which starts once the loop has run what was ready with it, or, while a read is in flight,
once that one has ended. Never does a caller take the answer of a read that began before it
asked: that read may predate another replica's commit the caller must see (a resend after
an incident was resolved elsewhere must go down the full path and open a new one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from receiver.core.errors import StoreUnavailable
from receiver.core.tasks import cancel

Fetch = Callable[[list[int]], Awaitable[dict[int, int]]]


class _Read:
    __slots__ = ("ids", "done")

    def __init__(self) -> None:
        self.ids: set[int] = set()
        # The versions found, or why the read failed (each caller raises its own error).
        self.done: asyncio.Future[dict[int, int] | str] = (
            asyncio.get_running_loop().create_future())


class VersionReads:
    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._next: _Read | None = None  # the read callers join, not started yet
        self._current: _Read | None = None  # the read in flight
        self._reader: asyncio.Task[None] | None = None

    async def read(self, incident_ids: Sequence[int]) -> dict[int, int]:
        if self._next is None:
            self._next = _Read()
        ahead = self._next
        ahead.ids.update(incident_ids)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_all(), name="ackd-pg-versions")
        # Shielded: a caller that gives up (its request cancelled) leaves the read to the
        # others that joined it.
        found = await asyncio.shield(ahead.done)
        if isinstance(found, str):
            raise StoreUnavailable(found)
        return {i: found[i] for i in incident_ids if i in found}

    async def _read_all(self) -> None:
        """Read for whoever joined, then again while others joined meanwhile."""
        try:
            while self._next is not None:
                current = self._current = self._next
                self._next = None
                try:
                    found = await self._fetch(sorted(current.ids))
                except StoreUnavailable as exc:
                    current.done.set_result(str(exc))
                except Exception as exc:
                    current.done.set_exception(exc)  # every caller waits on this read
                else:
                    current.done.set_result(found)
                self._current = None
        finally:
            self._reader = None

    async def close(self) -> None:
        await cancel(self._reader)
        self._reader = None
        for left in (self._current, self._next):
            if left is not None and not left.done.done():
                left.done.set_result("the store is closed")
        self._current = self._next = None
