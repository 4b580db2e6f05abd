"""On-call rotations, layers, overrides and working hours, across DST changes.

Instants that a DST change moves are written in UTC, so the tables show the handoff moving
by an hour (08:00Z in winter, 07:00Z in summer for Amsterdam); other instants are local.
2026 DST changes: Europe/Amsterdam 03-29 and 10-25, America/New_York 03-08 and 11-01.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from receiver.oncall.schedules import (
    Layer,
    OnCallMemo,
    Override,
    Restriction,
    Rotation,
    Schedule,
    ShiftUnit,
    WorkingHours,
    next_change,
    next_start,
    on_call,
    parse_weekdays,
    within,
)

AMS = ZoneInfo("Europe/Amsterdam")
NYC = ZoneInfo("America/New_York")
EVERY_DAY = frozenset(range(7))
MON_FRI = frozenset(range(5))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def ams(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=AMS)


def rotation(
    users: tuple[str, ...],
    shift: str,
    start: datetime,
    restrictions: tuple[Restriction, ...] = (),
) -> Rotation:
    return Rotation(users, int(shift[:-1]), ShiftUnit(shift[-1]), start, restrictions)


def single(tz: ZoneInfo, *rotations: Rotation, overrides: tuple[Override, ...] = ()) -> Schedule:
    return Schedule("s", tz, (Layer("primary", rotations),), overrides)


MONDAY_0900 = datetime(2026, 1, 5, 9, 0)
WEEKLY_AMS = single(AMS, rotation(("ana", "bo"), "1w", MONDAY_0900))
WEEKLY_NYC = single(NYC, rotation(("ana", "bo"), "1w", MONDAY_0900))
DAILY_AMS = single(AMS, rotation(("ana", "bo"), "1d", MONDAY_0900))
HALF_DAY_AMS = single(AMS, rotation(("ana", "bo"), "12h", MONDAY_0900))
# Handoffs at 02:30 local: skipped on 2026-03-29, twice on the clock on 2026-10-25.
GAP_AMS = single(AMS, rotation(("ana", "bo"), "1d", datetime(2026, 3, 27, 2, 30)))
REPEAT_AMS = single(AMS, rotation(("ana", "bo"), "1d", datetime(2026, 10, 23, 2, 30)))

# config.example.yaml's platform/primary: dee all week, cy by European daytime.
PLATFORM = single(
    AMS,
    rotation(("dee",), "1w", MONDAY_0900),
    rotation(
        ("cy",), "1w", datetime(2026, 1, 5, 8, 0),
        (Restriction(EVERY_DAY, time(8), time(20)),),
    ),
)
# A night cover whose window starts on a weekday evening and ends the next morning.
NIGHTS = single(
    AMS,
    rotation(("dee",), "1w", MONDAY_0900),
    rotation(("eve",), "1w", MONDAY_0900, (Restriction(MON_FRI, time(22), time(6)),)),
)
NIGHTS_EVERY_DAY = single(
    AMS,
    rotation(("dee",), "1w", MONDAY_0900),
    rotation(("eve",), "1w", MONDAY_0900, (Restriction(EVERY_DAY, time(22), time(6)),)),
)


def payments(*overrides: Override) -> Schedule:
    """config.example.yaml's payments: primary [ana, bo], secondary [bo, ana], weekly."""
    return Schedule(
        "payments",
        AMS,
        (
            Layer("primary", (rotation(("ana", "bo"), "1w", MONDAY_0900),)),
            Layer("secondary", (rotation(("bo", "ana"), "1w", MONDAY_0900),)),
        ),
        overrides,
    )


# The week of Monday 2026-02-09 is shift 5: bo on primary, ana on secondary.
SATURDAY = (ams(2026, 2, 14, 0, 0), ams(2026, 2, 15, 0, 0))
COVER_SATURDAY = Override(*SATURDAY, user="cy")
COVER_BO_SATURDAY = Override(*SATURDAY, user="cy", replaces="bo")
COVER_SECONDARY_SATURDAY = Override(*SATURDAY, user="cy", layer="secondary")
DEE_AT_NOON = Override(ams(2026, 2, 14, 12, 0), ams(2026, 2, 14, 13, 0), user="dee")
DEE_FOR_CY_AT_NOON = Override(
    ams(2026, 2, 14, 12, 0), ams(2026, 2, 14, 13, 0), user="dee", replaces="cy"
)
NEW_YEAR = (ams(2026, 1, 1, 0, 0), ams(2026, 1, 2, 0, 0))

