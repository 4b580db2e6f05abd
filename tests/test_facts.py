"""Where an incident's time to resolve ends (facts.problem_ended): a table of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.core.model import ALERTMANAGER_ACTOR, STALE_ACTOR
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
