"""Schedules checked against an independent reference at the 2026 DST changes of Amsterdam,
New York, Sydney and Lord Howe (whose clocks move by 30 minutes).

The reference below knows nothing of zoneinfo or of receiver.oncall.schedules: each zone is its
standard offset and its two 2026 changes as UTC instants with the offset after them, written
from the published rules, and local times are turned into instants by plain arithmetic. Its
rule is the one the schedule documents: a repeated local time names its first occurrence, a
skipped one the instant the clocks jump.
"""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from receiver.config import build as config_module
from receiver.oncall.schedules import (
    Layer,
    OnCallMemo,
    Override,
    Restriction,
    Rotation,
    Schedule,
    ShiftUnit,
    instant,
    next_change,
    on_call,
)
from tests.test_cli import ackd

H = timedelta(hours=1)
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


@dataclass(frozen=True)
class RefZone:
    name: str
    new_year: timedelta  # the offset on 2026-01-01
    changes: tuple[tuple[datetime, timedelta], ...]  # (UTC instant, offset from then on)
    spring: datetime  # a naive local time the spring change skips
    fall: datetime  # a naive local time the autumn change repeats

    def offset(self, at: datetime) -> timedelta:
        current = self.new_year
        for when, after in self.changes:
            if at >= when:
                current = after
        return current

    def to_utc(self, local: datetime) -> datetime:
        offsets = {self.new_year, *(after for _, after in self.changes)}
        fits = sorted(
            (local - o).replace(tzinfo=UTC)
            for o in offsets
            if self.offset((local - o).replace(tzinfo=UTC)) == o
        )
        if fits:
            return fits[0]
        for when, after in self.changes:
            before = self.offset(when - SECOND)
            if (when + before).replace(tzinfo=None) <= local < (when + after).replace(tzinfo=None):
                return when
        raise AssertionError(f"{local} is outside the reference's year")


ZONES = [
    RefZone(
        "Europe/Amsterdam", H,
        ((utc(2026, 3, 29, 1), 2 * H), (utc(2026, 10, 25, 1), H)),
        spring=datetime(2026, 3, 29, 2, 30), fall=datetime(2026, 10, 25, 2, 30),
    ),
    RefZone(
        "America/New_York", -5 * H,
        ((utc(2026, 3, 8, 7), -4 * H), (utc(2026, 11, 1, 6), -5 * H)),
        spring=datetime(2026, 3, 8, 2, 30), fall=datetime(2026, 11, 1, 1, 30),
    ),
    # Southern hemisphere: the year starts in summer time, which ends in April.
    RefZone(
        "Australia/Sydney", 11 * H,
        ((utc(2026, 4, 4, 16), 10 * H), (utc(2026, 10, 3, 16), 11 * H)),
        spring=datetime(2026, 10, 4, 2, 30), fall=datetime(2026, 4, 5, 2, 30),
    ),
    RefZone(
        "Australia/Lord_Howe", 11 * H,
        (
            (utc(2026, 4, 4, 15), timedelta(hours=10, minutes=30)),
            (utc(2026, 10, 3, 15, 30), 11 * H),
        ),
        spring=datetime(2026, 10, 4, 2, 15), fall=datetime(2026, 4, 5, 1, 45),
    ),
]
BY_NAME = {z.name: z for z in ZONES}
NAMES = [z.name for z in ZONES]


def test_the_reference_agrees_with_its_own_dates() -> None:
    """The reference's changes are where the zone's clocks jump: a sanity check on the table
    (30 minutes at Lord Howe, an hour elsewhere)."""
    lord_howe = BY_NAME["Australia/Lord_Howe"]
    assert lord_howe.to_utc(datetime(2026, 10, 4, 2, 0)) == utc(2026, 10, 3, 15, 30)
    assert lord_howe.to_utc(datetime(2026, 10, 4, 2, 30)) == utc(2026, 10, 3, 15, 30)
    assert lord_howe.to_utc(datetime(2026, 4, 5, 1, 45)) == utc(2026, 4, 4, 14, 45)


# -- one rule for every naive local time ---------------------------------------------------


def around(zone: RefZone) -> list[datetime]:
    """Local times every 5 minutes from 4 hours before to 4 hours after both changes."""
    days = [zone.spring.replace(hour=0, minute=0), zone.fall.replace(hour=0, minute=0)]
    return [day + timedelta(minutes=5 * i) for day in days for i in range(12 * 6)]