OFFICE = WorkingHours(AMS, MON_FRI, time(9), time(18))
NIGHT_DESK = WorkingHours(AMS, MON_FRI, time(22), time(6))
MONDAY_24H = WorkingHours(AMS, frozenset({0}), time(9), time(9))
SMALL_HOURS = WorkingHours(AMS, EVERY_DAY, time(2, 30), time(4))


@pytest.mark.parametrize(
    ("schedule", "at", "expected"),
    [
        # Amsterdam weekly: Monday 09:00 local is 08:00Z in winter, 07:00Z in summer.
        pytest.param(WEEKLY_AMS, utc(2026, 3, 23, 7, 59, 59), "ana", id="ams-before-last-winter"),
        pytest.param(WEEKLY_AMS, utc(2026, 3, 23, 8, 0), "bo", id="ams-last-winter-handoff"),
        pytest.param(WEEKLY_AMS, utc(2026, 3, 30, 6, 59, 59), "bo", id="ams-before-first-summer"),
        pytest.param(WEEKLY_AMS, utc(2026, 3, 30, 7, 0), "ana", id="ams-first-summer-handoff"),
        pytest.param(WEEKLY_AMS, utc(2026, 3, 30, 7, 59), "ana", id="ams-not-at-winter-utc"),
        pytest.param(WEEKLY_AMS, utc(2026, 10, 19, 6, 59, 59), "ana", id="ams-before-last-summer"),
        pytest.param(WEEKLY_AMS, utc(2026, 10, 19, 7, 0), "bo", id="ams-last-summer-handoff"),
        pytest.param(WEEKLY_AMS, utc(2026, 10, 26, 7, 59, 59), "bo", id="ams-before-first-winter"),
        pytest.param(WEEKLY_AMS, utc(2026, 10, 26, 8, 0), "ana", id="ams-first-winter-handoff"),
        # New York weekly: Monday 09:00 local is 14:00Z in winter, 13:00Z in summer.
        pytest.param(WEEKLY_NYC, utc(2026, 3, 2, 13, 59, 59), "bo", id="nyc-before-last-winter"),
        pytest.param(WEEKLY_NYC, utc(2026, 3, 2, 14, 0), "ana", id="nyc-last-winter-handoff"),
        pytest.param(WEEKLY_NYC, utc(2026, 3, 9, 12, 59, 59), "ana", id="nyc-before-first-summer"),
        pytest.param(WEEKLY_NYC, utc(2026, 3, 9, 13, 0), "bo", id="nyc-first-summer-handoff"),
        pytest.param(WEEKLY_NYC, utc(2026, 10, 26, 12, 59, 59), "bo", id="nyc-before-last-summer"),
        pytest.param(WEEKLY_NYC, utc(2026, 10, 26, 13, 0), "ana", id="nyc-last-summer-handoff"),
        pytest.param(WEEKLY_NYC, utc(2026, 11, 2, 13, 59, 59), "ana", id="nyc-before-first-winter"),
        pytest.param(WEEKLY_NYC, utc(2026, 11, 2, 14, 0), "bo", id="nyc-first-winter-handoff"),
        # Daily: 09:00 local on each side of the DST night.
        pytest.param(DAILY_AMS, utc(2026, 3, 28, 7, 59, 59), "bo", id="daily-sat-spring-before"),
        pytest.param(DAILY_AMS, utc(2026, 3, 28, 8, 0), "ana", id="daily-sat-spring"),
        pytest.param(DAILY_AMS, utc(2026, 3, 29, 6, 59, 59), "ana", id="daily-sun-spring-before"),
        pytest.param(DAILY_AMS, utc(2026, 3, 29, 7, 0), "bo", id="daily-sun-spring"),
        pytest.param(DAILY_AMS, utc(2026, 10, 25, 7, 59, 59), "ana", id="daily-sun-autumn-before"),
        pytest.param(DAILY_AMS, utc(2026, 10, 25, 8, 0), "bo", id="daily-sun-autumn"),
        # 12 hours of real time: 08:00Z and 20:00Z all year, which is 09:00 and 21:00 in
        # winter and 10:00 and 22:00 in summer; no shift is 11 or 13 hours long.
        pytest.param(HALF_DAY_AMS, utc(2026, 3, 28, 19, 59, 59), "ana", id="12h-spring-day"),
        pytest.param(HALF_DAY_AMS, utc(2026, 3, 28, 20, 0), "bo", id="12h-spring-night"),
        pytest.param(HALF_DAY_AMS, utc(2026, 3, 29, 1, 30), "bo", id="12h-spring-after-jump"),
        pytest.param(HALF_DAY_AMS, utc(2026, 3, 29, 6, 59, 59), "bo", id="12h-spring-night-end"),
        pytest.param(HALF_DAY_AMS, utc(2026, 3, 29, 7, 59, 59), "bo", id="12h-spring-0959-cest"),
        pytest.param(HALF_DAY_AMS, utc(2026, 3, 29, 8, 0), "ana", id="12h-spring-morning"),
        pytest.param(HALF_DAY_AMS, utc(2026, 10, 24, 19, 59, 59), "ana", id="12h-autumn-day"),
        pytest.param(HALF_DAY_AMS, utc(2026, 10, 24, 20, 0), "bo", id="12h-autumn-night"),
        pytest.param(HALF_DAY_AMS, utc(2026, 10, 25, 0, 30), "bo", id="12h-autumn-0230-first"),
        pytest.param(HALF_DAY_AMS, utc(2026, 10, 25, 1, 30), "bo", id="12h-autumn-0230-again"),
        pytest.param(HALF_DAY_AMS, utc(2026, 10, 25, 7, 59, 59), "bo", id="12h-autumn-night-end"),
        pytest.param(HALF_DAY_AMS, utc(2026, 10, 25, 8, 0), "ana", id="12h-autumn-morning"),
        # A handoff at a skipped time happens when the clocks jump (03:00 CEST = 01:00Z) ...
        pytest.param(GAP_AMS, utc(2026, 3, 29, 0, 59, 59), "bo", id="gap-before-jump"),
        pytest.param(GAP_AMS, utc(2026, 3, 29, 1, 0), "ana", id="gap-at-jump"),
        # ... and at a repeated time, once, at its first occurrence; it never flips back.
        pytest.param(REPEAT_AMS, utc(2026, 10, 25, 0, 29, 59), "bo", id="repeat-before-first"),
        pytest.param(REPEAT_AMS, utc(2026, 10, 25, 0, 30), "ana", id="repeat-first-0230"),
        pytest.param(REPEAT_AMS, utc(2026, 10, 25, 1, 15), "ana", id="repeat-0215-again"),
        pytest.param(REPEAT_AMS, utc(2026, 10, 25, 1, 30), "ana", id="repeat-0230-again"),
        # Before a rotation starts nobody is on call.
        pytest.param(WEEKLY_AMS, ams(2026, 1, 5, 8, 59, 59), None, id="before-start"),
        pytest.param(WEEKLY_AMS, ams(2026, 1, 5, 9, 0), "ana", id="at-start"),
        pytest.param(WEEKLY_AMS, ams(2026, 1, 12, 9, 0), "bo", id="first-handoff"),
    ],
)
def test_rotation(schedule: Schedule, at: datetime, expected: str | None) -> None:
    assert on_call(schedule, "primary", at) == expected


