"""How far this replica's clock is from the database's, measured as NTP measures it; pure.

Replicas on one PostgreSQL database share the deadlines, and each compares their due times
with its own clock: the first whose clock says "due" fires the step, so one clock N seconds
fast fires the whole cluster's steps N seconds early. Each replica therefore asks the
database for its clock now and then (store/postgres/store.py: `SELECT clock_timestamp()` on
the listening connection, the statement its beat already runs every second) and reads this
replica's clock as the query leaves (`sent`) and as the answer comes (`received`).

The database read its clock somewhere in that round trip, so this replica's clock read
`sent + (received - sent) / 2` then, give or take half the round trip: the offset is that
midpoint minus the database's reading (positive: this replica is ahead), its uncertainty
half the round trip. A round trip stretched by a busy event loop or network makes the
estimate loose, not wrong; of the last SAMPLES samples, the one with the shortest round trip
is kept (NTP's clock filter does the same). A round trip that went backwards (the clock was
stepped during it) says nothing and is left out.

`SkewWatch` turns the estimates into the two moments worth a log line: the offset passing
THRESHOLD by more than its uncertainty (ten round trips each stretched past two seconds, a
loop blocked that long, are not a clock off), and coming back under RECOVERED (lower, so an
offset hovering at the threshold does not log a line a second).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum

from receiver.core.frozen import frozen

SAMPLES = 10  # the estimate is the best of this many samples (one a beat: 10 s)
THRESHOLD = 1.0  # seconds off the database's clock that are worth a WARNING
RECOVERED = 0.5  # seconds under which a clock past THRESHOLD is back


@frozen(slots=True)
class Sample:
    sent: datetime  # this replica's clock as the query left
    server: datetime  # the database's clock while it ran the query
    received: datetime  # this replica's clock as the answer came

    @property
    def round_trip(self) -> float:
        return (self.received - self.sent).total_seconds()


@frozen(slots=True)
class Offset:
    seconds: float  # this replica's clock minus the database's: positive, this one is ahead
    uncertainty: float  # half the round trip of the sample it comes from: the true offset
    # lies within seconds ± uncertainty
    at: datetime  # when it was measured, by this replica's clock

    def to_json(self) -> dict[str, object]:
        return {"offset_seconds": round(self.seconds, 6),
                "uncertainty_seconds": round(self.uncertainty, 6),
                "measured_at": self.at.isoformat()}


def estimate(samples: Iterable[Sample]) -> Offset | None:
    """The offset the sample with the shortest round trip gives; None without a usable one."""
    best: Sample | None = None
    for sample in samples:
        if sample.round_trip < 0:
            continue  # the clock stepped back during the round trip
        if best is None or sample.round_trip < best.round_trip:
            best = sample
    if best is None:
        return None
    half = best.round_trip / 2
    midpoint = best.sent + (best.received - best.sent) / 2
    return Offset(seconds=(midpoint - best.server).total_seconds(), uncertainty=half,
                  at=best.received)


class Change(Enum):
    SKEWED = "skewed"  # the offset passed THRESHOLD
    RECOVERED = "recovered"  # back under RECOVERED


class SkewWatch:
    """Whether this replica's clock is off, estimate after estimate: a Change when that
    flips, None otherwise."""

    def __init__(self, threshold: float = THRESHOLD, recovered: float = RECOVERED) -> None:
        self.threshold = threshold
        self.recovered = recovered
        self.skewed = False

    def observe(self, offset: Offset) -> Change | None:
        size = abs(offset.seconds)
        if not self.skewed and size - offset.uncertainty > self.threshold:
            self.skewed = True
            return Change.SKEWED
        if self.skewed and size < self.recovered:
            self.skewed = False
            return Change.RECOVERED
        return None
