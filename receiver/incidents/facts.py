"""What an incident's record says happened, read once for post-mortems and reports alike.

A pure reading of an incident, its alerts and its timeline: when its alerts began, when it
opened, first paged someone, was first acknowledged and resolved, which escalation steps fired
and whom they paged,
who responded, whether it was declared by hand and whether it was a drill. Both the draft
post-mortem and the reports take their figures from here, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from receiver.core.frozen import frozen
from receiver.core.model import (
    ALERTMANAGER_ACTOR,
    Alert,
    EventKind,
    Incident,
    IncidentState,
    TimelineEvent,
)
from receiver.escalation.policy import REASSIGNED_STEP

# Events these record are the machine's (alerts, pages, deliveries, stale checks); any other
# actor is a person or a person's script, and what it did is a response.
SYSTEM_ACTORS = frozenset({"ackd", ALERTMANAGER_ACTOR, "stale"})


@frozen(slots=True)
class StepFired:
    at: datetime
    # The policy's own step, 1 for its first; None for a page ahead of the policy's steps (the
    # person an incident was reassigned to), whose steps behind it keep their own numbers.
    number: int | None
    cycle: int  # 0 the first time through the policy, 1 after it repeated, ...
    reason: str
    recipients: tuple[str, ...]

    @property
    def name(self) -> str:
        """The step as the reports name it: its number, or `reassigned`."""
        return REASSIGNED_STEP if self.number is None else str(self.number)


@frozen(slots=True)
class Facts:
    incident: Incident
    detected_at: datetime | None  # the earliest start of its alerts; None without alerts
    first_paged_at: datetime | None  # when ackd first asked someone to act (first_page)
    acknowledged_at: datetime | None  # the first acknowledgement
    acknowledged_by: str | None
    resolved_at: datetime | None  # when ackd learned it was resolved (the timeline's order)
    # When the problem ended, where time to resolve stops (see `problem_ended`): the alerts'
    # end for a resolution Alertmanager reported, otherwise `resolved_at`.
    ended_at: datetime | None
    steps: tuple[StepFired, ...]
    ack_step: str | None  # the name of the step whose page was last out at the first ack
    responders: tuple[str, ...]  # people who acted on it, in the order they first did
    fingerprints: frozenset[str]

    @property
    def time_to_detect(self) -> timedelta | None:
        if self.detected_at is None:
            return None
        return max(timedelta(0), self.incident.opened_at - self.detected_at)

    @property
    def time_to_acknowledge(self) -> timedelta | None:
        """MTTA's observation: from the first page to the first acknowledgement."""
        return time_to_acknowledge(self.first_paged_at, self.acknowledged_at)

    @property
    def time_to_resolve(self) -> timedelta | None:
        """MTTR's observation: from the incident's opening to the problem's end."""
        if self.ended_at is None:
            return None
        return self.ended_at - self.incident.opened_at

    @property
    def escalated(self) -> bool:
        """It needed more than the policy's first step: its step 2 or later fired, or the
        policy repeated. A reassignment to a person is no escalation: their page is ahead of
        the policy's steps, and the policy's first step behind them is its step 1."""
        return any((s.number or 0) >= 2 or s.cycle > 0 for s in self.steps)


def is_drill(f: Facts) -> bool:
    """Drills (see incidents.drills) are kept out of the real figures."""
    return f.incident.is_drill


def is_reported(f: Facts) -> bool:
    """Declared by a person (customer-reported or observed; see incidents.declare) rather
    than raised by an alert."""
    return f.incident.is_declared


def read(incident: Incident, alerts: Sequence[Alert], timeline: Sequence[TimelineEvent]) -> Facts:
    first_ack = first_acknowledgement(timeline)
    steps = tuple(step_fired(e) for e in timeline if e.kind is EventKind.STEP_FIRED)
    resolved = [e for e in timeline if e.kind is EventKind.RESOLVED]
    resolved_at = resolved[-1].at if resolved else incident.resolved_at
    resolved_by = resolved[-1].actor if resolved else incident.resolved_by
    return Facts(
        incident=incident,
        detected_at=min((a.starts_at for a in alerts), default=None),
        first_paged_at=first_page(timeline),
        acknowledged_at=first_ack.at if first_ack else None,
        acknowledged_by=first_ack.actor if first_ack else None,
        resolved_at=resolved_at,
        ended_at=None if resolved_at is None else problem_ended(
            incident.opened_at, resolved_at, resolved_by,
            (a.ends_at for a in _latest_episodes(alerts))),
        steps=steps,
        ack_step=_ack_step(steps, first_ack.at) if first_ack else None,
        responders=_responders(timeline),
        fingerprints=frozenset(a.fingerprint for a in alerts),
    )


def _latest_episodes(alerts: Sequence[Alert]) -> list[Alert]:
    """Each fingerprint's latest episode: what the resolving webhook held (store.open_group
    reads the same), so the reports end a time to resolve where the histogram did. An
    earlier episode of a fingerprint ended before its next began."""
    latest: dict[str, Alert] = {}
    for alert in alerts:
        held = latest.get(alert.fingerprint)
        if held is None or alert.starts_at > held.starts_at:
            latest[alert.fingerprint] = alert
    return list(latest.values())