@pytest.mark.parametrize(
    ("schedule", "at", "expected"),
    [
        pytest.param(PLATFORM, ams(2026, 2, 11, 7, 59), "dee", id="fts-0759"),
        pytest.param(PLATFORM, ams(2026, 2, 11, 8, 0), "cy", id="fts-0800"),
        pytest.param(PLATFORM, ams(2026, 2, 11, 19, 59), "cy", id="fts-1959"),
        pytest.param(PLATFORM, ams(2026, 2, 11, 20, 0), "dee", id="fts-2000"),
        pytest.param(PLATFORM, utc(2026, 7, 15, 5, 59), "dee", id="fts-summer-0759"),
        pytest.param(PLATFORM, utc(2026, 7, 15, 6, 0), "cy", id="fts-summer-0800"),
        pytest.param(PLATFORM, ams(2026, 2, 16, 9, 0), "cy", id="fts-over-dee-handoff"),
        pytest.param(PLATFORM, ams(2026, 1, 5, 7, 59), None, id="fts-before-both"),
        pytest.param(PLATFORM, ams(2026, 1, 5, 8, 30), "cy", id="fts-cy-started-first"),
        pytest.param(NIGHTS, ams(2026, 2, 13, 21, 59), "dee", id="night-fri-2159"),
        pytest.param(NIGHTS, ams(2026, 2, 13, 22, 0), "eve", id="night-fri-2200"),
        pytest.param(NIGHTS, ams(2026, 2, 14, 5, 59), "eve", id="night-runs-into-sat"),
        pytest.param(NIGHTS, ams(2026, 2, 14, 6, 0), "dee", id="night-sat-0600"),
        pytest.param(NIGHTS, ams(2026, 2, 14, 22, 0), "dee", id="night-not-sat-evening"),
        pytest.param(NIGHTS, ams(2026, 2, 16, 5, 59), "dee", id="night-not-from-sunday"),
        pytest.param(NIGHTS, ams(2026, 2, 16, 22, 0), "eve", id="night-mon-2200"),
        pytest.param(NIGHTS_EVERY_DAY, utc(2026, 3, 29, 1, 30), "eve", id="night-dst-0330"),
        pytest.param(NIGHTS_EVERY_DAY, utc(2026, 3, 29, 3, 59), "eve", id="night-dst-0559"),
        pytest.param(NIGHTS_EVERY_DAY, utc(2026, 3, 29, 4, 0), "dee", id="night-dst-0600"),
    ],
)
def test_follow_the_sun(schedule: Schedule, at: datetime, expected: str) -> None:
    assert on_call(schedule, "primary", at) == expected


