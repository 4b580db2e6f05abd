"""Holes in on-call coverage: `first_gap` at the DST changes of Amsterdam, New York, Sydney
and Lord Howe, against the hand-written offset table of test_schedules_dst, and the warning
`ackd check-config` prints for them (file, line, schedule, layer, first uncovered span)."""

from __future__ import annotations

import textwrap
import time as time_module
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from receiver.oncall.schedules import (
    Layer,
    Restriction,
    Rotation,
    Schedule,
    ShiftUnit,
    first_gap,
)
from tests.test_cli import ackd
from tests.test_schedules_dst import BY_NAME, DAY, RefZone

EVERY_DAY = frozenset(range(7))
MON_FRI = frozenset(range(5))


def cover(zone: str, opens: int, closes: int, days: frozenset[int] = EVERY_DAY) -> Rotation:
    """One person on call from `opens` to `closes` o'clock in `zone`, on `days`."""
    return Rotation(
        (zone,), 1, ShiftUnit.WEEKS, datetime(2026, 1, 1), name=zone,
        restrictions=(Restriction(days, time(opens), time(closes)),), tz=ZoneInfo(zone),
    )


def local(zone: str, *fields: int) -> datetime:
    return BY_NAME[zone].to_utc(datetime(*fields))  # type: ignore[arg-type]


AMS, NYC = "Europe/Amsterdam", "America/New_York"
SYD, LHI = "Australia/Sydney", "Australia/Lord_Howe"
CASES = [
    # Amsterdam 08-20 and New York 14-02 fit end to end in winter and in summer; in the
    # weeks when only New York has changed, New York closes an hour before Amsterdam opens.
    pytest.param(
        (cover(AMS, 8, 20), cover(NYC, 14, 2)), local(AMS, 2026, 3, 1, 12),
        (local(NYC, 2026, 3, 9, 2), local(AMS, 2026, 3, 9, 8)), id="ams-nyc-march",
    ),
    pytest.param(
        (cover(AMS, 8, 20), cover(NYC, 14, 2)), local(AMS, 2026, 10, 18, 12),
        (local(NYC, 2026, 10, 25, 2), local(AMS, 2026, 10, 25, 8)), id="ams-nyc-october",
    ),
    pytest.param(
        (cover(AMS, 8, 20), cover(NYC, 14, 2)), local(AMS, 2026, 4, 1, 12), None,
        id="ams-nyc-both-summer",
    ),
    # Sydney 00-12 and Lord Howe 12-24 fit while both keep summer time (+11); from April
    # Lord Howe is 30 minutes ahead of Sydney and closes half an hour before Sydney opens.
    pytest.param(
        (cover(SYD, 0, 12), cover(LHI, 12, 0)), local(SYD, 2026, 3, 30, 12),
        (local(LHI, 2026, 4, 6, 0), local(SYD, 2026, 4, 6, 0)), id="syd-lhi-april",
    ),
    pytest.param(
        (cover(SYD, 0, 12), cover(LHI, 12, 0)), local(SYD, 2026, 10, 5, 12), None,
        id="syd-lhi-summer-again",
    ),
    # Office hours leave the weekend, which the Sydney change falls in.
    pytest.param(
        (cover(SYD, 9, 17, MON_FRI),), local(SYD, 2026, 4, 3, 12),
        (local(SYD, 2026, 4, 3, 17), local(SYD, 2026, 4, 6, 9)), id="syd-weekend",
    ),
    # A night window of 22:00-06:00 and a day window of 06:00-22:00 in one zone never part,
    # whatever the clocks do.
    pytest.param(
        (cover(LHI, 6, 22), cover(LHI, 22, 6)), local(LHI, 2026, 4, 1), None,
        id="lhi-day-and-night",
    ),
    pytest.param(
        (cover(NYC, 6, 22), cover(NYC, 22, 6)), local(NYC, 2026, 10, 28), None,
        id="nyc-day-and-night",
    ),
]


@pytest.mark.parametrize(("rotations", "since", "expected"), CASES)
def test_first_gap(
    rotations: tuple[Rotation, ...], since: datetime,
    expected: tuple[datetime, datetime] | None,
) -> None:
    schedule = Schedule("s", ZoneInfo(AMS), (Layer("l", rotations),))
    assert first_gap(schedule, "l", since, since + timedelta(weeks=4)) == expected


def test_a_gap_past_the_window_is_not_reported() -> None:
    schedule = Schedule("s", ZoneInfo(AMS), (Layer("l", (cover(AMS, 8, 20), cover(NYC, 14, 2))),))
    since = local(AMS, 2026, 2, 1, 12)
    assert first_gap(schedule, "l", since, since + timedelta(weeks=4)) is None
    assert first_gap(schedule, "l", since, since + timedelta(weeks=6)) == (
        local(NYC, 2026, 3, 9, 2), local(AMS, 2026, 3, 9, 8)
    )


