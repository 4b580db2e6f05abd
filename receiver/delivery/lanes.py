"""Per-URL lanes: at most one delivery in flight per URL, and `workers` in all. A hung
endpoint holds one worker and queues only its own messages, instead of taking every worker
and starving the endpoints that work. What queued in a lane while it was busy goes out as
one message when it frees (plan.lane_bundle; the dispatcher holds the queue)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Lanes:
    def __init__(self, workers: int) -> None:
        self._slots = asyncio.Semaphore(workers)
        self._lanes: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, url: str) -> AsyncIterator[None]:
        """Wait for the URL's lane, then for a worker; both are kept until the block ends."""
        async with self.lane(url), self.worker():
            yield

    def busy(self, url: str) -> bool:
        """A send to `url` holds its lane, or waits for it: one asking now waits."""
        return url in self._lanes

    def workers_busy(self) -> bool:
        """Every worker is taken: one asking now waits."""
        return self._slots.locked()

    @contextlib.asynccontextmanager
    async def worker(self) -> AsyncIterator[None]:
        """One of the `workers`: take it inside the URL's lane, just before sending."""
        async with self._slots:
            yield

    @contextlib.asynccontextmanager
    async def lane(self, url: str) -> AsyncIterator[None]:
        """The URL's lane alone (waiters get it in the order they asked)."""
        lock, users = self._lanes.get(url, (asyncio.Lock(), 0))
        self._lanes[url] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._lanes[url]
            if users == 1:
                del self._lanes[url]  # idle: keep memory bounded by the URLs in use
            else:
                self._lanes[url] = (lock, users - 1)
