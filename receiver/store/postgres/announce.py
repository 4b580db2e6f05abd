"""The deadline announcements of a replica's batches on PostgreSQL, several in one statement.

A batch that armed deadlines tells the other replicas' timers once it committed (store.py:
`NOTIFY ackd_deadlines`, "id:due_us", sent after the COMMIT and never in it). Each such
announcement was a round trip of its own, which the writer task waited for before it took
its next batch: 0.18 statements per webhook in the ingest mix (bench/pgcost.py). They go to
one sender task instead, which gathers what the batches commit over GATHER and sends it in
one statement: at most 1/GATHER statements a second however many batches commit, and no
writer waits for them. The other replicas hear of each deadline up to GATHER later, which
only a deadline due that soon after it was armed could notice (its first try on another
replica, escalation/timer.py, at most GATHER late); the replica that armed it holds it in its
own timer from its commit on, and should it die before announcing, the others read every
armed deadline (store.py's _catch_up); should it hang (or the statement fail), the others
find each such deadline once it is overdue (late.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

Send = Callable[[list[str]], Awaitable[None]]
GATHER = 0.05  # seconds the sender gathers announcements before it sends them


class Announcer:
    def __init__(self, send: Send, gather: float = GATHER) -> None:
        self._send = send  # never raises StoreUnavailable: it logs what it could not send
        self._gather = gather
        self._pending: list[str] = []
        self._sender: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()  # set: send what is pending at once

    def add(self, payloads: Sequence[str]) -> None:
        """Send these with the others that come within GATHER."""
        self._pending.extend(payloads)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="ackd-pg-announce")

    async def _send_all(self) -> None:
        try:
            while self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self._gather)
                payloads, self._pending = self._pending, []
                try:
                    await self._send(payloads)
                except Exception:  # the sender goes on: the next batches' must still go
                    log.exception("announcing %d deadline(s) failed", len(payloads))
        finally:
            self._sender = None

    async def close(self) -> None:
        """Send what is pending, now (the writers have ended: nothing more comes)."""
        self._closing.set()
        while self._sender is not None:
            await asyncio.shield(self._sender)
        self._closing.clear()  # a store opened again gathers again