@pytest.mark.parametrize("name", NAMES)
def test_a_local_time_names_the_reference_instant(name: str) -> None:
    zone = BY_NAME[name]
    for local in around(zone):
        assert instant(local, ZoneInfo(name)) == zone.to_utc(local), local


def schedule_yaml(name: str, start: datetime, override_start: datetime, **extra: str) -> str:
    """A config whose schedule `s` hands off daily at `start`'s time of day and has cy
    covering from `override_start` for a day, both naive in `name`."""
    rotation_zone = extra.get("rotation_zone", "")
    shift = extra.get("shift", "1d")
    return textwrap.dedent(f"""\
        users:
          - {{name: ana, contacts: [{{url: "json://127.0.0.1:9099/ana"}}]}}
          - {{name: bo, contacts: [{{url: "json://127.0.0.1:9099/bo"}}]}}
          - {{name: cy, contacts: [{{url: "json://127.0.0.1:9099/cy"}}]}}
        schedules:
          - name: s
            timezone: {name}
            layers:
              - name: primary
                rotations:
                  - users: [ana, bo]
                    shift: {shift}
                    start: {start.isoformat()}
                    {rotation_zone}
            overrides:
              - user: cy
                start: {override_start.isoformat()}
                end: {(override_start + timedelta(days=1)).isoformat()}
        teams:
          - {{name: ops, schedule: s}}
        policies:
          - name: p
            steps:
              - notify: [{{oncall: primary}}]
        route: {{team: ops, policy: p, severity: SEV2}}
        """)


