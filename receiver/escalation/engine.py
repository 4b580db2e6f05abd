"""The escalation engine: who gets paged for an incident, when, and what people's actions do.

Pure functions of (escalation state, incident, now) that return a Plan: the new state, the
deadlines to arm and cancel, the incident's state transition, timeline events and pages. The
responder applies a Plan to the store in one transaction; nothing here does I/O or reads a
clock, so a 30-minute policy is tested in milliseconds by calling on_deadline at each due time.

Each incident carries a snapshot of its policy, taken when it opened, so a config reload never
changes an escalation mid-flight. People and schedules are seen through the `Directory`
protocol at the moment a step fires, so an on-call handoff or an edited contact takes effect;
a team's own schedule or lead that a reload removed is read through the team as it is now
(targets.rebind).
Every deadline key names its run and cycle, so a deadline left over from an earlier run (after
an acknowledgement, a snooze or a re-escalation) is recognised as stale and does nothing.

The last step of the last cycle (the policy's repeats included) is followed by one more STEP
deadline, the end of its wait (`keys.end_key`, `repeat_after` after it fired, as long as the
policy would wait before a repeat): still unacknowledged then, the escalation is exhausted
(`escalation_exhausted` on the timeline; the responder logs, counts and tells the severity's
stakeholders). It is a STEP deadline so that everything that stops or restarts the steps (an
acknowledgement, a snooze, a new run, a maintenance window's hold) stops it too.

A low-urgency run pages only within its team's working hours: it begins waiting for them
(`deferred_until`), and any later STEP deadline of it (a step, a repeat, the end of the last
step's wait) that comes due outside them is held (`_hold`) until their next start, where it
fires and the steps after it keep their spacing from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from receiver.core.errors import InvalidTransition
from receiver.core.frozen import replace
from receiver.core.model import (
    EventKind,
    Incident,
    IncidentState,
    MessageReason,
    Severity,
    TimelineEvent,
)
from receiver.escalation.keys import end_key, find_contact, parse_contact_key, step_key
from receiver.escalation.plan import (
    Deadline,
    DeadlineKind,
    EscalationState,
    EscalationStatus,
    Page,
    PageFate,
    Plan,
    RunCause,
)
from receiver.escalation.policy import (
    Channel,
    Directory,
    Policy,
    TargetKind,
    WorkingHoursView,
    ahead_people,
    own_policy,
)
from receiver.escalation.targets import (
    chosen_targets,
    next_applicable,
    page_reason,
    pages_for,
    reach,
)

# -- what the engine decides ------------------------------------------------------------------


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
    return _new_run(state, severity, directory.working_hours(incident.team), 0, now)


def deferred_until(
    severity: Severity, hours: WorkingHoursView | None, now: datetime
) -> datetime | None:
    """When a run of escalation that begins at `now` may first page: None for at once, else
    the next start of the team's working hours. Low-urgency severities wait for them: a new
    incident, and every run that starts escalation over (a reack, a snooze's end, an unack,
    a maintenance window's end, a reassignment, a raised severity that is still low); and
    within a run, each step that comes due (`_hold`)."""
    if severity.urgency != "low" or hours is None or hours.within(now):
        return None
    return hours.next_start(now)


def _new_run(
    state: EscalationState, severity: Severity, hours: WorkingHoursView | None, run: int,
    now: datetime, any_hour: bool = False,
) -> Plan:
    """Run `run` of escalation begins: its first step now, or a wait for working hours (the
    WAKE deadline begins the run's first cycle then). `any_hour`: it never waits for them."""
    if run != state.run:
        state = replace(state, turns=())  # a new run takes new round-robin turns
    if any_hour != state.any_hour:
        state = replace(state, any_hour=any_hour)
    until = None if any_hour else deferred_until(severity, hours, now)
    if until is None:
        return _begin_cycle(state, severity.name, run, cycle=0, start_at=now, now=now)
    deferred = replace(state, status=EscalationStatus.DEFERRED, run=run, cycle=0)
    detail = {"until": until.isoformat(), "severity": severity.name}
    event = TimelineEvent(now, EventKind.ESCALATION_DEFERRED, detail=detail)
    return Plan(deferred, arm=(Deadline(until, DeadlineKind.WAKE),), events=(event,))


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
        return _fire_step(state, severity, incident.team, deadline.key, directory, cursors, now)
    if kind is DeadlineKind.CONTACT:
        return _fire_contact(state, incident, severity.name, deadline.key, directory, now)
    if kind is DeadlineKind.WAKE:
        return _wake(state, severity, incident.team, deadline.key, directory, cursors, now)
    hours = directory.working_hours(incident.team)
    if kind is DeadlineKind.SNOOZE:
        return _snooze_ended(state, severity, hours, now)
    if kind in (DeadlineKind.STALE, DeadlineKind.CADENCE, DeadlineKind.FOLLOW):
        return Plan(state)  # not escalation's to decide (staleness, the incident layer)
    return _reack(state, incident, severity, hours, now)


def _wake(
    state: EscalationState,
    severity: Severity,
    team: str,
    key: str,
    directory: Directory,
    cursors: Mapping[tuple[str, int], int],
    now: datetime,
) -> Plan:
    """Working hours began for a deferred low-urgency run: a run that waited to begin (no
    key) begins its first cycle; a held STEP deadline (its key) fires now."""
    if state.status is not EscalationStatus.DEFERRED:
        return Plan(state)
    if not key:
        return _begin_cycle(state, severity.name, run=state.run, cycle=0, start_at=now, now=now)
    if key != pending_key(state):
        return Plan(state)
    active = replace(state, status=EscalationStatus.ACTIVE)
    return _fire_step(active, severity, team, key, directory, cursors, now)


def _fire_step(
    state: EscalationState,
    severity: Severity,
    team: str,
    key: str,
    directory: Directory,
    cursors: Mapping[tuple[str, int], int],
    now: datetime,
) -> Plan:
    if state.status is not EscalationStatus.ACTIVE or key != pending_key(state):
        return Plan(state)
    index, name = state.next_step, severity.name
    last = index == len(state.policy.steps)  # the last step's wait ended: nobody acknowledged
    if not last and not state.policy.steps[index].applies_to(name):
        return _skip_step(state, name, index, now)
    if severity.urgency == "low" and not state.any_hour:  # only then are the hours read
        until = deferred_until(severity, directory.working_hours(team), now)
        if until is not None:
            return _hold(state, severity, key, until, now)
    if last:
        return _exhausted(state, now, "every step fired and nobody acknowledged")
    targets, round_robin_turns, turn = chosen_targets(state.policy, index, cursors, state.turns)
    recipients, unresolved, rebound = reach(targets, directory, now)
    reason = page_reason(state.policy, name, state.run, state.cycle, index, state.cause)
    knows, why = _knows(state)
    paged = [r for r in recipients if r.name != knows or isinstance(r, Channel)]
    pages, contacts = pages_for(paged, state, index, reason, now)
    detail = {
        "step": index,
        "number": index + 1,
        "cycle": state.cycle,
        "run": state.run,
        "reason": reason,
        "recipients": [r.name for r in paged],
        "unresolved": unresolved,
    }
    if len(paged) < len(recipients):  # reached, and knows already: see _knows
        detail["not_paged"] = {"user": knows, "why": why}
    if state.policy.ahead:  # a reassignment's run: the reports tell its person from the policy
        detail["ahead"] = state.policy.ahead
    if rebound:  # reached through the team: a reload removed the schedule or lead bound
        detail["rebound"] = rebound
    fired = TimelineEvent(now, EventKind.STEP_FIRED, detail=detail)
    after = replace(state, last_fired_at=now, last_fired_step=index, last_fired_cycle=state.cycle)
    if round_robin_turns and recipients and turn is not None:  # one that reached nobody: not kept
        after = replace(after, turns=(*after.turns, (index, turn)))
    # A step that reached nobody must not leave the incident waiting on nobody.
    then = _advance(after, name, at_once=not recipients, now=now)
    return replace(
        then,
        arm=contacts + then.arm,
        events=(fired, *then.events),
        pages=pages,
        round_robin_turns=round_robin_turns,
    )


def _knows(state: EscalationState) -> tuple[str | None, str]:
    """The person this step need not page, and why, as `not_paged` says it ("ana, who WHY,
    was not paged"): whoever began the run by their own hand knows of it. That is who raised
    the severity, who reassigned it to a team (the new team's on-call, or its lead, may be
    them), and who un-acknowledged it (`unacked_by`, "not me, not handled"; an assignee
    handing it back is not: their run is the team's own policy, as for anyone). Who
    reassigned it to another person is paged by the policy behind that person, which
    follows only if that person did not answer: news to them. A self-added responder and a
    take page nobody for their actor either. Only in the run's
    first cycle: a repeat reminds everyone the steps reach that nobody has acknowledged yet,
    them too. A step that reaches only them is no step that reached nobody: what follows it
    keeps its own time (they were told, by their own hand)."""
    if state.cycle:
        return None, ""
    cause = state.cause
    if cause is not None and cause.reason is MessageReason.SEVERITY_RAISED:
        return cause.actor, "raised the severity"
    if cause is not None and cause.reason is MessageReason.REASSIGNED and not state.policy.ahead:
        return cause.actor, "reassigned it"
    if state.unacked_by:
        return state.unacked_by, "un-acknowledged it"
    return None, ""


def _hold(
    state: EscalationState, severity: Severity, key: str, until: datetime, now: datetime
) -> Plan:
    """A STEP deadline of a low-urgency run came due outside the team's working hours: it
    waits for their next start (`until`, a WAKE deadline with its key), as a run's first
    step does. The cycle's start moves on by the wait, so the steps after the held one keep
    their spacing from it: one page at the hours' start, not every step missed overnight."""
    index = state.next_step
    start = state.cycle_started_at
    held = replace(state, status=EscalationStatus.DEFERRED,
                   cycle_started_at=None if start is None else start + (until - now))
    detail: dict[str, object] = {"until": until.isoformat(), "severity": severity.name,
                                 "run": state.run, "cycle": state.cycle}
    if index == len(state.policy.steps):
        detail["held"] = "end"  # the end of the last step's wait: its exhaustion
    else:
        detail.update(held="step", step=index, number=index + 1)
    event = TimelineEvent(now, EventKind.ESCALATION_DEFERRED, detail=detail)
    return Plan(held, arm=(Deadline(until, DeadlineKind.WAKE, key),), events=(event,))


def _skip_step(state: EscalationState, severity: str, index: int, now: datetime) -> Plan:
    """The step came due for severities the incident no longer has (lowered since the step
    was armed): it pages nobody, and what follows is timed as if next_applicable had skipped
    it when it was armed, from the step of this cycle that fired last (or the cycle's start)."""
    step = state.policy.steps[index]
    detail = {"step": index, "number": index + 1, "cycle": state.cycle, "run": state.run,
              "severity": severity, "severities": sorted(step.severities or ())}
    skipped = TimelineEvent(now, EventKind.STEP_SKIPPED, detail=detail)
    start, last = state.cycle_started_at, state.last_fired_at
    since = last if last is not None and (start is None or last >= start) else start
    then = _advance(state, severity, at_once=False, now=now, since=since)
    return replace(then, events=(skipped, *then.events))


def _advance(state: EscalationState, severity: str, at_once: bool, now: datetime,
             since: datetime | None = None) -> Plan:
    """Arm whatever follows the step that just fired (at `since`, if not now): the next
    step, a new cycle, or the end of the last step's wait (`repeat_after`, as long as a
    repeat would wait; at once when the step reached nobody).

    A new cycle begins `repeat_after` after the last step even when that step reached
    nobody: a repeat reminds the people the earlier steps paged, who are still within their
    wait, and begun at once it reminded them early; with steps due at once it paged the
    same person once per repeat in the same second."""
    policy = state.policy
    fired_at = now if since is None else since
    following = next_applicable(policy, severity, after=state.next_step)
    if following is not None:
        step = policy.steps[following]
        base = fired_at if step.relative_to_previous else (state.cycle_started_at or now)
        due = now if at_once else max(base + step.delay, now)
        key = step_key(state.run, state.cycle, following)
        armed = Deadline(due, DeadlineKind.STEP, key)
        return Plan(replace(state, next_step=following), arm=(armed,))
    if state.cycle < policy.repeat:
        start_at = fired_at + policy.repeat_after
        return _begin_cycle(state, severity, state.run, state.cycle + 1, start_at, now)
    end = len(policy.steps)
    due = now if at_once else max(fired_at + policy.repeat_after, now)
    armed = Deadline(due, DeadlineKind.STEP, end_key(state.run, state.cycle))
    return Plan(replace(state, next_step=end), arm=(armed,))


def pending_key(state: EscalationState) -> str:
    """The key of the STEP deadline the state waits for: the next step's, or past the last
    step (`next_step` is then the number of steps) the end of its wait."""
    if state.next_step == len(state.policy.steps):
        return end_key(state.run, state.cycle)
    return step_key(state.run, state.cycle, state.next_step)


def _begin_cycle(
    state: EscalationState, severity: str, run: int, cycle: int, start_at: datetime, now: datetime
) -> Plan:
    """Arm the first step that applies to this severity; delays count from `start_at`."""
    first = next_applicable(state.policy, severity, after=-1)
    # One replace: each copies the whole state, on every incident a storm opens.
    next_step = state.next_step if first is None else first
    begun = replace(state, status=EscalationStatus.ACTIVE, run=run, cycle=cycle,
                    cycle_started_at=start_at, next_step=next_step)
    if first is None:
        return _exhausted(begun, now, f"no step applies to severity {severity}")
    due = max(start_at + state.policy.steps[first].delay, now)
    armed = Deadline(due, DeadlineKind.STEP, step_key(run, cycle, first))
    return Plan(begun, arm=(armed,))


def _exhausted(state: EscalationState, now: datetime, why: str) -> Plan:
    """Nothing is left to page: the escalation ran out with nobody acknowledging. The event
    says how far it went (the policy's own steps, the repeats run); the responder adds who
    this run paged."""
    policy = state.policy
    detail = {"run": state.run, "cycle": state.cycle, "why": why,
              "steps": len(policy.steps) - policy.ahead, "repeats": state.cycle}
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
    run, cycle, index, name, contact_index, digest = parse_contact_key(key)
    waiting = state.status in (EscalationStatus.ACTIVE, EscalationStatus.EXHAUSTED)
    if run != state.run or not waiting or incident.state is not IncidentState.TRIGGERED:
        return Plan(state)
    user = directory.user(name)
    found = None if user is None else find_contact(
        [c.url for c in user.contacts], contact_index, digest)
    if user is None or found is None:
        # The config was reloaded since the step fired and this contact is gone (not moved:
        # the digest of its URL finds it wherever it is now): say so.
        detail = {"recipient": name, "recipient_kind": str(TargetKind.USER), "step": index,
                  "error": f"user {name} no longer has contact {contact_index + 1}"}
        return Plan(state, events=(TimelineEvent(now, EventKind.NOTIFICATION_FAILED,
                                                 detail=detail),))
    contact = user.contacts[found]
    reason = page_reason(state.policy, severity, run, cycle, index, state.cause)
    cause = state.cause
    page = Page(recipient=name, recipient_kind=TargetKind.USER, url=contact.url,
                short=contact.short, reason=reason, step=index, cycle=cycle, run=run,
                contact=found, actor=cause.actor if cause else "",
                changed_to=cause.to if cause else "")
    return Plan(state, pages=(page,))


def _snooze_ended(
    state: EscalationState, severity: Severity, hours: WorkingHoursView | None, now: datetime
) -> Plan:
    if state.status is not EscalationStatus.SNOOZED:
        return Plan(state)
    detail = {"until": state.snoozed_until.isoformat() if state.snoozed_until else None}
    event = TimelineEvent(now, EventKind.SNOOZE_ENDED, detail=detail)
    return _re_escalate(replace(state, snoozed_until=None), severity, hours, event, now)


def _reack(
    state: EscalationState, incident: Incident, severity: Severity,
    hours: WorkingHoursView | None, now: datetime,
) -> Plan:
    after = state.policy.reack_after
    acknowledged = incident.state is IncidentState.ACKNOWLEDGED
    if state.status is not EscalationStatus.ACKNOWLEDGED or not acknowledged or after is None:
        return Plan(state)
    event = TimelineEvent(now, EventKind.RE_ESCALATED, detail={"after": after.total_seconds()})
    return _re_escalate(state, severity, hours, event, now)


def _re_escalate(
    state: EscalationState, severity: Severity, hours: WorkingHoursView | None,
    event: TimelineEvent, now: datetime, cause: RunCause | None = None, any_hour: bool = False,
    unacked_by: str = "",
) -> Plan:
    """Back to TRIGGERED with a new run from the first step (or waiting for working hours):
    its pages say re_escalated, or what a person changed (`cause`: a reassignment, a raised
    severity); `unacked_by`: who un-acknowledged it, whom its first cycle does not page."""
    begun = replace(state, cause=cause, unacked_by=unacked_by)
    plan = _new_run(begun, severity, hours, state.run + 1, now, any_hour)
    return replace(plan, incident_state=IncidentState.TRIGGERED, events=(event, *plan.events))


# -- people act -------------------------------------------------------------------------------


def _reack_watch(policy: Policy, now: datetime) -> tuple[Deadline, ...]:
    """The REACK deadline that watches an acknowledged incident is not left alone, if the
    policy has one."""
    if policy.reack_after is None:
        return ()
    return (Deadline(now + policy.reack_after, DeadlineKind.REACK),)


def acknowledge(
    state: EscalationState, incident: Incident, actor: str, now: datetime, *, via: str = ""
) -> Plan:
    """Someone took it: stop every pending page, and watch that it is not left alone. `via`
    (any of the people's actions): how the person acted when it was not their own token, such
    as "link" for a page's signed link; the event's detail says so, and `actor` stays the
    person, whom every name check (the cadence, the stale notice, a follow-up) looks for."""
    _check_now(now)
    if incident.state is not IncidentState.TRIGGERED or _is_resolved(state):
        raise InvalidTransition(f"cannot acknowledge: {_where(incident)}")
    return Plan(
        replace(state, status=EscalationStatus.ACKNOWLEDGED),
        arm=_reack_watch(state.policy, now),
        cancel=_PERSON_WAITS,
        incident_state=IncidentState.ACKNOWLEDGED,
        events=(TimelineEvent(now, EventKind.ACKNOWLEDGED, actor, _how(via)),),
    )


def unacknowledge(
    state: EscalationState, incident: Incident, actor: str, now: datetime, *,
    severity: Severity, hours: WorkingHoursView | None, via: str = "",
) -> Plan:
    """Someone hands it back: escalate again from the first step, in a new run (`severity`,
    the incident's, and its team's `hours` say whether it waits for them). Who handed it
    back said it is not handled: the run's first cycle does not page them (`unacked_by`,
    `_knows`), and a step that reached only them keeps the next step's time.

    The person the incident was reassigned to (or who took it) handing it back is giving it
    up: the new run is the team's own policy (`own_policy`), its first step at once, with
    nobody ahead of it, never them first ("handed_back_to" on the event names the policy).
    Anyone else handing it back (a lead giving it back to the assignee, say) leaves the run
    as it was: the assignee first, the policy behind them."""
    _check_now(now)
    if incident.state is not IncidentState.ACKNOWLEDGED or _is_resolved(state):
        raise InvalidTransition(f"cannot unacknowledge: {_where(incident)}")
    detail: dict[str, str] = _how(via)
    handed = replace(state, snoozed_until=None)
    unacked_by = actor
    if actor in ahead_people(state.policy):
        own = own_policy(state.policy)
        handed = replace(handed, policy=own, last_fired_step=None, last_fired_cycle=None)
        detail["handed_back_to"] = own.name
        unacked_by = ""  # the team's own policy, as it would page anyone
    event = TimelineEvent(now, EventKind.UNACKNOWLEDGED, actor, detail)
    plan = _re_escalate(handed, severity, hours, event, now, unacked_by=unacked_by)
    return replace(plan, cancel=(DeadlineKind.REACK, DeadlineKind.SNOOZE))


def restart(
    state: EscalationState, incident: Incident, severity: Severity, event: TimelineEvent,
    now: datetime, policy: Policy | None = None, cause: RunCause | None = None, *,
    hours: WorkingHoursView | None, any_hour: bool = False,
) -> Plan:
    """Escalation starts over in a new run, from the first step that applies to `severity`,
    under `policy` if given (a reassignment) or the one it had (a raised severity); its pages
    say `cause`. The incident is TRIGGERED again: whoever acknowledged it before answered
    another question. A low-urgency run outside the (new) team's `hours` waits for them,
    and holds a step that comes due outside them, unless `any_hour` (a person named by
    whoever reassigned: their choice, at any hour, and the policy behind them with it)."""
    _check_now(now)
    if not incident.is_open or _is_resolved(state):
        raise InvalidTransition(f"cannot restart escalation: {_where(incident)}")
    fresh = replace(state, policy=policy or state.policy, snoozed_until=None,
                    last_fired_step=None, last_fired_cycle=None)
    plan = _re_escalate(fresh, severity, hours, event, now, cause, any_hour)
    return replace(plan, cancel=(*_PERSON_WAITS, DeadlineKind.REACK, DeadlineKind.SNOOZE))


def take(
    state: EscalationState, incident: Incident, event: TimelineEvent, now: datetime,
    policy: Policy, actor: str, cause: RunCause | None = None,
) -> Plan:
    """`actor` reassigned the incident to themselves (`event`): a new run under `policy`
    that pages nobody, in their hands from its start. Taking an unacknowledged incident is
    acknowledging it, as "take it" means on a page: an `acknowledged` event after `event`,
    which MTTA counts as any first acknowledgement. One acknowledged already (by them or
    another, or snoozed) is theirs from now with no acknowledgement of its own: the person
    who first answered stays MTTA's. Either way its reack is due `reack_after` from now, and
    a run begun after it (a reack, an unack) pages under `policy`."""
    _check_now(now)
    if not incident.is_open or _is_resolved(state):
        raise InvalidTransition(f"cannot reassign: {_where(incident)}")
    taken = replace(state, policy=policy, status=EscalationStatus.ACKNOWLEDGED,
                    run=state.run + 1, cycle=0, next_step=0, cycle_started_at=now,
                    snoozed_until=None, last_fired_step=None, last_fired_cycle=None,
                    cause=cause, turns=(), any_hour=False, unacked_by="")
    events: tuple[TimelineEvent, ...] = (event,)
    if incident.state is IncidentState.TRIGGERED:
        events += (TimelineEvent(now, EventKind.ACKNOWLEDGED, actor),)
    return Plan(taken, arm=_reack_watch(policy, now),
                cancel=(*_PERSON_WAITS, DeadlineKind.REACK, DeadlineKind.SNOOZE),
                incident_state=IncidentState.ACKNOWLEDGED, events=events)


def snooze(
    state: EscalationState, incident: Incident, actor: str, until: datetime, now: datetime,
    *, via: str = "",
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
        events=(TimelineEvent(now, EventKind.SNOOZED, actor,
                              {"until": until.isoformat(), **_how(via)}),),
    )


def resolve(
    state: EscalationState, incident: Incident, actor: str, now: datetime, *, via: str = ""
) -> Plan:
    _check_now(now)
    if not incident.is_open or _is_resolved(state):
        raise InvalidTransition(f"cannot resolve: {_where(incident)}")
    return Plan(
        replace(state, status=EscalationStatus.RESOLVED, snoozed_until=None),
        cancel=_ALL_KINDS,
        incident_state=IncidentState.RESOLVED,
        events=(TimelineEvent(now, EventKind.RESOLVED, actor, _how(via)),),
    )


def _how(via: str) -> dict[str, str]:
    """A person's event's detail: how they acted, when not through their own token."""
    return {"via": via} if via else {}


def resume(
    state: EscalationState, severity: Severity, hours: WorkingHoursView | None, window: str,
    now: datetime,
) -> Plan:
    """The maintenance window that held the incident's pages ended while it still fires and
    nobody took it: escalate from the first step (or wait for working hours). The same run:
    the window's hold cancelled every step and contact deadline left. Its pages say what held
    them and since when (the step whose pages were held first fired last: the hold cancelled
    the later ones), so a person paged before the window does not read a first page again."""
    _check_now(now)
    held_since = state.last_fired_at.isoformat() if state.last_fired_at else ""
    cause = RunCause(MessageReason.AFTER_MAINTENANCE, window, held_since)
    plan = _new_run(replace(state, cause=cause), severity, hours, state.run, now,
                    state.any_hour)  # the same run, as it began
    event = TimelineEvent(now, EventKind.MAINTENANCE_ENDED, detail={"window": window})
    return replace(plan, events=(event, *plan.events))


def moves_on_update(incident: Incident) -> bool:
    """Whether `on_update` can change anything for this incident: only an acknowledged one has
    a reack to push (its escalation is then acknowledged or snoozed). The caller skips reading
    the escalation state of every other incident that alerts join (the storm's usual case) or
    people work on."""
    return incident.state is IncidentState.ACKNOWLEDGED


def on_update(state: EscalationState, incident: Incident, now: datetime) -> Plan:
    """New alerts joined, or a person worked on the incident (a note, a status update, a role,
    a responder paged in, a lowered severity: incidents/desk.py): an acknowledged incident is
    not "left alone", so its reack is due `reack_after` from now."""
    _check_now(now)
    after = state.policy.reack_after
    if state.status is not EscalationStatus.ACKNOWLEDGED or after is None:
        return Plan(state)
    return Plan(state, arm=(Deadline(now + after, DeadlineKind.REACK),))


def delivery_failed(
    state: EscalationState,
    incident: Incident,
    step: int,
    cycle: int,
    run: int,
    fates: Iterable[tuple[str, PageFate]],
    now: datetime,
) -> Plan:
    """A page of the step that fired last finally failed. If nobody that step paged can be
    reached (`unreachable`: every page to every person it paged failed, and none is still to
    go), escalate now, not later. Otherwise the step keeps its own timing: whoever it reached
    has the step's whole delay to answer.

    The last step of a cycle that could reach nobody is followed by the repeat on its own
    time (`repeat_after` after the step), as one that reached nobody when it fired
    (`_advance`): the repeat reminds the people the cycle's earlier steps paged, who are
    still within their wait. The event says so (`escalating_early` false, `repeat_at`).
    The end of the last cycle's wait comes at once: nobody it paged waits."""
    _check_now(now)
    fired = (run, cycle, step) == (state.run, state.last_fired_cycle, state.last_fired_step)
    if state.status is not EscalationStatus.ACTIVE or not fired:
        return Plan(state)
    nobody = unreachable(fates)
    if not nobody:
        return Plan(state)
    detail = {"escalating_early": True, "step": step, "cycle": cycle, "run": run,
              "next_step": state.next_step, "unreachable": nobody}
    if state.cycle != state.last_fired_cycle:  # the pending step opens the repeat
        start = state.cycle_started_at
        repeat_at = None if start is None else start + state.policy.steps[state.next_step].delay
        detail.update(escalating_early=False,
                      repeat_at=None if repeat_at is None else repeat_at.isoformat())
        return Plan(state, events=(TimelineEvent(now, EventKind.NOTIFICATION_FAILED,
                                                 detail=detail),))
    key = pending_key(state)  # past the last step: exhausted now, nobody could be reached
    return Plan(
        state,
        arm=(Deadline(now, DeadlineKind.STEP, key),),
        events=(TimelineEvent(now, EventKind.NOTIFICATION_FAILED, detail=detail),),
    )


def unreachable(fates: Iterable[tuple[str, PageFate]]) -> list[str]:
    """The people a step paged, by name, if none of them can be reached: each page of the
    step to each person (`fates`, one per person and fate the store holds for that step's
    pages) failed. Empty if any page was sent, was suppressed (held back, not failed) or is
    still to go (in the outbox, or a delayed contact armed), and if the step paged nobody."""
    people: set[str] = set()
    for person, fate in fates:
        if fate is not PageFate.FAILED:
            return []
        people.add(person)
    return sorted(people)


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
