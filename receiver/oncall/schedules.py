"""On-call schedules and working hours: who is on call, and when a team is at work.

A schedule has layers; a layer has rotations laid over one another (the last active one
wins, which is how follow-the-sun is written); overrides replace the answer for a while.
Everything is pure and DST-correct: daily and weekly handoffs and windows are local
wall-clock times in the rotation's (or the schedule's) IANA zone, so a rotation that hands
off Monday 09:00 in Amsterdam does so at 09:00 in winter and in summer, whatever the UTC
instant. Shifts counted in hours are real elapsed time from the start (see Rotation.elapsed).

One rule, `instant`, turns every naive local time of a schedule into an instant (rotation
starts and handoffs, restriction and working-hours windows, and the config's overrides), so
an override and a handoff written at the same local time happen at the same instant. The rule
makes a wall-clock time name exactly one instant, so answers never flip back: an ambiguous
local time (the repeated hour when clocks go back) names its first occurrence, and a local
time that does not exist (skipped when clocks go forward) names the first instant after the
gap. Instants asked about are compared in UTC, so the zone they carry never changes an answer.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import partial
from typing import Protocol
from zoneinfo import ZoneInfo

from receiver.core.frozen import frozen

__all__ = [
    "Layer",
    "Override",
    "Restriction",
    "Rotation",
    "Schedule",
    "ShiftUnit",
    "WorkingHours",
    "applying",
    "first_gap",
    "instant",
    "next_change",
    "next_start",
    "on_call",
    "OnCallMemo",
    "parse_weekdays",
    "within",
]

_DAY = timedelta(days=1)
_WEEK = timedelta(weeks=1)
_YEAR = timedelta(days=366)
_FOREVER = datetime.max.replace(tzinfo=UTC)
_TICK = timedelta(microseconds=1)
_WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAYS_FORM = (
    "three-letter day names (mon..sun), ranges like mon-fri or fri-mon, joined by commas"
)


class ShiftUnit(StrEnum):
    SECONDS = "s"  # for trying handoffs out and for tests: a shift of seconds
    MINUTES = "m"
    HOURS = "h"
    DAYS = "d"
    WEEKS = "w"


_UNIT_LENGTH = {
    ShiftUnit.SECONDS: timedelta(seconds=1),
    ShiftUnit.MINUTES: timedelta(minutes=1),
    ShiftUnit.HOURS: timedelta(hours=1),
    ShiftUnit.DAYS: timedelta(days=1),
    ShiftUnit.WEEKS: timedelta(weeks=1),
}


@frozen
class Restriction:
    """A weekly local window; `end <= start` runs past midnight, `start == end` is 24h."""

    weekdays: frozenset[int]
    start: time
    end: time

    def __post_init__(self) -> None:
        _check_window(self.weekdays, self.start, self.end)


@frozen
class Rotation:
    """Users taking turns; `start` and the restrictions are naive local wall-clock times in
    `tz`, the rotation's own zone, or the schedule's when it has none."""

    users: tuple[str, ...]
    shift_length: int
    shift_unit: ShiftUnit
    start: datetime
    restrictions: tuple[Restriction, ...] = ()
    name: str = ""
    tz: ZoneInfo | None = None

    def __post_init__(self) -> None:
        if not self.users:
            raise ValueError("a rotation needs at least one user")
        if self.shift_length < 1:
            raise ValueError(f"a shift must be at least 1{self.shift_unit}")
        if self.start.tzinfo is not None:
            raise ValueError("a rotation starts at a naive local time in the schedule's zone")

    @property
    def shift(self) -> timedelta:
        return self.shift_length * _UNIT_LENGTH[self.shift_unit]

    @property
    def elapsed(self) -> bool:
        """Shifts in hours count real time from the start: on the wall clock, a 1-hour shift
        would last no time on the night clocks skip an hour and two hours on the night they
        repeat one. Days and weeks keep the start's wall-clock time instead, so a 1d or 1w
        rotation hands off at 09:00 in summer and winter alike."""
        return self.shift_unit in (ShiftUnit.SECONDS, ShiftUnit.MINUTES, ShiftUnit.HOURS)


@frozen
class Layer:
    name: str
    rotations: tuple[Rotation, ...]


@frozen
class Override:
    """`user` is on call for start <= at < end, for one layer or all, replacing one user or any.

    A config override's `replaces` names the person the rotations put on call. A run-time
    one (`origin` set: made through the API, laid over the config's) names whoever is on call
    by then, config overrides included, since a person giving away a shift gives away the
    shift they see."""

    start: datetime
    end: datetime
    user: str
    layer: str | None = None
    replaces: str | None = None
    origin: str | None = None  # a run-time override: who made it, where (for people to read)

    def __post_init__(self) -> None:
        # end <= start is left to the config checks, which report it with a line number;
        # such an override simply never applies. Kept in UTC: two datetimes that share a
        # tzinfo compare by wall clock, ignoring fold, which misplaces the repeated hour.
        object.__setattr__(self, "start", _utc(self.start, "an override's start"))
        object.__setattr__(self, "end", _utc(self.end, "an override's end"))


@frozen
class Schedule:
    name: str
    tz: ZoneInfo
    layers: tuple[Layer, ...]
    overrides: tuple[Override, ...] = ()
    handoff_notices: bool = False  # tell each incoming person (oncall/handoffs.py)


@frozen
class WorkingHours:
    """A team's working week: same window rules as Restriction, in its own zone."""

    tz: ZoneInfo
    weekdays: frozenset[int]
    start: time
    end: time

    def __post_init__(self) -> None:
        _check_window(self.weekdays, self.start, self.end)


# -- who is on call -----------------------------------------------------------------------


def on_call(schedule: Schedule, layer: str, at: datetime) -> str | None:
    """Who is on call in `layer` at the aware instant `at`; None when nobody is."""
    deciding = applying(schedule, layer, at)
    if deciding:
        return deciding[-1].user
    return _layer_user(_find_layer(schedule, layer), schedule.tz, _utc(at, "`at`"))


def applying(schedule: Schedule, layer: str, at: datetime) -> list[Override]:
    """The overrides that apply in `layer` at `at`, in order: the last one decides who is on
    call, and any before it were overruled (a run-time override over the config's)."""
    at = _utc(at, "`at`")
    computed = _layer_user(_find_layer(schedule, layer), schedule.tz, at)
    chosen, found = computed, []
    for override in schedule.overrides:
        if _override_applies(override, layer, chosen if override.origin else computed, at):
            chosen = override.user
            found.append(override)
    return found


def next_change(
    schedule: Schedule, layer: str, at: datetime, horizon: timedelta | None = None
) -> datetime | None:
    """The first instant after `at` when `on_call` gives another answer, in UTC.

    Candidates are the instants where an answer can change (rotation starts and handoffs,
    restriction edges, override edges), walked in order as far as needed; edges that leave
    the answer as it was, like a one-person rotation handing off to itself, are skipped.
    None if the answer never changes again (or not within `horizon`, when one is given).
    """
    at = _utc(at, "`at`")
    found = _find_layer(schedule, layer)
    current = on_call(schedule, layer, at)
    try:
        until = at + horizon if horizon is not None else _settled(schedule, found, at)
    except OverflowError:
        until = _FOREVER
    try:
        for edge in _edges(schedule, found, at):
            if edge > until:
                return None
            if on_call(schedule, layer, edge) != current:
                return edge
    except OverflowError:
        pass  # the calendar ends (year 9999) before the answer changes
    return None


def _edges(schedule: Schedule, layer: Layer, at: datetime) -> Iterator[datetime]:
    """Every instant after `at` where the layer's answer may change, in order, without end."""
    overrides = [o for o in schedule.overrides if o.layer in (None, layer.name)]
    streams: list[Iterable[datetime]] = [sorted(e for o in overrides for e in (o.start, o.end))]
    covered = _blankets(overrides)
    for rotation in layer.rotations:
        tz = rotation.tz or schedule.tz
        streams.append(_outside(covered, at, partial(_handoffs, rotation, tz)))
        streams += (
            _outside(covered, at, partial(_window_edges_after, r, tz))
            for r in rotation.restrictions
        )
    last = at
    for edge in heapq.merge(*streams):
        if edge > last:
            last = edge
            yield edge


def _blankets(overrides: list[Override]) -> list[tuple[datetime, datetime]]:
    """Spans where an override decides the answer whoever the rotations put on call: no
    handoff or restriction edge inside one can change it. An override that replaces one
    person depends on the rotations, so it keeps the spans it overlaps out."""
    choosy = [o for o in overrides if o.replaces is not None]
    return [
        (o.start, o.end)
        for o in overrides
        if o.replaces is None and not any(c.start < o.end and o.start < c.end for c in choosy)
    ]


def _outside(
    covered: list[tuple[datetime, datetime]],
    at: datetime,
    stream: Callable[[datetime], Iterator[datetime]],
) -> Iterator[datetime]:
    """`stream(at)`'s edges, jumping over the covered spans: a year's override on an hourly
    rotation is one step, not 8,760 (and one to 9999 is not endless)."""
    edges, since = stream(at), at
    while (edge := next(edges, None)) is not None:
        if edge <= since:
            continue  # a window's stream starts the day before: not past the jump yet
        ends = [end for start, end in covered if start < edge < end]
        if not ends:
            yield edge
        else:
            since = max(ends) - _TICK
            edges = stream(since)


def _settled(schedule: Schedule, layer: Layer, at: datetime) -> datetime:
    """An instant by which the answer has changed, if it ever changes again after `at`.

    Once every rotation has started and every override has ended, the layer repeats itself
    with the period of its cycles (each rotation's users times its shift, and a week for
    restrictions); an answer that holds through one whole period holds for good. A year more
    lets rotations counted in elapsed hours drift through both DST changes against those on
    the wall clock, the only way a combination can first appear later."""
    seconds = [int(len(r.users) * r.shift.total_seconds()) for r in layer.rotations]
    if any(r.restrictions for r in layer.rotations):
        seconds.append(int(_WEEK.total_seconds()))
    latest = max(
        [at]
        + [_handoff(r, 0, r.tz or schedule.tz) for r in layer.rotations]
        + [o.end for o in schedule.overrides if o.layer in (None, layer.name)]
    )
    return latest + timedelta(seconds=math.lcm(*seconds)) + _YEAR


# How many handoffs `first_gap` walks at most: four weeks of 15-minute shifts is 2,688; a
# rotation of seconds (a test's, a typo's) would otherwise keep a thread busy for minutes.
GAP_WALK = 10_000


def first_gap(
    schedule: Schedule, layer: str, since: datetime, until: datetime, walk: int = GAP_WALK
) -> tuple[datetime, datetime | None] | None:
    """The first span from `since` on, starting before `until`, when nobody is on call in
    `layer`: (start, end) in UTC, end None when nobody ever is again; None if there is none
    within `walk` handoffs of `since`. Restrictions that leave a hole, a rotation not started
    yet, and rotations in different zones drifting apart across DST changes all show here."""
    at, until = _utc(since, "`since`"), _utc(until, "`until`")
    for _ in range(walk):
        if at >= until:
            return None
        change = next_change(schedule, layer, at)
        if on_call(schedule, layer, at) is None:
            return at, change
        if change is None:
            return None
        at = change
    return None


@frozen(slots=True)
class _Span:
    schedule: Schedule
    since: datetime
    until: datetime
    user: str | None


class OnCallMemo:
    """`on_call`, answered from memory while the answer cannot change.

    A schedule's answer for a layer holds from the instant it was computed until its
    `next_change`; every new incident asks it, and working it out (zone conversions, handoff
    arithmetic) costs more than the rest of the first page. One span is kept per schedule name
    and layer, for the schedule object it was computed on: a reloaded config brings new
    objects, so nothing outlives the config it came from."""

    def __init__(self) -> None:
        self._spans: dict[tuple[str, str], _Span] = {}

    def on_call(self, schedule: Schedule, layer: str, at: datetime) -> str | None:
        span = self._spans.get((schedule.name, layer))
        if span is not None and span.schedule is schedule and span.since <= at < span.until:
            return span.user
        at = _utc(at, "`at`")
        user = on_call(schedule, layer, at)
        until = next_change(schedule, layer, at) or _FOREVER
        self._spans[(schedule.name, layer)] = _Span(schedule, at, until, user)
        return user


def _find_layer(schedule: Schedule, name: str) -> Layer:
    for layer in schedule.layers:
        if layer.name == name:
            return layer
    known = ", ".join(layer.name for layer in schedule.layers)
    raise ValueError(f"schedule {schedule.name!r} has no layer {name!r} (it has: {known})")


def _layer_user(layer: Layer, tz: ZoneInfo, at: datetime) -> str | None:
    # Later rotations are laid over earlier ones, as PagerDuty's layers are.
    for rotation in reversed(layer.rotations):
        user = _rotation_user(rotation, rotation.tz or tz, at)
        if user is not None:
            return user
    return None


def _rotation_user(rotation: Rotation, tz: ZoneInfo, at: datetime) -> str | None:
    index = _shift_index(rotation, tz, at)
    if index is None:
        return None
    if rotation.restrictions and not any(_inside(r, tz, at) for r in rotation.restrictions):
        return None
    return rotation.users[index % len(rotation.users)]


def _override_applies(override: Override, layer: str, computed: str | None, at: datetime) -> bool:
    return (
        override.start <= at < override.end
        and override.layer in (None, layer)
        and override.replaces in (None, computed)
    )


def _shift_index(rotation: Rotation, tz: ZoneInfo, at: datetime) -> int | None:
    """The number of handoffs since the rotation started, None before it starts."""
    first = _handoff(rotation, 0, tz)
    if at < first:
        return None
    if rotation.elapsed:
        return (at - first) // rotation.shift
    index = max(0, (_local(at, tz) - rotation.start) // rotation.shift)
    # Local arithmetic never counts a handoff too many (a handoff's instant is the first
    # moment the wall clock reaches it), but in the repeated hour the clock reads earlier
    # than a handoff that already happened at the first occurrence: count it.
    while _handoff(rotation, index + 1, tz) <= at:
        index += 1
    return index


def _handoff(rotation: Rotation, index: int, tz: ZoneInfo) -> datetime:
    if rotation.elapsed:
        return instant(rotation.start, tz) + index * rotation.shift
    return instant(rotation.start + index * rotation.shift, tz)


def _handoffs(rotation: Rotation, tz: ZoneInfo, at: datetime) -> Iterator[datetime]:
    """Handoff instants after `at`, the rotation's start included, without end (after the
    start, only where the person changes)."""
    current = _shift_index(rotation, tz, at)
    if current is None:
        yield _handoff(rotation, 0, tz)
    if len(rotation.users) == 1:
        return
    index = 1 if current is None else current + 1
    while True:
        yield _handoff(rotation, index, tz)
        index += 1


def _window_edges_after(window: _Window, tz: ZoneInfo, at: datetime) -> Iterator[datetime]:
    # From the day before: an opening that began yesterday may close after `at`.
    return _window_edges(window, tz, _local(at, tz).date() - _DAY)


def _window_edges(window: _Window, tz: ZoneInfo, first: date) -> Iterator[datetime]:
    """Each opening's edges from the day `first` on, in order (a window lasts a day at most,
    so one closes before or as the next opens)."""
    day = first
    # A window of no weekdays never opens: no edges, rather than an endless search.
    while window.weekdays:
        for opens, closes in _occurrences(window, tz, day, day):
            yield opens
            yield closes
        day += _DAY


# -- working hours ------------------------------------------------------------------------


def within(hours: WorkingHours, at: datetime) -> bool:
    """Whether the aware instant `at` falls in the team's working hours."""
    return _inside(hours, hours.tz, _utc(at, "`at`"))


def next_start(hours: WorkingHours, at: datetime) -> datetime:
    """`at` (in UTC) when within working hours, else the next instant they begin."""
    if not hours.weekdays:
        raise ValueError("working hours with no weekdays never start")
    if within(hours, at):
        return at.astimezone(UTC)
    today = _local(at, hours.tz).date()
    # A week and a day ahead always holds one of the weekdays' openings.
    opening = (opens for opens, _ in _occurrences(hours, hours.tz, today, today + 8 * _DAY))
    return min(opens for opens in opening if opens > at)


# -- weekday/time windows, shared by restrictions and working hours -----------------------


class _Window(Protocol):
    @property
    def weekdays(self) -> frozenset[int]: ...

    @property
    def start(self) -> time: ...

    @property
    def end(self) -> time: ...


def _inside(window: _Window, tz: ZoneInfo, at: datetime) -> bool:
    """Whether `at` falls in one of the window's openings in `tz`."""
    today = _local(at, tz).date()
    # A window lasts at most a day, so yesterday's opening may still be running.
    return any(
        opens <= at < closes
        for opens, closes in _occurrences(window, tz, today - _DAY, today + _DAY)
    )


def _occurrences(
    window: _Window, tz: ZoneInfo, first: date, last: date
) -> Iterator[tuple[datetime, datetime]]:
    """(opens, closes) as UTC instants for each opening that starts on a day in first..last."""
    length = _window_length(window.start, window.end)
    day = first
    while day <= last:
        if day.weekday() in window.weekdays:
            opens = datetime.combine(day, window.start)
            # Wall-clock length: 22:00-06:00 ends at 06:00 even on a 7- or 9-hour night.
            yield instant(opens, tz), instant(opens + length, tz)
        day += _DAY


def _window_length(start: time, end: time) -> timedelta:
    length = datetime.combine(date.min, end) - datetime.combine(date.min, start)
    return length if length > timedelta(0) else length + _DAY


def _check_window(weekdays: Iterable[int], start: time, end: time) -> None:
    bad = sorted(d for d in weekdays if d not in range(7))
    if bad:
        raise ValueError(f"weekdays must be 0 (Monday) to 6 (Sunday), got {bad}")
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError("window times are local wall-clock times: give them without a zone")


# -- weekdays -----------------------------------------------------------------------------


def parse_weekdays(text: str) -> frozenset[int]:
    """Parse "mon-fri", "sat,sun", "fri-mon" (wraps), "mon"; case-insensitive."""
    days: set[int] = set()
    for part in text.split(","):
        days.update(_weekday_part(part.strip().lower(), text))
    return frozenset(days)


def _weekday_part(part: str, text: str) -> Iterator[int]:
    first, dash, last = part.partition("-")
    if first not in _WEEKDAY_NAMES or (dash and last not in _WEEKDAY_NAMES):
        raise ValueError(f"bad weekday {part!r} in {text!r}: use {_WEEKDAYS_FORM}")
    start = _WEEKDAY_NAMES.index(first)
    count = (_WEEKDAY_NAMES.index(last) - start) % 7 + 1 if dash else 1
    return ((start + i) % 7 for i in range(count))


# -- local wall-clock time and instants ---------------------------------------------------


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value}")


def _utc(value: datetime, what: str) -> datetime:
    _require_aware(value, what)
    return value.astimezone(UTC)


def _local(at: datetime, tz: ZoneInfo) -> datetime:
    return at.astimezone(tz).replace(tzinfo=None)


def instant(local: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant the naive local time `local` names in `tz`: the one rule for every
    wall-clock time of a schedule. In the repeated hour it is the first occurrence; in the
    skipped hour, the first instant after the gap (the moment the clocks jump)."""
    if local.tzinfo is not None:
        raise ValueError(f"a local wall-clock time is naive, got {local}")
    first = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _local(first, tz) == local:
        return first
    return _gap_end(local, tz)


def _gap_end(local: datetime, tz: ZoneInfo) -> datetime:
    """The first instant whose wall-clock time is past `local`, which the clocks skipped."""
    # Read with the offsets after and before the jump, `local` brackets the transition.
    low = int(local.replace(tzinfo=tz, fold=1).timestamp())
    high = int(local.replace(tzinfo=tz, fold=0).timestamp()) + 1
    while low < high:
        middle = (low + high) // 2
        if _local(datetime.fromtimestamp(middle, UTC), tz) >= local:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(low, UTC)