def load(text: str, tmp_path: Path) -> Schedule:
    path = tmp_path / "ackd.yaml"
    path.write_text(text)
    return config_module.load(path).schedules["s"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("change", ["spring", "fall"])
def test_an_override_at_a_handoff_time_starts_at_the_handoff(
    name: str, change: str, tmp_path: Path
) -> None:
    """A daily handoff and an override both written at a local time the clocks skip or
    repeat start at one instant: no stub of the rotated person's shift between them."""
    zone = BY_NAME[name]
    local = getattr(zone, change)
    schedule = load(schedule_yaml(name, local - timedelta(days=2), local), tmp_path)
    begins, ends = zone.to_utc(local), zone.to_utc(local + timedelta(days=1))
    assert on_call(schedule, "primary", begins - SECOND) == "bo"
    assert next_change(schedule, "primary", begins - SECOND) == begins
    assert on_call(schedule, "primary", begins) == "cy"
    assert next_change(schedule, "primary", begins) == ends
    assert on_call(schedule, "primary", ends) == "bo"


def at_every_offset(at: datetime, name: str) -> list[datetime]:
    """One instant as it reads in UTC, in the zone itself (fold set where the clock repeats),
    and at two fixed offsets."""
    return [
        at,
        at.astimezone(ZoneInfo(name)),
        at.astimezone(timezone(timedelta(hours=5, minutes=45))),
        at.astimezone(timezone(-9 * H)),
    ]


@pytest.mark.parametrize("name", NAMES)
def test_the_answer_does_not_depend_on_the_zone_the_instant_carries(name: str) -> None:
    """An override written with the zone's own tzinfo in the repeated hour (fold=1) is
    compared by instant, not by the wall clock two datetimes sharing a tzinfo compare by."""
    zone, tz = BY_NAME[name], ZoneInfo(name)
    second = zone.to_utc(zone.fall) + timedelta(hours=1 if name != "Australia/Lord_Howe" else 0.5)
    override = Override(second.astimezone(tz), second + 2 * H, user="cy")
    assert second.astimezone(tz).fold == 1
    # Handoffs at 09:00: bo's day runs through the whole repeated hour.
    rotation = Rotation(("ana", "bo"), 1, ShiftUnit.DAYS, zone.fall.replace(hour=9) - 2 * DAY)
    schedule = Schedule("s", tz, (Layer("primary", (rotation,)),), (override,))
    for minutes in range(-120, 240, 5):
        at = zone.to_utc(zone.fall) + timedelta(minutes=minutes)
        expected = "cy" if second <= at < second + 2 * H else "bo"
        for shown in at_every_offset(at, name):
            assert on_call(schedule, "primary", shown) == expected, (shown, expected)


# -- the next change, however far ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("length", "unit", "days"),
    [(6, ShiftUnit.WEEKS, 42), (90, ShiftUnit.DAYS, 90), (1, ShiftUnit.WEEKS, 7)],
)
def test_the_next_handoff_is_found_however_far(
    name: str, length: int, unit: ShiftUnit, days: int
) -> None:
    """A 6-week or 90-day rotation across DST changes: each handoff is the start's wall-clock
    time `days` later, as the reference places it; before the start, the start is next."""
    zone, tz = BY_NAME[name], ZoneInfo(name)
    start = datetime(2026, 1, 5, 9, 0)
    schedule = Schedule("s", tz, (Layer("l", (Rotation(("a", "b"), length, unit, start),)),))
    assert next_change(schedule, "l", utc(2025, 6, 1)) == zone.to_utc(start)
    assert on_call(schedule, "l", utc(2025, 6, 1)) is None
    for k in range(1, 300 // days + 1):
        handoff = zone.to_utc(start + k * timedelta(days=days))
        previous = zone.to_utc(start + (k - 1) * timedelta(days=days))
        assert next_change(schedule, "l", previous) == handoff, k
        assert on_call(schedule, "l", handoff - SECOND) == "ab"[(k - 1) % 2]
        assert on_call(schedule, "l", handoff) == "ab"[k % 2]


def test_an_answer_that_never_changes_has_no_next_change() -> None:
    schedule = Schedule(
        "s", ZoneInfo("Europe/Amsterdam"),
        (Layer("l", (Rotation(("a",), 6, ShiftUnit.WEEKS, datetime(2026, 1, 5, 9)),)),),
    )
    assert next_change(schedule, "l", utc(2026, 2, 1)) is None
    memo = OnCallMemo()
    assert memo.on_call(schedule, "l", utc(2026, 2, 1)) == "a"
    assert memo.on_call(schedule, "l", utc(2030, 2, 1)) == "a"


def test_the_memo_keeps_a_six_week_answer_until_the_handoff() -> None:
    """The memo remembers up to the next change; with the 35-day look-ahead it gave up and
    asked again, and must still switch exactly at the handoff 42 days in."""
    zone = BY_NAME["Europe/Amsterdam"]
    start = datetime(2026, 1, 5, 9)
    schedule = Schedule(
        "s", ZoneInfo(zone.name), (Layer("l", (Rotation(("a", "b"), 6, ShiftUnit.WEEKS, start),)),)
    )
    memo = OnCallMemo()
    handoff = zone.to_utc(start + timedelta(weeks=6))
    assert memo.on_call(schedule, "l", zone.to_utc(start)) == "a"
    assert memo.on_call(schedule, "l", handoff - SECOND) == "a"
    assert memo.on_call(schedule, "l", handoff) == "b"


def test_oncall_cli_names_a_handoff_six_weeks_ahead_and_the_start_before_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ackd.yaml"
    text = schedule_yaml("Europe/Amsterdam", datetime(2026, 1, 5, 9), datetime(2027, 1, 1))
    path.write_text(text.replace("shift: 1d", "shift: 6w"))
    result = ackd("oncall", "ops", "--config", str(path), "--at", "2026-01-06T12:00:00Z")
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout)["primary"] == ["ana", "until", "2026-02-16T09:00:00+01:00"]
    result = ackd("oncall", "ops", "--config", str(path), "--at", "2025-11-01T12:00:00Z")
    assert lines(result.stdout)["primary"] == ["nobody", "until", "2026-01-05T09:00:00+01:00"]


def lines(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}


# -- a rotation in its own zone -----------------------------------------------------------


def follow_the_sun_yaml(schedule_zone: str, rotation_zone: str) -> str:
    """ana all week on the schedule's clock; bo 09:00-17:00 every day on `rotation_zone`'s."""
    return textwrap.dedent(f"""\
        users:
          - {{name: ana, contacts: [{{url: "json://127.0.0.1:9099/ana"}}]}}
          - {{name: bo, contacts: [{{url: "json://127.0.0.1:9099/bo"}}]}}
        schedules:
          - name: s
            timezone: {schedule_zone}
            layers:
              - name: primary
                rotations:
                  - users: [ana]
                    shift: 1w
                    start: 2026-01-05T09:00:00
                  - users: [bo]
                    shift: 1w
                    start: 2026-01-01T00:00:00
                    timezone: {rotation_zone}
                    restrictions:
                      - {{days: mon-sun, start: "09:00", end: "17:00"}}
        teams:
          - {{name: ops, schedule: s}}
        policies:
          - name: p
            steps:
              - notify: [{{oncall: primary}}]
        route: {{team: ops, policy: p, severity: SEV2}}
        """)


PAIRS = [
    ("Europe/Amsterdam", "Australia/Sydney"),
    ("Europe/Amsterdam", "Australia/Lord_Howe"),
    ("America/New_York", "Europe/Amsterdam"),
    ("Australia/Sydney", "America/New_York"),
]