def first_acknowledgement(timeline: Sequence[TimelineEvent]) -> TimelineEvent | None:
    """The incident's first acknowledgement (MTTA's): who, and when. It stays on the timeline
    when the incident no longer names it, let go before it was resolved (Incident.resolution)."""
    return next((e for e in timeline if e.kind is EventKind.ACKNOWLEDGED), None)


@frozen(slots=True)
class LetGo:
    """The acknowledgement a later escalation run began after, and the unack that let it go
    (None when none did: it was left alone past `reack_after`, or a snooze over it ended);
    and the snooze whose end (or an unack of it) began it. A snooze holds an incident as an
    acknowledgement does but is none (engine.snooze records no `acknowledged`), so an
    incident snoozed unacknowledged has a snooze here and no acknowledgement."""

    acknowledged: TimelineEvent | None
    unacknowledged: TimelineEvent | None = None
    snoozed: TimelineEvent | None = None


def let_go(timeline: Sequence[TimelineEvent], run: int) -> LetGo | None:
    """Who acknowledged the incident before escalation run `run` began, and who unacknowledged
    it, as they stood when the run's first step fired, for the run's pages ("acknowledged by
    ana at ..., unacknowledged by bo at ..."). The latest acknowledgement, not the first (the
    web page's): the one the unack let go; and the latest snooze since the last step before
    the run. None if neither came after that step: the run began with nobody holding it."""
    held: TimelineEvent | None = None
    released: TimelineEvent | None = None
    snoozed: TimelineEvent | None = None
    for event in timeline:
        if event.kind is EventKind.STEP_FIRED:
            if event.detail.get("run", 0) == run:
                break
            held = released = snoozed = None
        elif event.kind is EventKind.ACKNOWLEDGED:
            held, released = event, None
        elif event.kind is EventKind.UNACKNOWLEDGED and (held is not None or snoozed is not None):
            # A snooze sets the incident acknowledged, so an unack may end one early: the
            # run it begins names who did, not a snooze that ran out.
            released = event
        elif event.kind is EventKind.SNOOZED:
            snoozed = event
    return None if held is None and snoozed is None else LetGo(held, released, snoozed)


def first_page(timeline: Sequence[TimelineEvent]) -> datetime | None:
    """When ackd first asked someone to act on the incident: the first escalation step that
    paged anyone (a person, or a channel the policy pages) and that no maintenance window
    held back, or the first person paged in by another (`responders`). Before it nobody was
    asked: a low-urgency incident waiting for working hours, a window holding its pages, a
    first step with a delay, a step that reached nobody, someone who joined by their own
    hand (nobody pages them)."""
    held = {(e.at, e.detail.get("step")) for e in timeline if e.kind is EventKind.PAGE_SUPPRESSED}
    return min(
        (e.at for e in timeline
         if (e.kind is EventKind.STEP_FIRED and e.detail.get("recipients")
             and (e.at, e.detail.get("step")) not in held)
         or (e.kind is EventKind.RESPONDER_ADDED and e.detail.get("user") != e.actor)),
        default=None,
    )


def time_to_acknowledge(
    first_paged_at: datetime | None, acknowledged_at: datetime | None
) -> timedelta | None:
    """How long people took to acknowledge once asked (MTTA's observation, in the reports and
    ackd_time_to_acknowledge_seconds alike). None without an acknowledgement, and for one
    that came before any page: nobody was asked, so it tells nothing of how fast people
    answer (as an incident resolved before anyone acknowledged it is kept out)."""
    if first_paged_at is None or acknowledged_at is None or acknowledged_at < first_paged_at:
        return None
    return acknowledged_at - first_paged_at


def problem_ended(
    opened_at: datetime,
    resolved_at: datetime,
    resolved_by: str | None,
    alert_ends: Iterable[datetime | None],
) -> datetime:
    """When a resolved incident's problem ended: where its time to resolve (MTTR's
    observation, in ackd_time_to_resolve_seconds, the reports and the post-mortem alike)
    stops. Resolved by Alertmanager, it is the latest end (endsAt) of its alerts: Alertmanager
    sends a resolution only at the group's next group_interval, so `resolved_at`, its arrival,
    is up to a group_interval late. Never before the incident opened (an alert that ended
    before ackd heard of it), never after the arrival (a sender's clock ahead of ours), and
    the arrival itself when an alert's end is unknown (an odd sender omits it: it may have
    ended any time before). Resolved by a person or as stale, it is `resolved_at`: a person
    judged it over then, and a stale incident's alerts never reported an end."""
    if resolved_by != ALERTMANAGER_ACTOR:
        return resolved_at
    latest: datetime | None = None
    for end in alert_ends:
        if end is None:
            return resolved_at
        latest = end if latest is None else max(latest, end)
    if latest is None:
        return resolved_at
    return min(resolved_at, max(opened_at, latest))


