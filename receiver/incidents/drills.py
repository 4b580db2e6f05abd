"""Drills: a clearly marked test incident sent through a team's real escalation path, to learn
who is reached, through which channel and how fast they acknowledge, before an outage does.

A drill's incident is opened under a group key of its own (`drill:TEAM:N`), so no alert can
join it; its summary says DRILL, so every page it sends says so in its headline. It escalates
like any incident, through the policy the team's first route in the tree gives it, and is
kept out of the real figures: reports count drills apart (incidents.facts.is_drill), and the
response-time metrics do not observe them (Incident.is_drill).

A drill tests that its pages reach the people they are for and that one of them answers: an
acknowledgement by someone the drill never paged (a lead taking it from the web page, a
script's token) answers nothing it asked, and its report says so (`answered` false). A step
that reached nobody (nobody on call, every page failed) is what a drill is there to find: the
report gives it a line of its own (`unreached`), in the words of the incident's log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from receiver.config.model import Config
from receiver.core.errors import NotFound, PayloadError
from receiver.core.frozen import frozen
from receiver.core.model import DRILL_KEY_PREFIX, EventKind, Incident, TimelineEvent
from receiver.escalation.responder import Responder
from receiver.escalation.unreached import all_failed, paged_nobody
from receiver.incidents.facts import StepFired, step_fired
from receiver.routing.tree import Route, walk
from receiver.store import NewIncident, Store, Transaction


@frozen(slots=True)
class Reached:
    """One page of the drill that a channel took (or refused)."""

    after: timedelta  # from the drill's start
    # The step whose page it was, named as the reports name it (facts.StepFired.name): "1" for
    # the policy's first, "reassigned" for a person the drill was reassigned to; None for a
    # message outside the steps (an acknowledgement's note, say).
    step: str | None
    recipient: str
    channel: str  # the Apprise scheme: json, mailto, slack, ...
    reason: str  # triggered, escalated, ... for pages; acknowledged, resolved for notes
    ok: bool
    error: str


@frozen(slots=True)
class Unreached:
    """A step of the drill that reached nobody, as the timeline has it: it paged nobody (its
    `step_fired` event names no recipient: nobody on call, a user without contacts...), or
    every page it sent failed (escalation's account of it, `notification_failed` with
    `unreachable`, when the last one failed)."""

    after: timedelta  # from the drill's start: when it fired, or when its last page failed
    step: str  # named as the reports name it (facts.StepFired.name)
    why: str  # unreached.paged_nobody or unreached.all_failed: the log line's words
    failed: tuple[str, ...]  # whose every page failed; empty for a step that paged nobody


@frozen(slots=True)
class DrillReport:
    incident: Incident
    steps: tuple[tuple[timedelta, str, tuple[str, ...]], ...]  # after, step's name, paged
    reached: tuple[Reached, ...]
    unreached: tuple[Unreached, ...]
    acknowledged_by: str | None
    acknowledged_after: timedelta | None
    # Everyone the drill had paged by its acknowledgement (by then, if nobody acknowledged):
    # its steps' recipients and the people paged in by another, in the order first paged.
    paged: tuple[str, ...]

    @property
    def answered(self) -> bool:
        """Whoever acknowledged was one of those the drill paged: what a drill sets out to
        show. False for nobody, and for someone it never paged."""
        return self.acknowledged_by is not None and self.acknowledged_by in self.paged


def route_for(config: Config, team: str) -> Route:
    """The team's first route, depth first, as the tree is read: its policy is the team's
    real escalation path."""
    if team not in config.teams:
        raise PayloadError("team", f"unknown team {team!r}; teams: {', '.join(config.teams)}")
    found = next((r for r in walk(config.route) if r.team == team), None)
    if found is None:
        raise PayloadError("team", f"no route leads to team {team!r}, so it has no path")
    return found


def severity_for(config: Config, given: str | None) -> str:
    """The drill's severity: the one asked for, else the most severe, which pages at any
    hour (a low-urgency drill would wait for working hours)."""
    names = [s.name for s in sorted(config.severities, key=lambda s: s.rank)]
    if given is None:
        return names[0]
    if given not in names:
        raise PayloadError("severity", f"unknown severity {given!r}; one of {', '.join(names)}")
    return given


async def start(
    store: Store,
    responder: Responder,
    config: Config,
    team: str,
    severity: str | None,
    actor: str,
    now: datetime,
) -> Incident:
    """Open the drill's incident and start its escalation, in one transaction."""
    route = route_for(config, team)
    level = severity_for(config, severity)

    async def job(tx: Transaction) -> Incident:
        key = f"{DRILL_KEY_PREFIX}{team}:{int(now.timestamp() * 1_000_000)}"
        number = await tx.insert_incident(NewIncident(
            group_key=key, route_id=route.id, team=team, severity=level, policy=route.policy,
            group_labels={"drill": team}, opened_at=now, external_url="",
            summary=f"DRILL: a test of {team}'s escalation path; acknowledge it as you would "
                    "a real page",
        ), None)
        await tx.append(number, [TimelineEvent(now, EventKind.OPENED, actor,
                                               {"drill": True, "severity": level})])
        incident = await tx.incident(number)
        await responder.opened(tx, incident, now)
        return incident

    return await store.write(job)


