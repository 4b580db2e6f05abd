"""Where an incident's time to resolve ends (facts.problem_ended): a table of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.core.model import (
    ALERTMANAGER_ACTOR,
    STALE_ACTOR,
    Alert,
    AlertStatus,
    EventKind,
    Incident,
    IncidentState,
    TimelineEvent,
)
from receiver.incidents import facts

OPENED = datetime(2026, 12, 2, 13, 0, 0, tzinfo=UTC)
# Alertmanager's resolution webhook comes at the group's next group_interval (5m here).
ARRIVED = datetime(2026, 12, 2, 13, 7, 51, tzinfo=UTC)


def _at(minutes: float) -> datetime:
    return OPENED + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("resolved_by", "ends", "expected"),
    [
        # The trial's incident: its alert ended at 13:03:06, reported at 13:07:51.
        (ALERTMANAGER_ACTOR, [datetime(2026, 12, 2, 13, 3, 6, tzinfo=UTC)],
         datetime(2026, 12, 2, 13, 3, 6, tzinfo=UTC)),
        # Several alerts: the problem lasted until the last of them ended.
        (ALERTMANAGER_ACTOR, [_at(1), _at(4), _at(2)], _at(4)),
        # An alert that ended before the incident opened (ackd heard of it late): no
        # negative time to resolve.
        (ALERTMANAGER_ACTOR, [_at(-3)], OPENED),
        (ALERTMANAGER_ACTOR, [_at(-3), _at(-1)], OPENED),
        # A sender's clock ahead of ours: never after the resolution came.
        (ALERTMANAGER_ACTOR, [_at(2), _at(9)], ARRIVED),
        # An end nobody reported (an odd sender): it may have been any time, up to the arrival.
        (ALERTMANAGER_ACTOR, [_at(2), None], ARRIVED),
        (ALERTMANAGER_ACTOR, [], ARRIVED),
        # A person judged it over when they resolved it, whatever the alerts said.
        ("ana", [_at(2)], ARRIVED),
        ("ana", [], ARRIVED),
        # A stale incident's alerts never reported an end.
        (STALE_ACTOR, [_at(2)], ARRIVED),
        (None, [_at(2)], ARRIVED),
    ],
)
def test_where_the_time_to_resolve_ends(
    resolved_by: str | None, ends: list[datetime | None], expected: datetime
) -> None:
    assert facts.problem_ended(OPENED, ARRIVED, resolved_by, ends) == expected
    assert facts.time_to_resolve(OPENED, ARRIVED, resolved_by, iter(ends)) == expected - OPENED


def _alert(fingerprint: str, starts: float, ends: float | None) -> Alert:
    return Alert(fingerprint, AlertStatus.RESOLVED, {"alertname": fingerprint}, {},
                 _at(starts), None if ends is None else _at(ends))


def _resolved(by: str) -> tuple[Incident, list[TimelineEvent]]:
    incident = Incident(1, "g", "r", "payments", "SEV1", "standard", {},
                        IncidentState.RESOLVED, OPENED, ARRIVED, resolved_at=ARRIVED,
                        resolved_by=by)
    return incident, [TimelineEvent(OPENED, EventKind.OPENED, ALERTMANAGER_ACTOR),
                      TimelineEvent(ARRIVED, EventKind.RESOLVED, by)]


def test_facts_end_an_alertmanager_resolution_at_its_alerts_latest_episodes() -> None:
    """The incident keeps the arrival as its resolution; its time to resolve ends at the
    latest end of each fingerprint's latest episode (an earlier episode of `a`, its end
    unknown, is over: the webhook that resolved the incident held only the later one)."""
    incident, timeline = _resolved(ALERTMANAGER_ACTOR)
    alerts = [_alert("a", -1, None), _alert("a", 1, 3), _alert("b", 0, 2)]
    f = facts.read(incident, alerts, timeline)
    assert (f.resolved_at, f.ended_at) == (ARRIVED, _at(3))
    assert f.time_to_resolve == timedelta(minutes=3)


def test_facts_keep_a_persons_resolution() -> None:
    incident, timeline = _resolved("ana")
    f = facts.read(incident, [_alert("a", 0, 3)], timeline)
    assert (f.resolved_at, f.ended_at) == (ARRIVED, ARRIVED)
    assert f.time_to_resolve == ARRIVED - OPENED