def test_nobody_before_the_start_and_nobody_for_good() -> None:
    zone: RefZone = BY_NAME[AMS]
    start = datetime(2026, 3, 29, 2, 30)  # skipped: the rotation starts when clocks jump
    later = Rotation(("a", "b"), 1, ShiftUnit.DAYS, start)
    schedule = Schedule("s", ZoneInfo(AMS), (Layer("l", (later,)),))
    since = zone.to_utc(start - 3 * DAY)
    assert first_gap(schedule, "l", since, since + timedelta(weeks=4)) == (
        since, zone.to_utc(start)
    )
    empty = Schedule("s", ZoneInfo(AMS), (Layer("l", (cover(AMS, 8, 20, frozenset()),)),))
    assert first_gap(empty, "l", since, since + DAY) == (since, None)


CONFIG = textwrap.dedent("""\
    users:
      - {name: ana, contacts: [{url: "json://127.0.0.1:9099/ana"}]}
      - {name: bo, contacts: [{url: "json://127.0.0.1:9099/bo"}]}
    schedules:
      - name: sun
        timezone: Europe/Amsterdam
        layers:
          - name: covered
            rotations:
              - users: [ana]
                shift: 1w
                start: 2026-01-05T09:00:00
          - name: follow
            rotations:
              - users: [ana]
                shift: 1w
                start: 2026-01-01T00:00:00
                restrictions: [{start: "08:00", end: "20:00"}]
              - users: [bo]
                shift: 1w
                start: 2026-01-01T00:00:00
                timezone: America/New_York
                restrictions: [{start: "14:00", end: "02:00"}]
    teams:
      - {name: ops, schedule: sun}
    policies:
      - name: p
        steps:
          - notify: [{oncall: covered}]
    route: {team: ops, policy: p, severity: SEV2}
    """)


def test_check_config_warns_of_a_gap_with_file_line_schedule_and_layer(tmp_path: Path) -> None:
    path = tmp_path / "ackd.yaml"
    path.write_text(CONFIG)
    result = ackd("check-config", str(path), "--since", "2026-03-01T12:00:00+01:00")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK, 1 warning(s)\n"
    assert result.stderr == (
        f"{path}:13: schedules[0].layers[1]: warning: nobody is on call in layer 'follow' of "
        "schedule 'sun' from 2026-03-09T07:00:00+01:00 to 2026-03-09T08:00:00+01:00 (the "
        "first uncovered span in the next 28 days)\n"
    )
    result = ackd("check-config", str(path), "--since", "2026-04-01T12:00:00+02:00")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{path}: OK\n", "")


def test_check_config_warns_of_a_team_no_route_leads_to(tmp_path: Path) -> None:
    """Declaring an incident or a drill for it is refused at run time; check-config says so
    before the night it is needed."""
    path = tmp_path / "ackd.yaml"
    path.write_text(CONFIG.replace("  - {name: ops, schedule: sun}",
                                   "  - {name: ops, schedule: sun}\n"
                                   "  - {name: dba, schedule: sun}"))
    result = ackd("check-config", str(path), "--since", "2026-04-01T12:00:00+02:00")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK, 1 warning(s)\n"
    assert result.stderr.startswith(f"{path}:")
    assert result.stderr.endswith(
        ": teams[1].name: warning: no route leads to team 'dba': no alert reaches it, and an "
        "incident declared or a drill started for it is refused\n")


def test_the_walk_stops_after_its_handoffs() -> None:
    """A rotation of seconds has 2.4 million handoffs in four weeks: the walk stops after
    GAP_WALK of them (it kept the start's warning thread, and so the stop, busy for minutes).
    A hole further on than the walk is not reported."""
    seconds = Rotation(("ana", "bo"), 4, ShiftUnit.SECONDS, datetime(2026, 1, 1))
    schedule = Schedule("s", ZoneInfo(AMS), (Layer("l", (seconds,)),))
    since = local(AMS, 2026, 2, 1, 12)
    started = time_module.monotonic()
    assert first_gap(schedule, "l", since, since + timedelta(weeks=4)) is None
    assert time_module.monotonic() - started < 30
    office = Schedule("s", ZoneInfo(AMS), (Layer("l", (cover(AMS, 8, 20), cover(NYC, 14, 2))),))
    march = local(AMS, 2026, 3, 1, 12)
    assert first_gap(office, "l", march, march + timedelta(weeks=4), walk=3) is None
    assert first_gap(office, "l", march, march + timedelta(weeks=4), walk=100) == (
        local(NYC, 2026, 3, 9, 2), local(AMS, 2026, 3, 9, 8))