@pytest.mark.parametrize(("schedule_zone", "rotation_zone"), PAIRS)
def test_a_rotation_keeps_its_own_clock(
    schedule_zone: str, rotation_zone: str, tmp_path: Path
) -> None:
    """bo's window opens at 09:00 and closes at 17:00 on the rotation zone's clock on every
    day around both zones' DST changes, wherever the schedule's own zone has moved."""
    schedule = load(follow_the_sun_yaml(schedule_zone, rotation_zone), tmp_path)
    own, other = BY_NAME[rotation_zone], BY_NAME[schedule_zone]
    days = {
        (change - DAY * k).date()
        for change in (own.spring, own.fall, other.spring, other.fall)
        for k in range(-2, 3)
    }
    for day in sorted(days):
        opens = own.to_utc(datetime.combine(day, datetime.min.time()).replace(hour=9))
        closes = own.to_utc(datetime.combine(day, datetime.min.time()).replace(hour=17))
        assert on_call(schedule, "primary", opens - SECOND) == "ana", day
        assert on_call(schedule, "primary", opens) == "bo", day
        assert next_change(schedule, "primary", opens) == closes, day
        assert on_call(schedule, "primary", closes) == "ana", day


def test_a_rotation_zone_is_checked_with_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "ackd.yaml"
    path.write_text(follow_the_sun_yaml("Europe/Amsterdam", "Australia/Sydnee"))
    with pytest.raises(config_module.ConfigError) as caught:
        config_module.load(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:16: schedules[0].layers[0].rotations[1].timezone: "
        "unknown IANA time zone 'Australia/Sydnee'"
    ]


