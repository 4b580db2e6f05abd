"""The status cadence: an open incident owes a status update every so often, by severity.

The clock starts when the incident opens and starts again at each status update (notes.py
says which notes are). When it runs out, whoever is accountable (roles.accountable: the
commander, else whoever acknowledged) is reminded, the timeline says so, and the clock starts
again: a reminder each interval until someone speaks. Pure: the desk holds the deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from receiver.core.frozen import frozen
from receiver.core.model import EventKind, Incident, Severity, TimelineEvent
from receiver.escalation.unreached import counted, found_once
from receiver.incidents.roles import Holders, accountable, accountable_of

KEY = "status"  # the one cadence deadline of an incident


@frozen(slots=True)
class Reminder:
    """What an overdue status update leads to: who to remind (None: nobody is accountable
    yet; the timeline still says it is overdue), the event, and when the next one is due."""

    recipient: str | None
    event: TimelineEvent
    next_due: datetime


def due(severity: Severity, since: datetime) -> datetime | None:
    """When the next status update is due, counting from `since` (the opening or the last
    update); None for a severity without a cadence."""
    every = severity.status_every
    if every is None:
        return None
    try:
        return since + every
    except OverflowError:
        return None  # past the year 9999: never


def remind(
    incident: Incident, holders: Holders, severity: Severity, armed_at: datetime,
    known_users: frozenset[str], now: datetime,
) -> Reminder | None:
    """The cadence ran out at `armed_at`'s due time. None when there is nothing to do: the
    incident is resolved, or its severity no longer has a cadence."""
    every = severity.status_every
    if not incident.is_open or every is None:
        return None
    who = accountable(incident, holders)
    if who is not None and who not in known_users:
        who = None  # acknowledged through a token, or a user a reload removed
    detail = {"every": every.total_seconds(), "since": (armed_at - every).isoformat(),
              "reminded": who}
    event = TimelineEvent(now, EventKind.STATUS_DUE, "ackd", detail)
    return Reminder(who, event, now + every)


def unreminded(
    armed: Iterable[tuple[int, str, str | None, str | None]],
    severity: Callable[[str], Severity],
    known_users: frozenset[str],
    token_names: frozenset[str],
) -> list[tuple[str, list[int]]]:
    """A line, with its incidents, for each person whom the armed cadences of open incidents
    (incident, severity, commander, whoever acknowledged) would remind, and whom a config of
    these users no longer has: `remind` then reminds nobody. A named token that acknowledged
    (a script) was never reminded, and an incident whose severity has no cadence now is
    reminded of nothing: neither is a change."""
    found: dict[str, list[int]] = {}
    for number, severity_name, commander, acknowledged_by in armed:
        who = accountable_of(commander, acknowledged_by)
        if (who is None or who in known_users or who in token_names
                or severity(severity_name).status_every is None):
            continue
        role = "their commander" if commander is not None else "who acknowledged them"
        found_once(found, f"owe status updates, and {who} ({role}), whom their reminder goes"
                   " to, is no user of this config: it will remind nobody", number)
    return [(counted(line, numbers), numbers) for line, numbers in found.items()]