@pytest.mark.parametrize(
    ("overrides", "layer", "at", "expected"),
    [
        pytest.param((), "primary", ams(2026, 2, 14, 12, 0), "bo", id="none"),
        pytest.param((COVER_SATURDAY,), "primary", ams(2026, 2, 14, 12, 0), "cy", id="any-user"),
        pytest.param((COVER_SATURDAY,), "secondary", ams(2026, 2, 14, 12, 0), "cy", id="any-layer"),
        pytest.param((COVER_SATURDAY,), "primary", ams(2026, 2, 14, 0, 0), "cy", id="start-incl"),
        pytest.param(
            (COVER_SATURDAY,), "primary", ams(2026, 2, 13, 23, 59, 59), "bo", id="before-start"
        ),
        pytest.param((COVER_SATURDAY,), "primary", ams(2026, 2, 15, 0, 0), "bo", id="end-excl"),
        pytest.param(
            (COVER_BO_SATURDAY,), "primary", ams(2026, 2, 14, 12, 0), "cy", id="replaces-bo"
        ),
        pytest.param(
            (COVER_BO_SATURDAY,), "secondary", ams(2026, 2, 14, 12, 0), "ana", id="not-ana"
        ),
        pytest.param(
            (COVER_SECONDARY_SATURDAY,), "primary", ams(2026, 2, 14, 12, 0), "bo", id="other-layer"
        ),
        pytest.param(
            (COVER_SECONDARY_SATURDAY,), "secondary", ams(2026, 2, 14, 12, 0), "cy", id="its-layer"
        ),
        pytest.param(
            (COVER_SATURDAY, DEE_AT_NOON), "primary", ams(2026, 2, 14, 12, 30), "dee", id="last"
        ),
        pytest.param(
            (COVER_SATURDAY, DEE_AT_NOON), "primary", ams(2026, 2, 14, 13, 0), "cy", id="last-ended"
        ),
        pytest.param(
            (DEE_AT_NOON, COVER_SATURDAY), "primary", ams(2026, 2, 14, 12, 30), "cy", id="order"
        ),
        # `replaces` is matched against the layers' answer (bo), not an earlier override's.
        pytest.param(
            (COVER_SATURDAY, DEE_FOR_CY_AT_NOON),
            "primary",
            ams(2026, 2, 14, 12, 30),
            "cy",
            id="replaces-the-computed-user",
        ),
        pytest.param(
            (Override(*NEW_YEAR, user="cy"),), "primary", ams(2026, 1, 1, 12, 0), "cy", id="nobody"
        ),
        pytest.param(
            (Override(*NEW_YEAR, user="cy", replaces="bo"),),
            "primary",
            ams(2026, 1, 1, 12, 0),
            None,
            id="nobody-to-replace",
        ),
    ],
)
def test_overrides(
    overrides: tuple[Override, ...], layer: str, at: datetime, expected: str | None
) -> None:
    assert on_call(payments(*overrides), layer, at) == expected


