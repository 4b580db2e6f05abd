"""The escalation engine: who gets paged for an incident, when, and what people's actions do.

Pure functions of (escalation state, incident, now) that return a Plan: the new state, the
deadlines to arm and cancel, the incident's state transition, timeline events and pages. The
responder applies a Plan to the store in one transaction; nothing here does I/O or reads a
clock, so a 30-minute policy is tested in milliseconds by calling on_deadline at each due time.

Each incident carries a snapshot of its policy, taken when it opened, so a config reload never
changes an escalation mid-flight. People and schedules are seen through the `Directory`
protocol at the moment a step fires, so an on-call handoff or an edited contact takes effect.
Every deadline key names its run and cycle, so a deadline left over from an earlier run (after
an acknowledgement, a snooze or a re-escalation) is recognised as stale and does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, Protocol

import msgspec

from receiver.core.errors import InvalidTransition
from receiver.core.model import (
    EventKind,
    Incident,
    IncidentState,
    MessageReason,
    Severity,
    TimelineEvent,
)

# -- policies and the people they reach -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contact:
    """One way to reach a person; `delay` counts from the page, so SMS can follow a push."""

    url: str = field(repr=False)  # an Apprise URL carries credentials
    delay: timedelta = timedelta(0)
    short: bool = False

    def __post_init__(self) -> None:
        if self.delay < timedelta(0):
            raise ValueError(f"a contact's delay cannot be negative, got {self.delay}")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class Channel:
    """A broadcast destination that is not a person: every URL gets every page."""

    name: str
    urls: tuple[str, ...] = field(repr=False)


class TargetKind(StrEnum):
    SCHEDULE = "schedule"
    USER = "user"
    CHANNEL = "channel"


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    name: str
    layer: str = "primary"  # only for schedules


class StepMode(StrEnum):
    ALL = "all"
    ROUND_ROBIN = "round_robin"


@dataclass(frozen=True, slots=True)
class Step:
    """Page `targets` `delay` after the cycle starts (or after the previous step fired)."""

    delay: timedelta
    targets: tuple[Target, ...]
    mode: StepMode = StepMode.ALL
    relative_to_previous: bool = False
    severities: frozenset[str] | None = None  # None: every severity

    def __post_init__(self) -> None:
        if self.delay < timedelta(0):
            raise ValueError(f"a step's delay cannot be negative, got {self.delay}")
        if not self.targets:
            raise ValueError("a step needs at least one target to notify")

    def applies_to(self, severity: str) -> bool:
        return self.severities is None or severity in self.severities


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    steps: tuple[Step, ...]
    repeat: int = 0  # run the steps this many more times while nobody acknowledges
    repeat_after: timedelta = timedelta(minutes=15)
    reack_after: timedelta | None = None  # an acknowledged incident left alone this long

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"policy {self.name!r} needs at least one step")
        if self.repeat < 0:
            raise ValueError(f"policy {self.name!r}: repeat cannot be negative")
        if self.repeat_after < timedelta(0):
            raise ValueError(f"policy {self.name!r}: repeat_after cannot be negative")
        if self.reack_after is not None and self.reack_after < timedelta(0):
            raise ValueError(f"policy {self.name!r}: reack_after cannot be negative")


# -- what the engine asks of the world --------------------------------------------------------


class WorkingHoursView(Protocol):
    def within(self, at: datetime) -> bool: ...

    def next_start(self, at: datetime) -> datetime: ...


class Directory(Protocol):
    """People, channels and schedules as the current config has them."""

    def user(self, name: str) -> User | None: ...

    def channel(self, name: str) -> Channel | None: ...

    def on_call(self, schedule: str, layer: str, at: datetime) -> str | None: ...

    def working_hours(self, team: str) -> WorkingHoursView | None: ...


# -- what the engine decides ------------------------------------------------------------------


class DeadlineKind(StrEnum):
    STEP = "step"  # the next escalation step is due
    CONTACT = "contact"  # a delayed contact (SMS after push) of a paged person is due
    WAKE = "wake"  # a deferred low-urgency incident's working hours began
    SNOOZE = "snooze"  # a snooze ended
    REACK = "reack"  # an acknowledged incident was left alone too long
    STALE = "stale"  # Alertmanager may have stopped reporting the alerts (see staleness.py)


@dataclass(frozen=True, slots=True)
class Deadline:
    """The store keeps one deadline per (incident, kind, key): arming it again moves it."""

    due: datetime
    kind: DeadlineKind
    key: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    """One message to one Apprise URL."""

    recipient: str
    recipient_kind: TargetKind
    url: str = field(repr=False)
    short: bool
    reason: MessageReason  # a page's: triggered, escalated, reminder or re_escalated
    step: int
    cycle: int
    run: int = 0  # so a late failure of an older run's page cannot move the current run
    contact: int = 0  # the index of `url` in the user's contacts or the channel's urls


class EscalationStatus(StrEnum):
    DEFERRED = "deferred"  # low urgency, waiting for working hours
    ACTIVE = "active"  # a STEP deadline is armed
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    EXHAUSTED = "exhausted"  # every step of every cycle fired and nobody acknowledged
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class EscalationState:
    """Where an incident's escalation stands; the pending STEP is (run, cycle, next_step)."""

    policy: Policy
    status: EscalationStatus
    run: int = 0  # a re-escalation (unack, snooze end, reack) starts a new run
    cycle: int = 0  # 0 is the first pass through the steps, then one per repeat
    next_step: int = 0
    cycle_started_at: datetime | None = None
    last_fired_at: datetime | None = None
    last_fired_step: int | None = None
    last_fired_cycle: int | None = None
    snoozed_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one decision changes; the store applies `cancel` before `arm`."""

    state: EscalationState
    arm: tuple[Deadline, ...] = ()
    cancel: tuple[DeadlineKind, ...] = ()
    incident_state: IncidentState | None = None
    events: tuple[TimelineEvent, ...] = ()
    pages: tuple[Page, ...] = ()
    rr_advance: tuple[tuple[str, int], ...] = ()


_PERSON_WAITS = (DeadlineKind.STEP, DeadlineKind.CONTACT, DeadlineKind.WAKE)
_ALL_KINDS = tuple(DeadlineKind)

# -- the incident opens -----------------------------------------------------------------------


def start(
    policy: Policy, incident: Incident, severity: Severity, directory: Directory, now: datetime
) -> Plan:
    """A new incident: arm its first step, or wait for working hours if it is low urgency.

    Start never pages by itself: even a step due at once is armed. The responder fires such a
    step inside the incident's own transaction, the timer loop any other.
    """
    _check_now(now)
    state = EscalationState(policy, EscalationStatus.ACTIVE)
    hours = directory.working_hours(incident.team)
    if severity.urgency == "low" and hours is not None and not hours.within(now):
        until = hours.next_start(now)
        deferred = replace(state, status=EscalationStatus.DEFERRED)
        detail = {"until": until.isoformat(), "severity": severity.name}
        event = TimelineEvent(now, EventKind.ESCALATION_DEFERRED, detail=detail)
        return Plan(deferred, arm=(Deadline(until, DeadlineKind.WAKE),), events=(event,))
    return _begin_cycle(state, severity.name, run=0, cycle=0, start_at=now, now=now)


# -- deadlines --------------------------------------------------------------------------------


def on_deadline(
    state: EscalationState,
    incident: Incident,
    severity: Severity,
    deadline: Deadline,
    directory: Directory,
    cursors: Mapping[tuple[str, int], int],
    now: datetime,
) -> Plan:
    """A deadline came due. One that no longer matches the state is stale and changes nothing."""
    _check_now(now)
    kind = deadline.kind
    if kind is DeadlineKind.STEP:
        return _fire_step(state, severity.name, deadline.key, directory, cursors, now)
    if kind is DeadlineKind.CONTACT:
        return _fire_contact(state, incident, severity.name, deadline.key, directory, now)
    if kind is DeadlineKind.WAKE:
        if state.status is not EscalationStatus.DEFERRED:
            return Plan(state)
        return _begin_cycle(state, severity.name, run=state.run, cycle=0, start_at=now, now=now)
    if kind is DeadlineKind.SNOOZE:
        return _snooze_ended(state, severity.name, now)
    if kind is DeadlineKind.STALE:
        return Plan(state)  # not escalation's to decide: the responder asks staleness
    return _reack(state, incident, severity.name, now)


def _fire_step(
    state: EscalationState,
    severity: str,
    key: str,
    directory: Directory,
    cursors: Mapping[tuple[str, int], int],
    now: datetime,
) -> Plan:
    current = _step_key(state.run, state.cycle, state.next_step)
    if state.status is not EscalationStatus.ACTIVE or key != current:
        return Plan(state)
    index = state.next_step
    targets, rr_advance = _chosen_targets(state.policy, index, cursors)
    recipients, unresolved = _reach(targets, directory, now)
    reason = _reason(state.policy, severity, state.run, state.cycle, index)
    pages, contacts = _page(recipients, state, index, reason, now)
    fired = TimelineEvent(
        now,
        EventKind.STEP_FIRED,
        detail={
            "step": index,
            "number": index + 1,
            "cycle": state.cycle,
            "run": state.run,
            "reason": reason,
            "recipients": [r.name for r in recipients],
            "unresolved": unresolved,
        },
    )
    after = replace(state, last_fired_at=now, last_fired_step=index, last_fired_cycle=state.cycle)
    # A step that reached nobody must not leave the incident waiting on nobody.
    then = _advance(after, severity, at_once=not recipients, now=now)
    return replace(
        then,
        arm=contacts + then.arm,
        events=(fired, *then.events),
        pages=pages,
        rr_advance=rr_advance,
    )


def _advance(state: EscalationState, severity: str, at_once: bool, now: datetime) -> Plan:
    """Arm whatever follows the step that just fired: the next step, a new cycle, or nothing."""
    policy = state.policy
    following = _next_applicable(policy, severity, after=state.next_step)
    if following is not None:
        step = policy.steps[following]
        base = now if step.relative_to_previous else (state.cycle_started_at or now)
        due = now if at_once else max(base + step.delay, now)
        key = _step_key(state.run, state.cycle, following)
        armed = Deadline(due, DeadlineKind.STEP, key)
        return Plan(replace(state, next_step=following), arm=(armed,))
    if state.cycle < policy.repeat:
        start_at = now if at_once else now + policy.repeat_after
        return _begin_cycle(state, severity, state.run, state.cycle + 1, start_at, now)
    return _exhausted(state, now, "every step fired and nobody acknowledged")


def _begin_cycle(
    state: EscalationState, severity: str, run: int, cycle: int, start_at: datetime, now: datetime
) -> Plan:
    """Arm the first step that applies to this severity; delays count from `start_at`."""
    first = _next_applicable(state.policy, severity, after=-1)
    # One replace: each copies the whole state, on every incident a storm opens.
    next_step = state.next_step if first is None else first
    begun = replace(state, status=EscalationStatus.ACTIVE, run=run, cycle=cycle,
                    cycle_started_at=start_at, next_step=next_step)
    if first is None:
        return _exhausted(begun, now, f"no step applies to severity {severity}")
    due = max(start_at + state.policy.steps[first].delay, now)
    armed = Deadline(due, DeadlineKind.STEP, _step_key(run, cycle, first))
    return Plan(begun, arm=(armed,))


def _exhausted(state: EscalationState, now: datetime, why: str) -> Plan:
    detail = {"run": state.run, "cycle": state.cycle, "why": why}
    event = TimelineEvent(now, EventKind.ESCALATION_EXHAUSTED, detail=detail)
    return Plan(replace(state, status=EscalationStatus.EXHAUSTED), events=(event,))


def _fire_contact(
    state: EscalationState,
    incident: Incident,
    severity: str,
    key: str,
    directory: Directory,
    now: datetime,
) -> Plan:
    run, cycle, index, name, contact_index = _parse_contact_key(key)
    waiting = state.status in (EscalationStatus.ACTIVE, EscalationStatus.EXHAUSTED)
    if run != state.run or not waiting or incident.state is not IncidentState.TRIGGERED:
        return Plan(state)
    user = directory.user(name)
    if user is None or contact_index >= len(user.contacts):
        # The config was reloaded since the step fired and this contact is gone: say so.
        detail = {"recipient": name, "recipient_kind": str(TargetKind.USER), "step": index,
                  "error": f"user {name} no longer has contact {contact_index + 1}"}
        return Plan(state, events=(TimelineEvent(now, EventKind.NOTIFICATION_FAILED,
                                                 detail=detail),))
    contact = user.contacts[contact_index]
    reason = _reason(state.policy, severity, run, cycle, index)
    page = Page(name, TargetKind.USER, contact.url, contact.short, reason, index, cycle, run,
                contact_index)
    return Plan(state, pages=(page,))


def _snooze_ended(state: EscalationState, severity: str, now: datetime) -> Plan:
    if state.status is not EscalationStatus.SNOOZED:
        return Plan(state)
    detail = {"until": state.snoozed_until.isoformat() if state.snoozed_until else None}
    event = TimelineEvent(now, EventKind.SNOOZE_ENDED, detail=detail)
    return _re_escalate(replace(state, snoozed_until=None), severity, event, now)


def _reack(state: EscalationState, incident: Incident, severity: str, now: datetime) -> Plan:
    after = state.policy.reack_after
    acknowledged = incident.state is IncidentState.ACKNOWLEDGED
    if state.status is not EscalationStatus.ACKNOWLEDGED or not acknowledged or after is None:
        return Plan(state)
    event = TimelineEvent(now, EventKind.RE_ESCALATED, detail={"after": after.total_seconds()})
    return _re_escalate(state, severity, event, now)


def _re_escalate(
    state: EscalationState, severity: str, event: TimelineEvent, now: datetime
) -> Plan:
    """Back to TRIGGERED with a new run from the first step: its pages say re_escalated."""
    plan = _begin_cycle(state, severity, state.run + 1, 0, now, now)
    return replace(plan, incident_state=IncidentState.TRIGGERED, events=(event, *plan.events))


# -- resolving targets to pages ---------------------------------------------------------------


def _chosen_targets(
    policy: Policy, index: int, cursors: Mapping[tuple[str, int], int]
) -> tuple[tuple[Target, ...], tuple[tuple[str, int], ...]]:
    step = policy.steps[index]
    if step.mode is not StepMode.ROUND_ROBIN:
        return step.targets, ()
    key = (policy.name, index)
    return (step.targets[cursors.get(key, 0) % len(step.targets)],), (key,)


def _reach(
    targets: Sequence[Target], directory: Directory, now: datetime
) -> tuple[list[User | Channel], list[str]]:
    """Who the targets name right now, each once, and a description of every dead end."""
    recipients: dict[tuple[bool, str], User | Channel] = {}
    unresolved: list[str] = []
    for target in targets:
        found = _reach_one(target, directory, now)
        if isinstance(found, str):
            unresolved.append(found)
        else:
            recipients.setdefault((isinstance(found, Channel), found.name), found)
    return list(recipients.values()), unresolved


def _reach_one(target: Target, directory: Directory, now: datetime) -> User | Channel | str:
    if target.kind == TargetKind.CHANNEL:
        channel = directory.channel(target.name)
        if channel is None:
            return f"unknown channel {target.name}"
        return channel if channel.urls else f"channel {target.name} has no urls"
    name = target.name
    if target.kind == TargetKind.SCHEDULE:
        on_call = directory.on_call(target.name, target.layer, now)
        if on_call is None:
            return f"schedule {target.name} layer {target.layer}: nobody on call"
        name = on_call
    user = directory.user(name)
    if user is None:
        return f"unknown user {name}"
    return user if user.contacts else f"user {name} has no contacts"


def _page(
    recipients: Sequence[User | Channel],
    state: EscalationState,
    index: int,
    reason: MessageReason,
    now: datetime,
) -> tuple[tuple[Page, ...], tuple[Deadline, ...]]:
    """Pages for now, and CONTACT deadlines for each person's delayed contacts."""
    pages: list[Page] = []
    later: list[Deadline] = []
    for who in recipients:
        if isinstance(who, Channel):
            pages.extend(
                Page(who.name, TargetKind.CHANNEL, url, False, reason, index, state.cycle,
                     state.run, i)
                for i, url in enumerate(who.urls)
            )
            continue
        for i, contact in enumerate(who.contacts):
            if contact.delay > timedelta(0):
                key = _contact_key(state.run, state.cycle, index, who.name, i)
                later.append(Deadline(now + contact.delay, DeadlineKind.CONTACT, key))
            else:
                pages.append(Page(who.name, TargetKind.USER, contact.url, contact.short,
                                  reason, index, state.cycle, state.run, i))
    return tuple(pages), tuple(later)


