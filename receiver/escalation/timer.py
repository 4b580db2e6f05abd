"""The one timer loop: durable deadlines in the store, an in-memory heap, an injected clock.

The store is the truth; the heap is an index of it. A deadline is armed in the heap only after
the transaction that created it committed, and firing hands a batch of due ids to `fire`, which
takes each row out of the store in the same transaction as its effects: a cancelled deadline
is simply gone from the store and fires nothing (lazy deletion), and one that fired is never
there to fire again. After a restart, `load` re-arms every stored deadline; those that passed
while ackd was down are due at once.

Replicas on one database each hold every deadline, and share the work: `first_try` says
whether this replica is the one to try a deadline at its due time (store/postgres/
replicas.py deals them out by id among the replicas alive); the others try it GRACE later,
when it is gone already unless its replica is dead or behind. So each deadline is asked for
once, not once per replica, and one of a dead replica's is still fired within a second. What
`on_lateness` observes is the lateness against the time this timer planned to try each, for
each it pops, taken or not: ackd's timers pass none (the responder counts each escalation
deadline where it is taken, against its due time).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta

from receiver.core.clock import Clock
from receiver.core.errors import StoreUnavailable
from receiver.core.tasks import cancel
from receiver.core.wakeup import Wakeup

log = logging.getLogger(__name__)

Fire = Callable[[list[int]], Awaitable[None]]
MAX_BATCH = 512
RETRY_AFTER = timedelta(seconds=1)
# A deadline whose firing raised an error of its own (a bug, a state it cannot read) is tried
# again this much later, for as long as it fails: an escalation step is never dropped, and a
# step that keeps failing costs one log line a minute, not a busy loop.
FAILED_RETRY = timedelta(minutes=1)
# How long after its due time a replica tries a deadline that another replica tries first.
# Short enough that a dead replica's deadlines fire well within a second of their due time,
# long enough that a live one has taken its own by then.
GRACE = timedelta(milliseconds=300)


class Scheduler:
    def __init__(
        self,
        clock: Clock,
        fire: Fire,
        on_lateness: Callable[[float], None] | None = None,
        first_try: Callable[[int], bool] | None = None,
    ) -> None:
        self._clock = clock
        self._fire = fire
        self._on_lateness = on_lateness
        # None: this timer alone fires its deadlines, each at its due time.
        self.first_try = first_try
        self._heap: list[tuple[datetime, int]] = []
        self._wakeup = Wakeup(clock)
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def arm(self, deadline_id: int, due: datetime) -> None:
        heapq.heappush(self._heap, (self._planned(deadline_id, due), deadline_id))
        if self._heap[0][1] == deadline_id:
            self._wakeup.wake()  # the earliest deadline changed: re-plan the sleep

    def load(self, deadlines: Iterable[tuple[int, datetime]]) -> None:
        self._heap.extend((self._planned(deadline_id, due), deadline_id)
                          for deadline_id, due in deadlines)
        heapq.heapify(self._heap)
        self._wakeup.wake()

    def _planned(self, deadline_id: int, due: datetime) -> datetime:
        """When this timer tries the deadline: at its due time, or GRACE later when another
        replica tries it first."""
        if self.first_try is None or self.first_try(deadline_id):
            return due
        return due + GRACE

    def next_due(self) -> datetime | None:
        return self._heap[0][0] if self._heap else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ackd-scheduler")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = self._pop_due()
            if batch:
                await self._fire_batch(batch)
                continue
            await self._sleep()

    def _pop_due(self) -> list[tuple[datetime, int]]:
        now = self._clock.now()
        batch: list[tuple[datetime, int]] = []
        while self._heap and self._heap[0][0] <= now and len(batch) < MAX_BATCH:
            batch.append(heapq.heappop(self._heap))
        if self._on_lateness is not None:
            for due, _ in batch:
                self._on_lateness((now - due).total_seconds())
        return batch

    async def _fire_batch(self, batch: list[tuple[datetime, int]]) -> None:
        try:
            await self._fire([deadline_id for _, deadline_id in batch])
        except StoreUnavailable as exc:
            # Not lost: the rows are still in the store; try again shortly.
            log.error("firing %d deadline(s) failed, retrying: %s", len(batch), exc)
            self._again(batch, RETRY_AFTER)
        except Exception:
            if len(batch) > 1:
                # One deadline's error rolled back the whole batch's job: fire each alone,
                # so that the others' steps go now and only the faulty one waits.
                for one in batch:
                    await self._fire_batch([one])
                return
            log.exception("firing deadline %d failed, trying it again in %s", batch[0][1],
                          FAILED_RETRY)
            self._again(batch, FAILED_RETRY)

    def _again(self, batch: list[tuple[datetime, int]], after: timedelta) -> None:
        """The rows are still in the store (the failed job took none): arm them again."""
        retry_at = self._clock.now() + after
        for _, deadline_id in batch:
            heapq.heappush(self._heap, (retry_at, deadline_id))

    async def _sleep(self) -> None:
        self._wakeup.clear()
        await self._wakeup.sleep(self.next_due())