@pytest.mark.parametrize(
    ("schedule", "at", "expected"),
    [
        pytest.param(WEEKLY_AMS, utc(2026, 3, 25, 12, 0), utc(2026, 3, 30, 7, 0), id="ams-spring"),
        pytest.param(WEEKLY_AMS, utc(2026, 3, 30, 7, 0), utc(2026, 4, 6, 7, 0), id="ams-at-edge"),
        pytest.param(WEEKLY_AMS, utc(2026, 10, 20, 0, 0), utc(2026, 10, 26, 8, 0), id="ams-autumn"),
        pytest.param(WEEKLY_NYC, utc(2026, 3, 5, 0, 0), utc(2026, 3, 9, 13, 0), id="nyc-spring"),
        pytest.param(WEEKLY_NYC, utc(2026, 10, 28, 0, 0), utc(2026, 11, 2, 14, 0), id="nyc-autumn"),
        pytest.param(WEEKLY_AMS, utc(2025, 12, 20, 0, 0), utc(2026, 1, 5, 8, 0), id="until-start"),
        pytest.param(DAILY_AMS, utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 7, 0), id="daily"),
        pytest.param(HALF_DAY_AMS, utc(2026, 3, 28, 20, 0), utc(2026, 3, 29, 8, 0), id="12h-sp"),
        pytest.param(HALF_DAY_AMS, utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 8, 0), id="12h-au"),
        pytest.param(GAP_AMS, utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 0), id="gap"),
        pytest.param(REPEAT_AMS, utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30), id="repeat"),
        pytest.param(REPEAT_AMS, utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30), id="repeat+"),
        pytest.param(PLATFORM, ams(2026, 2, 11, 7, 0), utc(2026, 2, 11, 7, 0), id="fts-morning"),
        pytest.param(PLATFORM, ams(2026, 2, 11, 12, 0), utc(2026, 2, 11, 19, 0), id="fts-evening"),
        pytest.param(PLATFORM, ams(2026, 2, 11, 20, 0), utc(2026, 2, 12, 7, 0), id="fts-night"),
        pytest.param(PLATFORM, ams(2026, 3, 28, 21, 0), utc(2026, 3, 29, 6, 0), id="fts-dst"),
        pytest.param(NIGHTS, ams(2026, 2, 13, 12, 0), utc(2026, 2, 13, 21, 0), id="night-opens"),
        pytest.param(NIGHTS, ams(2026, 2, 13, 23, 0), utc(2026, 2, 14, 5, 0), id="night-closes"),
        # Saturday to Monday night: dee's Monday 09:00 handoff to dee changes nothing.
        pytest.param(NIGHTS, ams(2026, 2, 14, 12, 0), utc(2026, 2, 16, 21, 0), id="night-skips"),
    ],
)
def test_next_change(schedule: Schedule, at: datetime, expected: datetime) -> None:
    found = next_change(schedule, "primary", at)
    assert found == expected
    assert found is not None
    assert found.tzinfo is UTC


