"""Deadlines no replica took in time: what a replica hung right after its commit leaves.

A replica tells the others of the deadlines a batch armed after its COMMIT (announce.py, up
to GATHER later); until then only its own timer holds them. Hung in that moment while still
connected (SIGSTOP, a blocked event loop, a paused VM), or its announcement failed (the
database restarting), it leaves deadlines no other replica knows of, and its advisory lock
says it is alive, so nothing reads them again (store.py's catch-up runs when a replica goes
or a listener comes back): its incidents' next steps waited for it to resume.

Every timer that holds a deadline tries it by GRACE after its due time (escalation/timer.py),
so one still in the table LATE after its due time is held by no live timer, or its firing is
slow. Every WATCH seconds each replica asks for those (`LATE_DEADLINES`: a range of the
index on `due`, empty as a rule) and hands each to its timer, which tries it at once; the
timers race for it as for any other deadline (TAKE's SKIP LOCKED: one fires it, once). So a
hung replica's steps fire on the others within LATE + WATCH of their due time. A deadline is
handed once, and again every AGAIN seconds for as long as it stays late, not every sweep: one
locked by a replica hung while firing it, or that a timer cannot fire (its transaction
fails), is tried a few times a minute, not five times a second; moved to another due time,
it is new.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from receiver.store.codec import from_us

# Past the timer's GRACE (escalation/timer.py, 300 ms: a layer above the store, so not
# imported; tests/test_replicas_hung.py holds the two together), when every live timer
# holding the deadline has tried it, plus 200 ms; short of a second, the promise a replica's
# death keeps too. A live replica's deadline found late (its batch slow) costs one more try
# that finds nothing.
LATE = timedelta(milliseconds=500)
LIMIT = 512  # deadlines read at a time (the timer's batch); the next ones once these are taken
AGAIN = 5.0  # seconds before a deadline still late is handed again
LATE_DEADLINES = "SELECT id, due FROM deadlines WHERE due <= $1 ORDER BY due LIMIT $2"


class LateDeadlines:
    """When each late deadline (id, due) was handed to the timer (monotonic seconds), until
    it is late no more."""

    def __init__(self) -> None:
        self._handed: dict[tuple[int, int], float] = {}

    def due_to_hand(
        self, found: Iterable[tuple[int, int]], now: float | None = None
    ) -> list[tuple[int, datetime]]:
        """Of the late deadlines just read (id, due in µs), those not handed yet or not
        within AGAIN; each of them is handed now."""
        now = time.monotonic() if now is None else now
        handed = {key: self._handed.get(key, now - AGAIN) for key in found}
        fresh = sorted(key for key, at in handed.items() if now - at >= AGAIN)
        self._handed = handed | dict.fromkeys(fresh, now)
        return [(deadline_id, from_us(due)) for deadline_id, due in fresh]
