"""Shifts as they will be (run-time overrides included), and as an iCalendar file.

`shifts` walks a layer's answers with `next_change`, so a shift is exactly a span with one
person on call; `ics` writes them with the icalendar library (escaping, line folding and
the rest of RFC 5545 are its business, not ours).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from receiver.core.frozen import frozen
from receiver.oncall.schedules import Schedule, applying, next_change, on_call

PRODID = "-//ackd//on-call schedules//EN"
# A calendar's events at most: an hourly rotation over 52 weeks is 8,736 shifts, about 6 s of
# work (next_change per shift, then icalendar's writing, 0.45 ms an event); past the limit the
# calendar ends early, at the last shift that fits.
MAX_EVENTS = 2000


@frozen
class Shift:
    schedule: str
    layer: str
    user: str
    start: datetime
    end: datetime
    # What put the person there: None for the rotation, else the deciding override's words.
    origin: str | None = None


def shifts(
    schedule: Schedule, since: datetime, until: datetime, limit: int = MAX_EVENTS
) -> list[Shift]:
    """Every shift of every layer that overlaps since..until, cut to it, in time order: the
    first `limit` of them."""
    found: list[Shift] = []
    for layer in schedule.layers:
        at, count = since, 0
        while at < until and count < limit:
            change = next_change(schedule, layer.name, at)
            end = until if change is None or change > until else change
            user = on_call(schedule, layer.name, at)
            if user is not None:
                found.append(Shift(schedule.name, layer.name, user, at, end,
                                   origin(schedule, layer.name, at)))
                count += 1
            at = end
    return sorted(found, key=lambda s: (s.start, s.layer))[:limit]


def calendar(
    title: str, schedules: Iterable[Schedule], since: datetime, until: datetime, now: datetime,
    user: str | None = None,
) -> bytes:
    """The .ics of the schedules' shifts (one person's, when `user` is given)."""
    found = [shift for schedule in schedules for shift in shifts(schedule, since, until)
             if user is None or shift.user == user]
    return ics(title, sorted(found, key=lambda s: (s.start, s.layer))[:MAX_EVENTS], now)


def origin(schedule: Schedule, layer: str, at: datetime) -> str | None:
    """Why the person on call at `at` is: None (the rotation), or the override that decides."""
    deciding = applying(schedule, layer, at)
    if not deciding:
        return None
    last = deciding[-1]
    return last.origin or "config override"


def ics(name: str, found: Iterable[Shift], now: datetime) -> bytes:
    """An iCalendar file of the shifts; each event's UID is stable for the same shift."""
    # Imported at the first calendar asked for, not at start: icalendar (and dateutil under
    # it) took about 50 ms of every start, and no webhook or page needs it.
    import icalendar

    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", name)
    for shift in found:
        event = icalendar.Event()
        start = int(shift.start.timestamp())
        event.add("uid", f"{shift.schedule}.{shift.layer}.{shift.user}.{start}@ackd")
        event.add("dtstamp", now)
        event.add("dtstart", shift.start)
        event.add("dtend", shift.end)
        event.add("summary", f"On call: {shift.user} ({shift.schedule} {shift.layer})")
        if shift.origin is not None:
            event.add("description", f"{shift.user} by {shift.origin}")
        calendar.add_component(event)
    written: bytes = calendar.to_ical()
    return written