def _reason(policy: Policy, severity: str, run: int, cycle: int, index: int) -> MessageReason:
    if run > 0:
        return MessageReason.RE_ESCALATED
    if cycle > 0:
        return MessageReason.REMINDER
    # The first step this incident's severity reaches is its first page, even if it is not 0.
    if index == _next_applicable(policy, severity, after=-1):
        return MessageReason.TRIGGERED
    return MessageReason.ESCALATED


def _next_applicable(policy: Policy, severity: str, after: int) -> int | None:
    for index in range(after + 1, len(policy.steps)):
        if policy.steps[index].applies_to(severity):
            return index
    return None


# -- people act -------------------------------------------------------------------------------


def acknowledge(
    state: EscalationState, incident: Incident, actor: str, now: datetime
) -> Plan:
    """Someone took it: stop every pending page, and watch that it is not left alone."""
    _check_now(now)
    if incident.state is not IncidentState.TRIGGERED or _is_resolved(state):
        raise InvalidTransition(f"cannot acknowledge: {_where(incident)}")
    arm: tuple[Deadline, ...] = ()
    if state.policy.reack_after is not None:
        arm = (Deadline(now + state.policy.reack_after, DeadlineKind.REACK),)
    return Plan(
        replace(state, status=EscalationStatus.ACKNOWLEDGED),
        arm=arm,
        cancel=_PERSON_WAITS,
        incident_state=IncidentState.ACKNOWLEDGED,
        events=(TimelineEvent(now, EventKind.ACKNOWLEDGED, actor),),
    )