@pytest.mark.parametrize(
    ("overrides", "layer", "at", "expected"),
    [
        pytest.param(
            (COVER_SATURDAY,), "primary", ams(2026, 2, 13, 12, 0), utc(2026, 2, 13, 23, 0),
            id="override-starts",
        ),
        pytest.param(
            (COVER_SATURDAY,), "primary", ams(2026, 2, 14, 12, 0), utc(2026, 2, 14, 23, 0),
            id="override-ends",
        ),
        pytest.param(
            (COVER_SECONDARY_SATURDAY,), "primary", ams(2026, 2, 13, 12, 0),
            utc(2026, 2, 16, 8, 0), id="other-layer-ignored",
        ),
        pytest.param(
            (Override(*SATURDAY, user="cy", replaces="ana"),), "primary", ams(2026, 2, 13, 12, 0),
            utc(2026, 2, 16, 8, 0), id="replaces-nobody-here",
        ),
        pytest.param(
            (COVER_SATURDAY, DEE_AT_NOON), "primary", ams(2026, 2, 14, 9, 0),
            utc(2026, 2, 14, 11, 0), id="inner-override",
        ),
    ],
)
def test_next_change_with_overrides(
    overrides: tuple[Override, ...], layer: str, at: datetime, expected: datetime
) -> None:
    assert next_change(payments(*overrides), layer, at) == expected


@pytest.mark.parametrize(
    ("schedule", "at", "horizon"),
    [
        pytest.param(
            single(AMS, rotation(("dee",), "1w", MONDAY_0900)), ams(2026, 2, 1), timedelta(days=35),
            id="one-user-forever",
        ),
        pytest.param(WEEKLY_AMS, utc(2026, 3, 25, 12, 0), timedelta(days=1), id="past-horizon"),
        pytest.param(WEEKLY_AMS, utc(2026, 3, 30, 6, 0), timedelta(minutes=59), id="just-short"),
    ],
)
def test_next_change_none(schedule: Schedule, at: datetime, horizon: timedelta) -> None:
    assert next_change(schedule, "primary", at, horizon) is None


def test_next_change_horizon_end_is_included() -> None:
    at = utc(2026, 3, 30, 6, 0)
    assert next_change(WEEKLY_AMS, "primary", at, timedelta(hours=1)) == utc(2026, 3, 30, 7, 0)


@pytest.mark.parametrize(
    ("schedule", "layer"),
    [
        pytest.param(WEEKLY_AMS, "primary", id="weekly-across-dst"),
        pytest.param(HALF_DAY_AMS, "primary", id="half-days"),
        pytest.param(GAP_AMS, "primary", id="handoff-in-the-skipped-hour"),
        pytest.param(REPEAT_AMS, "primary", id="handoff-in-the-repeated-hour"),
        pytest.param(PLATFORM, "primary", id="restricted-rotation-over-another"),
        pytest.param(NIGHTS, "primary", id="night-windows"),
        pytest.param(payments(COVER_SATURDAY, DEE_AT_NOON), "primary", id="overrides"),
        pytest.param(payments(COVER_SECONDARY_SATURDAY), "secondary", id="layer-override"),
        pytest.param(single(AMS, rotation(("dee",), "1w", MONDAY_0900)), "primary", id="one-user"),
    ],
)
def test_the_memo_answers_as_on_call_does_at_every_instant(schedule: Schedule, layer: str) -> None:
    """Walked forward in 41-minute steps through 2026 (both DST changes), then asked at each
    edge, a second either side of it: the memo never keeps an answer past a change."""
    memo = OnCallMemo()
    instants = [utc(2026, 1, 1) + timedelta(minutes=41 * i) for i in range(12_900)]
    edges = []
    at = utc(2026, 1, 1)
    while (edge := next_change(schedule, layer, at)) is not None and edge < utc(2027, 1, 1):
        edges.append(edge)
        at = edge
    for edge in edges:
        instants += [edge - timedelta(seconds=1), edge, edge + timedelta(seconds=1)]
    for at in sorted(instants):
        assert memo.on_call(schedule, layer, at) == on_call(schedule, layer, at), at