# -- shifts in hours are real time ----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("change", ["spring", "fall"])
@pytest.mark.parametrize("hours", [1, 3, 12])
def test_a_shift_in_hours_lasts_that_long_across_a_change(
    name: str, change: str, hours: int
) -> None:
    """From midnight local the day before a change, every handoff of a 1-, 3- or 12-hour
    rotation comes exactly that many real hours after the previous one: no zero-minute
    shift when the clocks skip an hour, no two-hour shift when they repeat one (30 minutes
    at Lord Howe)."""
    zone = BY_NAME[name]
    start = getattr(zone, change).replace(hour=0, minute=0) - DAY
    users = ("a", "b", "c")
    rotation = Rotation(users, hours, ShiftUnit.HOURS, start)
    schedule = Schedule("s", ZoneInfo(name), (Layer("l", (rotation,)),))
    first = zone.to_utc(start)
    at = first
    for k in range(1, 72 // hours + 1):
        handoff = first + k * hours * H
        assert next_change(schedule, "l", at) == handoff, k
        assert on_call(schedule, "l", handoff - SECOND) == users[(k - 1) % 3]
        assert on_call(schedule, "l", handoff) == users[k % 3]
        at = handoff


# -- overrides that outlast many handoffs ---------------------------------------------------


@pytest.mark.parametrize(
    "end", [utc(2028, 2, 1), utc(9999, 12, 31)], ids=["two-years", "to-the-calendar's-end"]
)
def test_a_long_override_ends_the_answer_at_its_end(end: datetime) -> None:
    """cy covers an hourly rotation for years: the next change is the override's end, found
    without walking every hourly handoff under it (to year 9999 that walk would not end)."""
    rotation = Rotation(("ana", "bo"), 1, ShiftUnit.HOURS, datetime(2026, 1, 1))
    cover = Override(utc(2026, 2, 1), end, user="cy")
    schedule = Schedule("s", ZoneInfo("Australia/Lord_Howe"), (Layer("l", (rotation,)),), (cover,))
    assert next_change(schedule, "l", utc(2026, 3, 1)) == end
    assert OnCallMemo().on_call(schedule, "l", utc(2026, 3, 1)) == "cy"


def test_an_override_for_one_person_inside_a_long_one_still_sees_the_handoffs() -> None:
    """cy covers for years, but dee replaces ana alone for a day inside it (listed later, so
    it wins where it applies): the rotation's handoffs matter again for that day."""
    start = datetime(2026, 1, 1)
    rotation = Rotation(("ana", "bo"), 1, ShiftUnit.HOURS, start)
    cover = Override(utc(2026, 2, 1), utc(2028, 2, 1), user="cy")
    only_ana = Override(utc(2026, 3, 1), utc(2026, 3, 2), user="dee", replaces="ana")
    schedule = Schedule(
        "s", ZoneInfo("America/New_York"), (Layer("l", (rotation,)),), (cover, only_ana)
    )
    # NYC is at -5 hours on 2026-01-01: the rotation started at 05:00Z, ana's hours are odd.
    first = BY_NAME["America/New_York"].to_utc(start)
    assert first == utc(2026, 1, 1, 5)
    assert next_change(schedule, "l", utc(2026, 2, 15)) == utc(2026, 3, 1, 1)
    assert on_call(schedule, "l", utc(2026, 3, 1, 1)) == "dee"
    assert next_change(schedule, "l", utc(2026, 3, 1, 1)) == utc(2026, 3, 1, 2)
    assert on_call(schedule, "l", utc(2026, 3, 1, 2)) == "cy"


def test_a_restriction_under_a_long_override_is_jumped_over_once() -> None:
    """The walk jumps a restriction's stream to an override's end and restarts it a day
    early (an opening may have begun the day before): those early edges, still under the
    override, must not send it back to the same jump for ever."""
    tz = ZoneInfo("Europe/Amsterdam")
    nights = Rotation(
        ("ana",), 1, ShiftUnit.DAYS, datetime(2026, 3, 28, 10),
        (Restriction(frozenset(range(7)), time(18, 30), time(0, 0)),),
    )
    cover = Override(utc(2026, 3, 29, 4, 30), utc(2026, 4, 2, 18, 30), user="cy")
    schedule = Schedule("s", tz, (Layer("l", (nights,)),), (cover,))
    # Amsterdam is at +2 from 2026-03-29 01:00Z: the nights open at 16:30Z, close at 22:00Z.
    assert next_change(schedule, "l", utc(2026, 3, 30)) == utc(2026, 4, 2, 18, 30)
    # The override ends inside an opening: ana is on until it closes at 22:00Z.
    assert on_call(schedule, "l", utc(2026, 4, 2, 18, 30)) == "ana"
    assert next_change(schedule, "l", utc(2026, 4, 2, 18, 30)) == utc(2026, 4, 2, 22)


def random_schedule(rnd: random.Random) -> Schedule:
    """1-3 rotations in hours or days, in any of the four zones, maybe restricted, under 0-3
    overrides (some replacing one person), all starting around Amsterdam's spring change."""
    zones = [ZoneInfo(name) for name in NAMES]
    rotations = []
    for _ in range(rnd.randint(1, 3)):
        restrictions = ()
        if rnd.random() < 0.5:
            days = frozenset(rnd.sample(range(7), rnd.randint(1, 7)))
            opens, closes = time(rnd.randint(0, 23), rnd.choice([0, 30])), time(rnd.randint(0, 23))
            restrictions = (Restriction(days, opens, closes),)
        rotations.append(Rotation(
            tuple(rnd.sample("abc", rnd.randint(1, 2))), rnd.randint(1, 5),
            rnd.choice([ShiftUnit.HOURS, ShiftUnit.DAYS]),
            datetime(2026, 3, 25) + timedelta(minutes=15 * rnd.randint(0, 480)),
            restrictions, tz=rnd.choice([*zones, None]),
        ))
    overrides = []
    for _ in range(rnd.randint(0, 3)):
        start = utc(2026, 3, 25) + timedelta(minutes=30 * rnd.randint(0, 480))
        overrides.append(Override(
            start, start + timedelta(hours=rnd.randint(1, 120)), rnd.choice("cde"),
            replaces=rnd.choice([None, None, "a", "b"]),
        ))
    return Schedule("s", rnd.choice(zones), (Layer("l", tuple(rotations)),), tuple(overrides))


@pytest.mark.parametrize("seed", range(8))
def test_next_change_agrees_with_on_call_between_changes(seed: int) -> None:
    """For random schedules, walked change by change over 16 days around the spring DST
    changes: `on_call` keeps its answer at every 17th minute up to the reported change and
    gives another one at it (a change missed, or one that changes nothing, fails)."""
    rnd = random.Random(seed)
    for _ in range(5):
        schedule = random_schedule(rnd)
        at, end = utc(2026, 3, 25), utc(2026, 4, 10)
        while at < end:
            change = next_change(schedule, "l", at)
            current = on_call(schedule, "l", at)
            probe = at
            while probe < min(change or end, end):
                assert on_call(schedule, "l", probe) == current, (schedule, at, probe)
                probe += timedelta(minutes=17)
            if change is None:
                break
            assert on_call(schedule, "l", change) != current, (schedule, change)
            at = change