def unacknowledge(
    state: EscalationState, incident: Incident, actor: str, now: datetime
) -> Plan:
    """The acknowledger hands it back: escalate again from the first step, in a new run."""
    _check_now(now)
    if incident.state is not IncidentState.ACKNOWLEDGED or _is_resolved(state):
        raise InvalidTransition(f"cannot unacknowledge: {_where(incident)}")
    event = TimelineEvent(now, EventKind.UNACKNOWLEDGED, actor)
    plan = _re_escalate(replace(state, snoozed_until=None), incident.severity, event, now)
    return replace(plan, cancel=(DeadlineKind.REACK, DeadlineKind.SNOOZE))


def snooze(
    state: EscalationState, incident: Incident, actor: str, until: datetime, now: datetime
) -> Plan:
    """Quiet until `until`, then escalate again; snoozing counts as a person responding."""
    _check_now(now)
    if not incident.is_open or _is_resolved(state):
        raise InvalidTransition(f"cannot snooze: {_where(incident)}")
    if until <= now:
        raise InvalidTransition(
            f"cannot snooze incident #{incident.id} until {until.isoformat()}: that is not"
            f" after now ({now.isoformat()})"
        )
    return Plan(
        replace(state, status=EscalationStatus.SNOOZED, snoozed_until=until),
        arm=(Deadline(until, DeadlineKind.SNOOZE),),
        cancel=(*_PERSON_WAITS, DeadlineKind.REACK),
        incident_state=IncidentState.ACKNOWLEDGED,
        events=(TimelineEvent(now, EventKind.SNOOZED, actor, {"until": until.isoformat()}),),
    )