def test_the_memo_answers_afresh_for_a_reloaded_schedule_and_for_an_earlier_instant() -> None:
    memo = OnCallMemo()
    at = ams(2026, 2, 14, 12, 30)
    assert memo.on_call(payments(), "primary", at) == "bo"
    # A reload gives the schedule another object under the same name: its answer, not the old.
    assert memo.on_call(payments(DEE_AT_NOON), "primary", at) == "dee"
    reloaded = payments()
    assert memo.on_call(reloaded, "primary", at) == "bo"
    # A clock set back asks before the span began: bo's week started on Monday 09:00.
    assert memo.on_call(reloaded, "primary", ams(2026, 2, 9, 8, 59)) == "ana"
    assert memo.on_call(reloaded, "primary", at) == "bo"
    # Layers of one schedule are remembered apart.
    assert memo.on_call(reloaded, "secondary", at) == "ana"
    assert memo.on_call(reloaded, "primary", at) == "bo"


def test_unknown_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="no layer 'tertiary'.*primary, secondary"):
        on_call(payments(), "tertiary", utc(2026, 2, 1))
    with pytest.raises(ValueError, match="no layer 'tertiary'"):
        next_change(payments(), "tertiary", utc(2026, 2, 1))


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        on_call(WEEKLY_AMS, "primary", datetime(2026, 2, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        within(OFFICE, datetime(2026, 2, 1))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: rotation((), "1w", MONDAY_0900), "at least one user", id="no-users"),
        pytest.param(lambda: rotation(("a",), "0d", MONDAY_0900), "at least 1d", id="zero-shift"),
        pytest.param(
            lambda: rotation(("a",), "1d", MONDAY_0900.replace(tzinfo=AMS)), "naive", id="aware"
        ),
        pytest.param(
            lambda: Restriction(frozenset({7}), time(8), time(9)), "0 .Monday.", id="weekday-7"
        ),
        pytest.param(
            lambda: WorkingHours(AMS, MON_FRI, time(8, tzinfo=UTC), time(9)), "without a zone",
            id="zoned-time",
        ),
        pytest.param(
            lambda: Override(datetime(2026, 1, 1), utc(2026, 1, 2), "a"), "timezone-aware",
            id="naive-override",
        ),
    ],
)
def test_bad_definitions_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# -- working hours -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "at", "expected"),
    [
        pytest.param(OFFICE, ams(2026, 2, 16, 8, 59, 59), False, id="mon-before"),
        pytest.param(OFFICE, ams(2026, 2, 16, 9, 0), True, id="mon-opens"),
        pytest.param(OFFICE, ams(2026, 2, 16, 17, 59, 59), True, id="mon-last-second"),
        pytest.param(OFFICE, ams(2026, 2, 16, 18, 0), False, id="mon-closes"),
        pytest.param(OFFICE, ams(2026, 2, 13, 17, 0), True, id="friday"),
        pytest.param(OFFICE, ams(2026, 2, 14, 12, 0), False, id="saturday"),
        pytest.param(OFFICE, ams(2026, 2, 15, 12, 0), False, id="sunday"),
        pytest.param(OFFICE, utc(2026, 2, 16, 8, 0), True, id="winter-0800z"),
        pytest.param(OFFICE, utc(2026, 7, 13, 6, 59), False, id="summer-0659z"),
        pytest.param(OFFICE, utc(2026, 7, 13, 7, 0), True, id="summer-0700z"),
        pytest.param(NIGHT_DESK, ams(2026, 2, 14, 5, 0), True, id="night-from-friday"),
        pytest.param(NIGHT_DESK, ams(2026, 2, 16, 5, 0), False, id="night-not-from-sunday"),
        pytest.param(NIGHT_DESK, ams(2026, 2, 16, 22, 0), True, id="night-monday"),
        pytest.param(MONDAY_24H, ams(2026, 2, 16, 8, 59), False, id="24h-before"),
        pytest.param(MONDAY_24H, ams(2026, 2, 16, 9, 0), True, id="24h-opens"),
        pytest.param(MONDAY_24H, ams(2026, 2, 17, 8, 59), True, id="24h-tuesday-morning"),
        pytest.param(MONDAY_24H, ams(2026, 2, 17, 9, 0), False, id="24h-closes"),
        pytest.param(SMALL_HOURS, utc(2026, 3, 29, 0, 59, 59), False, id="gap-before-jump"),
        pytest.param(SMALL_HOURS, utc(2026, 3, 29, 1, 0), True, id="gap-opens-at-jump"),
        pytest.param(SMALL_HOURS, utc(2026, 3, 29, 2, 0), False, id="gap-closes-0400"),
        pytest.param(WorkingHours(AMS, frozenset(), time(9), time(18)), ams(2026, 2, 16, 12),
                     False, id="no-days"),
    ],
)
def test_within(hours: WorkingHours, at: datetime, expected: bool) -> None:
    assert within(hours, at) is expected


