"""Time as a dependency.

Everything that decides takes `now`; everything that waits waits on a Clock. Production uses
SystemClock; tests use receiver.testing.FakeClock and move time by hand, so a 30-minute
escalation runs in milliseconds and tests assert exact virtual times.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return at `when` or soon after; return at once if it has passed."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        # Re-check after each sleep: the event loop's monotonic clock and the wall clock drift
        # apart (NTP slews), and a deadline must never fire early.
        delay = (when - self.now()).total_seconds()
        while delay > 0:
            await asyncio.sleep(delay)
            delay = (when - self.now()).total_seconds()
