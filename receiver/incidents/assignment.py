"""Who owns an incident and how severe it is, changed by people: reassigning it to a team or
a person, paging more responders in, raising or lowering its severity. Pure decisions; the
desk writes them and asks the responder to restart escalation where one is due.

- Reassigning to a team makes that team's policy (its first route's) the incident's, and
  escalation starts over under it (whoever reassigned it unpaged by the run's first cycle,
  as the new team's on-call say: `engine._knows`). Reassigning to a person pages them first,
  alone and at once; if they have not acknowledged within the time the incident's policy
  gives its first step to answer (`answer_window`), the incident's team's policy follows
  from its first step, as it would for a new incident: a person who is asleep or away does
  not leave the incident with nobody behind them. Reassigning it to yourself takes it:
  nobody is paged, the run is in your hands from its start (an acknowledgement if nobody's
  was: `engine.take`), and its reack pages you first, the policy behind you. Whoever held
  it acknowledged is told once when it goes to another person or a team (`taken_from`),
  unless the run it begins pages them at once (`paged_by_run`). The person a
  reassignment named (or who took it) un-acknowledging it gives it up: the team's own policy
  runs at once, nobody ahead (`engine.unacknowledge`, `own_policy`); anyone else's unack
  keeps them first. `person_policy` and `own_policy` live in escalation/policy.py, where the
  engine reads them.
- Adding a responder pages them as a step would (immediate contacts at once, delayed ones
  later unless they acted meanwhile: follow.py) and changes nothing else.
- Raising the severity starts escalation over under the steps of the new severity (its
  raiser unpaged by the run's first cycle: they know, `engine._knows`), and tells
  the new severity's stakeholder channels that no severity of this incident told before
  (once each: the one it opened with, and every one it was raised to); lowering it pages
  nobody and tells nobody (later steps follow the new severity).
- Alerts raise it too, the same way (actor alertmanager): see severity.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from receiver.config.model import Config
from receiver.core.errors import InvalidTransition, PayloadError
from receiver.core.frozen import frozen
from receiver.core.model import (
    EventKind,
    Incident,
    IncidentState,
    MessageReason,
    Severity,
    TimelineEvent,
)
from receiver.escalation.plan import RunCause
from receiver.incidents.drills import route_for


@frozen(slots=True)
class Reassignment:
    team: str | None = None  # exactly one of team and user
    user: str | None = None


def _object(body: Any, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise PayloadError("body", f"must be a JSON object with {' or '.join(known)}")
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise PayloadError(unknown[0], f"unknown field; known: {', '.join(known)}")
    return body


def _name(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise PayloadError(field, "must be a non-empty string")
    return value


def _user(body: dict[str, Any], config: Config) -> str:
    user = _name(body, "user")
    if user not in config.users:
        raise PayloadError("user", f"unknown user {user!r}")
    return user


def parse_reassignment(body: Any, config: Config) -> Reassignment:
    given = _object(body, ("team", "user"))
    if ("team" in given) == ("user" in given):
        raise PayloadError("team", "give a team or a user to reassign to, not both")
    if "team" in given:
        team = _name(given, "team")
        route_for(config, team)  # an unknown team, or one no route leads to
        return Reassignment(team=team)
    return Reassignment(user=_user(given, config))


def parse_responder(body: Any, config: Config) -> str:
    return _user(_object(body, ("user",)), config)


def parse_severity(body: Any, config: Config) -> Severity:
    name = _name(_object(body, ("severity",)), "severity")
    for severity in config.severities:
        if severity.name == name:
            return severity
    known = ", ".join(s.name for s in config.severities)
    raise PayloadError("severity", f"unknown severity {name!r}; one of {known}")


def check_open(incident: Incident, what: str) -> None:
    if not incident.is_open:
        raise InvalidTransition(
            f"cannot {what}: incident #{incident.id} is already resolved "
            f"(by {incident.resolved_by or 'unknown'})"
        )


def reassigned(incident: Incident, to: Reassignment, actor: str, now: datetime
               ) -> TimelineEvent:
    detail = {"team": to.team, "user": to.user, "previous_team": incident.team}
    return TimelineEvent(now, EventKind.REASSIGNED, actor, detail)


def taken_from(incident: Incident, to: Reassignment, actor: str) -> str | None:
    """Who is told that `actor`'s reassignment took the incident from them: whoever holds it
    acknowledged (`acknowledged_by`), when it goes to another person (`actor` taking it,
    or another they named) or to a team, and they neither did it nor are the person named
    (paged, or holding it still). The desk leaves out one the run it begins paged at once
    (`paged_by_run`): "REASSIGNED to team X by cy" on their page says it."""
    holder = incident.acknowledged_by
    if incident.state is not IncidentState.ACKNOWLEDGED or holder is None:
        return None
    return None if holder in (to.user, actor) else holder


def paged_by_run(events: Sequence[TimelineEvent]) -> set[str]:
    """Whom the run a reassignment began paged in its own transaction: `events` are the
    incident's since the reassignment's instant, in the order written; the steps fired
    after the last `reassigned` among them, less the pages a maintenance window held."""
    start = max((i for i, e in enumerate(events) if e.kind is EventKind.REASSIGNED),
                default=len(events))
    paged: set[str] = set()
    held: set[str] = set()
    for event in events[start:]:
        if event.kind is EventKind.STEP_FIRED:
            paged.update(str(name) for name in event.detail.get("recipients", ()))
        elif event.kind is EventKind.PAGE_SUPPRESSED:
            held.add(str(event.detail.get("recipient")))
    return paged - held


def reassigned_cause(to: Reassignment, actor: str) -> RunCause:
    """What the pages of the run a reassignment begins say: "REASSIGNED to team X by ana"."""
    return RunCause(MessageReason.REASSIGNED, actor,
                    f"team {to.team}" if to.team is not None else str(to.user))


def raised_cause(severity: Severity, actor: str) -> RunCause:
    """What the pages of the run a raised severity begins say: "SEVERITY RAISED to SEV1"."""
    return RunCause(MessageReason.SEVERITY_RAISED, actor, severity.name)


def responder_added(user: str, actor: str, now: datetime) -> TimelineEvent:
    return TimelineEvent(now, EventKind.RESPONDER_ADDED, actor, {"user": user})


@frozen(slots=True)
class SeverityChange:
    raised: bool
    event: TimelineEvent


def stakeholders_told(
    stakeholders: Mapping[str, tuple[str, ...]], severity: str, events: Iterable[TimelineEvent]
) -> frozenset[str]:
    """The stakeholder channels this incident's severities told already: those of the
    severity it opened with (the first change's `from`, or `severity` if it never changed),
    and those of each severity it was raised to since."""
    changes = [e for e in events if e.kind is EventKind.SEVERITY_CHANGED]
    opened_as = str(changes[0].detail["from"]) if changes else severity
    told = set(stakeholders.get(opened_as, ()))
    for event in changes:
        if event.detail.get("raised"):
            told.update(stakeholders.get(str(event.detail["to"]), ()))
    return frozenset(told)


def severity_change(
    incident: Incident, old: Severity, new: Severity, actor: str, now: datetime
) -> SeverityChange | None:
    """None when it is the severity the incident has. Rank 0 is the most severe."""
    if old.name == new.name:
        return None
    raised = new.rank < old.rank
    detail = {"from": old.name, "to": new.name, "raised": raised}
    return SeverityChange(raised, TimelineEvent(now, EventKind.SEVERITY_CHANGED, actor, detail))