@pytest.mark.parametrize(
    ("hours", "at", "expected"),
    [
        pytest.param(OFFICE, ams(2026, 2, 11, 10, 0), utc(2026, 2, 11, 9, 0), id="already-within"),
        pytest.param(OFFICE, ams(2026, 2, 16, 7, 0), utc(2026, 2, 16, 8, 0), id="later-today"),
        pytest.param(OFFICE, ams(2026, 2, 13, 18, 30), utc(2026, 2, 16, 8, 0), id="fri-to-mon"),
        pytest.param(OFFICE, ams(2026, 2, 13, 18, 0), utc(2026, 2, 16, 8, 0), id="fri-at-close"),
        pytest.param(OFFICE, ams(2026, 3, 27, 19, 0), utc(2026, 3, 30, 7, 0), id="spring-weekend"),
        pytest.param(OFFICE, ams(2026, 10, 23, 19, 0), utc(2026, 10, 26, 8, 0), id="autumn-wknd"),
        pytest.param(SMALL_HOURS, utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 0), id="into-gap"),
        pytest.param(
            SMALL_HOURS, utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 0, 30), id="repeated-0230"
        ),
        pytest.param(NIGHT_DESK, ams(2026, 2, 14, 6, 0), utc(2026, 2, 16, 21, 0), id="night-desk"),
    ],
)
def test_next_start(hours: WorkingHours, at: datetime, expected: datetime) -> None:
    found = next_start(hours, at)
    assert found == expected
    assert found.tzinfo is UTC


def test_next_start_without_weekdays_is_refused() -> None:
    with pytest.raises(ValueError, match="no weekdays"):
        next_start(WorkingHours(AMS, frozenset(), time(9), time(18)), utc(2026, 2, 16))


# -- weekdays ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("mon-fri", {0, 1, 2, 3, 4}, id="mon-fri"),
        pytest.param("mon-sun", {0, 1, 2, 3, 4, 5, 6}, id="mon-sun"),
        pytest.param("sat,sun", {5, 6}, id="list"),
        pytest.param("fri-mon", {4, 5, 6, 0}, id="wraps"),
        pytest.param("mon", {0}, id="one"),
        pytest.param("wed-wed", {2}, id="one-day-range"),
        pytest.param("MON-Fri", {0, 1, 2, 3, 4}, id="case"),
        pytest.param("mon-tue, thu , sat", {0, 1, 3, 5}, id="spaces"),
    ],
)
def test_parse_weekdays(text: str, expected: set[int]) -> None:
    assert parse_weekdays(text) == frozenset(expected)


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        pytest.param("", "''", id="empty"),
        pytest.param("monday", "'monday'", id="long-name"),
        pytest.param("mon-", "'mon-'", id="open-range"),
        pytest.param("mon-fri-sat", "'mon-fri-sat'", id="two-dashes"),
        pytest.param("1-5", "'1-5'", id="numbers"),
        pytest.param("mon,,tue", "''", id="empty-part"),
        pytest.param("sat,xyz", "'xyz'", id="one-bad-part"),
    ],
)
def test_parse_weekdays_rejects(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f"bad weekday {bad}.*three-letter day names") as err:
        parse_weekdays(text)
    assert "mon-fri" in str(err.value)