def resolve(state: EscalationState, incident: Incident, actor: str, now: datetime) -> Plan:
    _check_now(now)
    if not incident.is_open or _is_resolved(state):
        raise InvalidTransition(f"cannot resolve: {_where(incident)}")
    return Plan(
        replace(state, status=EscalationStatus.RESOLVED, snoozed_until=None),
        cancel=_ALL_KINDS,
        incident_state=IncidentState.RESOLVED,
        events=(TimelineEvent(now, EventKind.RESOLVED, actor),),
    )


def moves_on_update(incident: Incident) -> bool:
    """Whether `on_update` can change anything for this incident: only an acknowledged one has
    a reack to push (its escalation is then acknowledged or snoozed). The caller skips reading
    the escalation state of every other incident that alerts join, the storm's usual case."""
    return incident.state is IncidentState.ACKNOWLEDGED


def on_update(state: EscalationState, incident: Incident, now: datetime) -> Plan:
    """New alerts joined: an acknowledged incident is not "left alone", so push its reack."""
    _check_now(now)
    after = state.policy.reack_after
    if state.status is not EscalationStatus.ACKNOWLEDGED or after is None:
        return Plan(state)
    return Plan(state, arm=(Deadline(now + after, DeadlineKind.REACK),))


def delivery_failed(
    state: EscalationState, incident: Incident, step: int, cycle: int, run: int, now: datetime
) -> Plan:
    """Nobody paged by the step that just fired can be reached: escalate now, not later."""
    _check_now(now)
    fired = (run, cycle, step) == (state.run, state.last_fired_cycle, state.last_fired_step)
    if state.status is not EscalationStatus.ACTIVE or not fired:
        return Plan(state)
    moved = state
    if state.cycle != state.last_fired_cycle:
        # The pending step opens the next cycle: its later steps count from when it really starts.
        moved = replace(state, cycle_started_at=now)
    key = _step_key(state.run, state.cycle, state.next_step)
    detail = {"escalating_early": True, "step": step, "cycle": cycle, "run": run,
              "next_step": state.next_step}
    return Plan(
        moved,
        arm=(Deadline(now, DeadlineKind.STEP, key),),
        events=(TimelineEvent(now, EventKind.NOTIFICATION_FAILED, detail=detail),),
    )