def report(incident: Incident, timeline: Sequence[TimelineEvent]) -> DrillReport:
    """Who was reached, through which channel, and how fast the drill was acknowledged."""
    if not incident.is_drill:
        raise NotFound(f"incident {incident.id} is not a drill")
    since: Callable[[datetime], timedelta] = lambda at: at - incident.opened_at  # noqa: E731
    acks = [e for e in timeline if e.kind is EventKind.ACKNOWLEDGED]
    fired = [(e, step_fired(e)) for e in timeline if e.kind is EventKind.STEP_FIRED]
    until = acks[0].at if acks else None
    return DrillReport(
        incident=incident,
        steps=tuple((since(e.at), step.name, step.recipients) for e, step in fired),
        reached=tuple(_reached(e, since(e.at), fired) for e in timeline if _delivery(e)),
        unreached=tuple(_unreached(timeline, since, fired)),
        acknowledged_by=acks[0].actor if acks else None,
        acknowledged_after=since(acks[0].at) if acks else None,
        paged=_paged(timeline, until),
    )


def _paged(timeline: Sequence[TimelineEvent], until: datetime | None) -> tuple[str, ...]:
    """Whom the drill paged up to `until` (all of it when None): the recipients of its steps
    that no maintenance window held back, and the people paged in by another (as
    facts.first_page counts a page). A raiser left out of a step is not among them."""
    held = {(e.at, e.detail.get("step")) for e in timeline if e.kind is EventKind.PAGE_SUPPRESSED}
    paged: dict[str, None] = {}
    for e in timeline:
        if until is not None and e.at > until:
            continue
        if e.kind is EventKind.STEP_FIRED and (e.at, e.detail.get("step")) not in held:
            paged.update(dict.fromkeys(str(r) for r in e.detail.get("recipients", ())))
        elif e.kind is EventKind.RESPONDER_ADDED and e.detail.get("user") != e.actor:
            paged.setdefault(str(e.detail.get("user")))
    return tuple(paged)


def _delivery(event: TimelineEvent) -> bool:
    """A message's fate: sent or failed. Not escalation's account of a step whose every page
    failed (`engine.delivery_failed`: `unreachable` names the people, no `recipient`): each
    of those pages has its own failed row, and the account is no message to anyone."""
    if event.kind is EventKind.NOTIFICATION_SENT:
        return True
    return event.kind is EventKind.NOTIFICATION_FAILED and "unreachable" not in event.detail


def _unreached(
    timeline: Sequence[TimelineEvent], since: Callable[[datetime], timedelta],
    fired: Sequence[tuple[TimelineEvent, StepFired]],
) -> list[Unreached]:
    """The steps that reached nobody, in the timeline's order."""
    found: list[Unreached] = []
    for event in timeline:
        d = event.detail
        if event.kind is EventKind.STEP_FIRED and (why := paged_nobody(d)) is not None:
            name = _page_step(d, event.at, fired) or str(d.get("number", ""))
            found.append(Unreached(since(event.at), name, why, ()))
        elif event.kind is EventKind.NOTIFICATION_FAILED and d.get("unreachable"):
            failed = tuple(str(name) for name in d["unreachable"])
            found.append(Unreached(since(event.at), _page_step(d, event.at, fired) or "",
                                   all_failed(d), failed))
    return found


def _reached(
    event: TimelineEvent, after: timedelta, fired: Sequence[tuple[TimelineEvent, StepFired]]
) -> Reached:
    d = event.detail
    return Reached(
        after=after,
        step=_page_step(d, event.at, fired),
        recipient=str(d.get("recipient") or ""),
        channel=str(d.get("scheme") or "unknown"),
        reason=str(d.get("reason") or ""),
        ok=event.kind is EventKind.NOTIFICATION_SENT,
        error=str(d.get("error") or ""),
    )


def _page_step(
    detail: Mapping[str, Any], at: datetime, fired: Sequence[tuple[TimelineEvent, StepFired]]
) -> str | None:
    """The name of the step a page was sent for. A page records its step's place in the run
    that fired it; after a reassignment to a person, place 0 is that person and the policy's
    step 1 is place 1, so the page takes the name of the step fired at that place in that
    run (a page recorded before pages carried their run: the last fired there before it)."""
    index, run = detail.get("step"), detail.get("run")
    if not isinstance(index, int):
        return None
    for event, step in reversed(fired):
        here = event.detail
        if here.get("step") == index and (
            here.get("run") == run if run is not None else event.at <= at
        ):
            return step.name
    return str(index + 1)  # its step's event is not on the timeline: the policy's numbering


def to_json(r: DrillReport) -> dict[str, Any]:
    return {
        "incident": r.incident.id,
        "team": r.incident.team,
        "severity": r.incident.severity,
        "policy": r.incident.policy,
        "state": r.incident.state,
        "started_at": r.incident.opened_at,
        "steps": [{"after_seconds": a.total_seconds(), "step": n, "paged": list(p)}
                  for a, n, p in r.steps],
        "reached": [{"after_seconds": x.after.total_seconds(), "step": x.step,
                     "recipient": x.recipient, "channel": x.channel, "reason": x.reason,
                     "delivered": x.ok,
                     **({"error": x.error} if x.error else {})} for x in r.reached],
        "unreached": [{"after_seconds": u.after.total_seconds(), "step": u.step, "why": u.why,
                       "failed": list(u.failed)} for u in r.unreached],
        "acknowledged_by": r.acknowledged_by,
        "acknowledged_after_seconds": (r.acknowledged_after.total_seconds()
                                       if r.acknowledged_after is not None else None),
        "paged": list(r.paged),
        "answered": r.answered,
    }