def time_to_resolve(
    opened_at: datetime,
    resolved_at: datetime,
    resolved_by: str | None,
    alert_ends: Iterable[datetime | None],
) -> timedelta:
    """MTTR's observation: from the incident's opening to its problem's end (problem_ended)."""
    return problem_ended(opened_at, resolved_at, resolved_by, alert_ends) - opened_at


def step_fired(event: TimelineEvent) -> StepFired:
    """A STEP_FIRED event as the policy numbers its steps (drills and reports alike)."""
    d = event.detail
    # The run's own step: `ahead` of the policy's are the reassigned person's (none in events
    # written before Policy.ahead, which read as before).
    number = int(d.get("number", int(d.get("step", 0)) + 1)) - int(d.get("ahead", 0))
    return StepFired(
        event.at, number if number >= 1 else None, int(d.get("cycle", 0)),
        str(d.get("reason", "")), tuple(str(r) for r in d.get("recipients", ())),
    )


def paged_in_run(timeline: Sequence[TimelineEvent], run: int) -> list[str]:
    """Whom the steps of escalation run `run` paged (people and channels), in the order each
    was first paged: what an `escalation_exhausted` event names."""
    paged: dict[str, None] = {}
    for event in timeline:
        if event.kind is EventKind.STEP_FIRED and event.detail.get("run", 0) == run:
            paged.update(dict.fromkeys(str(r) for r in event.detail.get("recipients", ())))
    return list(paged)


# After these, an exhaustion no longer stands: a step fired or a new run began (a person's
# change, a reack, a snooze's end, a window's end; a low-urgency run waiting for working
# hours), or a person took or closed the incident.
_AFTER_EXHAUSTION = frozenset({
    EventKind.STEP_FIRED, EventKind.ESCALATION_DEFERRED, EventKind.ACKNOWLEDGED,
    EventKind.SNOOZED, EventKind.UNACKNOWLEDGED, EventKind.SNOOZE_ENDED,
    EventKind.RE_ESCALATED, EventKind.REASSIGNED, EventKind.MAINTENANCE_ENDED,
    EventKind.RESOLVED,
})


def exhausted(incident: Incident, timeline: Sequence[TimelineEvent]) -> TimelineEvent | None:
    """The `escalation_exhausted` event that still stands: the incident is triggered and its
    escalation ran out with nothing since that started it again or took it (a raised
    severity starts a new run; a lowered one pages nobody and changes nothing here). None
    otherwise: the API's `escalation.exhausted_at` and the web page read it."""
    if incident.state is not IncidentState.TRIGGERED:
        return None
    for event in reversed(timeline):
        if event.kind is EventKind.ESCALATION_EXHAUSTED:
            return event
        if event.kind in _AFTER_EXHAUSTION or (
                event.kind is EventKind.SEVERITY_CHANGED and event.detail.get("raised")):
            return None
    return None


# After these, a wait for working hours no longer stands: what it held fired (a step, or the
# end of the run's last wait), a new run began, or a person took or closed the incident. A
# new run that waits again says so in an event of its own.
_AFTER_DEFERRAL = (_AFTER_EXHAUSTION - {EventKind.ESCALATION_DEFERRED}) | {
    EventKind.ESCALATION_EXHAUSTED}


@frozen(slots=True)
class Hold:
    """A low-urgency escalation waiting for its team's working hours, and what waits: the
    run's first page (`start`: a new incident, or a run started over), a step that came due
    outside them (`step`, with its `number` and `cycle`: 0 the first pass through the
    policy, 1 its first repeat...) or the end of the run's last wait (`end`, its exhaustion)."""

    since: datetime  # when it began to wait
    until: datetime  # the hours' start, in UTC
    held: str  # start, step or end
    step: int | None = None  # the held step's number, 1 for the policy's first
    cycle: int | None = None


def deferred(incident: Incident, timeline: Sequence[TimelineEvent]) -> Hold | None:
    """The wait for working hours that still stands (its `escalation_deferred` event): the
    incident is triggered, and nothing since fired what it held, started escalation over
    or took the incident. None otherwise: the API's `escalation.deferred_until` and the
    incident's web page read it."""
    if incident.state is not IncidentState.TRIGGERED:
        return None
    for event in reversed(timeline):
        if event.kind is EventKind.ESCALATION_DEFERRED:
            return _hold(event)
        if event.kind in _AFTER_DEFERRAL or (
                event.kind is EventKind.SEVERITY_CHANGED and event.detail.get("raised")):
            return None
    return None


def _hold(event: TimelineEvent) -> Hold:
    d = event.detail
    until = datetime.fromisoformat(str(d["until"])).astimezone(UTC)
    held = str(d.get("held", "start"))  # a run's first page holds no key
    number, cycle = d.get("number"), d.get("cycle")
    return Hold(event.at, until, held,
                None if number is None or held != "step" else int(number),
                None if cycle is None or held == "start" else int(cycle))


def _ack_step(steps: Sequence[StepFired], at: datetime) -> str | None:
    before = [s for s in steps if s.at <= at]
    return before[-1].name if before else None


def _responders(timeline: Sequence[TimelineEvent]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for event in timeline:
        if event.actor not in SYSTEM_ACTORS:
            seen.setdefault(event.actor)
    return tuple(seen)