def _is_resolved(state: EscalationState) -> bool:
    return state.status is EscalationStatus.RESOLVED


def _where(incident: Incident) -> str:
    """The incident's state and who put it there, for a person told their action failed."""
    name = f"incident #{incident.id}"
    if incident.state is IncidentState.RESOLVED:
        return f"{name} is already resolved (by {incident.resolved_by or 'unknown'})"
    if incident.state is IncidentState.ACKNOWLEDGED:
        return f"{name} is already acknowledged (by {incident.acknowledged_by or 'unknown'})"
    return f"{name} is triggered and not acknowledged"


def _check_now(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got naive {now.isoformat()}")


# -- deadline keys ----------------------------------------------------------------------------


def _step_key(run: int, cycle: int, index: int) -> str:
    return f"{run}:{cycle}:{index}"


def _contact_key(run: int, cycle: int, index: int, user: str, contact_index: int) -> str:
    return f"{run}:{cycle}:{index}:{user}:{contact_index}"


def _parse_contact_key(key: str) -> tuple[int, int, int, str, int]:
    try:
        run, cycle, index, rest = key.split(":", 3)
        user, contact_index = rest.rsplit(":", 1)
        return int(run), int(cycle), int(index), user, int(contact_index)
    except ValueError as exc:
        raise ValueError(
            f"contact deadline key {key!r} is not RUN:CYCLE:STEP:USER:CONTACT"
        ) from exc


# -- persistence ------------------------------------------------------------------------------

_STATE_VERSION = 1


def state_to_dict(state: EscalationState) -> dict[str, Any]:
    """A JSON-ready form: timedeltas as seconds, datetimes as ISO 8601, the policy inside."""
    return {
        "version": _STATE_VERSION,
        "policy": _policy_to_dict(state.policy),
        "status": state.status.value,
        "run": state.run,
        "cycle": state.cycle,
        "next_step": state.next_step,
        "cycle_started_at": _iso(state.cycle_started_at),
        "last_fired_at": _iso(state.last_fired_at),
        "last_fired_step": state.last_fired_step,
        "last_fired_cycle": state.last_fired_cycle,
        "snoozed_until": _iso(state.snoozed_until),
    }


def state_from_dict(data: Mapping[str, Any]) -> EscalationState:
    """Inverse of state_to_dict; a damaged record raises ValueError saying what is wrong."""
    try:
        if data["version"] != _STATE_VERSION:
            raise ValueError(f"unsupported version {data['version']!r}")
        return EscalationState(
            policy=_policy_from_dict(data["policy"]),
            status=EscalationStatus(data["status"]),
            run=int(data["run"]),
            cycle=int(data["cycle"]),
            next_step=int(data["next_step"]),
            cycle_started_at=_from_iso(data["cycle_started_at"]),
            last_fired_at=_from_iso(data["last_fired_at"]),
            last_fired_step=_optional_int(data["last_fired_step"]),
            last_fired_cycle=_optional_int(data["last_fired_cycle"]),
            snoozed_until=_from_iso(data["snoozed_until"]),
        )
    except KeyError as exc:
        raise ValueError(f"stored escalation state lacks the key {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"stored escalation state is malformed: {exc}") from exc


def _policy_to_dict(policy: Policy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "steps": [
            {
                "delay": s.delay.total_seconds(),
                "targets": [{"kind": t.kind.value, "name": t.name, "layer": t.layer}
                            for t in s.targets],
                "mode": s.mode.value,
                "relative_to_previous": s.relative_to_previous,
                "severities": sorted(s.severities) if s.severities is not None else None,
            }
            for s in policy.steps
        ],
        "repeat": policy.repeat,
        "repeat_after": policy.repeat_after.total_seconds(),
        "reack_after": _seconds(policy.reack_after),
    }


def _policy_from_dict(data: Mapping[str, Any]) -> Policy:
    # Every incident carries its policy snapshot, and every fire or change decodes it: the
    # same few policies over and over, so they are built once per distinct text.
    return _policy_from_text(msgspec.json.encode(data, order="sorted"))


@lru_cache(maxsize=256)
def _policy_from_text(text: bytes) -> Policy:
    data = msgspec.json.decode(text)
    reack = data["reack_after"]
    return Policy(
        name=str(data["name"]),
        steps=tuple(_step_from_dict(s) for s in data["steps"]),
        repeat=int(data["repeat"]),
        repeat_after=timedelta(seconds=data["repeat_after"]),
        reack_after=timedelta(seconds=reack) if reack is not None else None,
    )


def _step_from_dict(data: Mapping[str, Any]) -> Step:
    severities = data["severities"]
    return Step(
        delay=timedelta(seconds=data["delay"]),
        targets=tuple(
            Target(TargetKind(t["kind"]), str(t["name"]), str(t["layer"]))
            for t in data["targets"]
        ),
        mode=StepMode(data["mode"]),
        relative_to_previous=bool(data["relative_to_previous"]),
        severities=frozenset(severities) if severities is not None else None,
    )


def _seconds(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no UTC offset")
    return parsed


def _optional_int(value: Any) -> int | None:
    return int(value) if value is not None else None
