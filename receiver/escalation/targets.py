"""Who a step reaches: its targets (one of them, for round robin), resolved through the
`Directory` to users and channels at the moment it fires, and the pages and delayed-contact
deadlines for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from receiver.core.frozen import replace
from receiver.core.model import MessageReason
from receiver.escalation.keys import contact_key
from receiver.escalation.plan import (
    Deadline,
    DeadlineKind,
    EscalationState,
    Page,
    RunCause,
)
from receiver.escalation.policy import (
    Channel,
    Directory,
    Policy,
    StepMode,
    Target,
    TargetKind,
    User,
)


def chosen_targets(
    policy: Policy, index: int, cursors: Mapping[tuple[str, int], int],
    turns: Sequence[tuple[int, int]] = (),
) -> tuple[tuple[Target, ...], tuple[tuple[str, int], ...], int | None]:
    """The step's targets; the round-robin cursors they turn; and, for a round-robin step,
    the target whose turn this is. A turn the run took already (`turns`: a repeat cycle)
    is the same person again, and turns no cursor."""
    step = policy.steps[index]
    if step.mode is not StepMode.ROUND_ROBIN:
        return step.targets, (), None
    taken = dict(turns).get(index)
    if taken is not None and taken < len(step.targets):
        return (step.targets[taken],), (), taken
    # The cursor of the policy's own step: shared with its incidents that no reassignment
    # put a person ahead of (Policy.ahead).
    key = (policy.name, index - policy.ahead)
    turn = cursors.get(key, 0) % len(step.targets)
    return (step.targets[turn],), (key,), turn


def reach(
    targets: Sequence[Target], directory: Directory, now: datetime
) -> tuple[list[User | Channel], list[str], list[str]]:
    """Who the targets name right now, each once; a description of every dead end; and a
    note for each target reached through its team's current schedule or lead (`rebind`)."""
    recipients: dict[tuple[bool, str], User | Channel] = {}
    unresolved: list[str] = []
    rebound: list[str] = []
    for target in targets:
        found = _reach_one(target, directory, now)
        if isinstance(found, str) and target.team is not None:
            found = _through_team(target, directory, now, found, rebound)
        if isinstance(found, str):
            unresolved.append(found)
        else:
            recipients.setdefault((isinstance(found, Channel), found.name), found)
    return list(recipients.values()), unresolved, rebound


def _through_team(
    target: Target, directory: Directory, now: datetime, dead_end: str, rebound: list[str]
) -> User | Channel | str:
    """A team's own target that reached nobody: its team's current schedule or lead, when a
    reload removed the one bound at opening (the note joins `rebound`), else the dead end."""
    moved, note = rebind(target, directory)
    if not note:
        return dead_end
    found = _reach_one(moved, directory, now)
    if isinstance(found, str):
        return f"{note}, where {found}"
    rebound.append(note)
    return found


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
            gone = dead_end(target, directory)
            return gone or f"schedule {target.name} layer {target.layer}: nobody on call"
        name = on_call
    user = directory.user(name)
    if user is None:
        return f"unknown user {name}"
    return user if user.contacts else f"user {name} has no contacts"


def rebind(target: Target, directory: Directory) -> tuple[Target, str]:
    """A team's own target (`oncall`, `lead`: Target.team) whose schedule or lead, bound when
    the incident opened, the running config no longer has: the team's current one, and a note
    saying so. Any other target as it is, and no note. The team owns the incident, and
    renaming a schedule or handing a team to another lead must not leave it paging nobody."""
    team = target.team
    if team is None or target.kind is TargetKind.CHANNEL:
        return target, ""
    if target.kind is TargetKind.SCHEDULE:
        if directory.schedule_layers(target.name) is not None:
            return target, ""
        current, role = directory.team_schedule(team), "schedule"
        exists = current is not None and directory.schedule_layers(current) is not None
    else:
        if directory.user(target.name) is not None:
            return target, ""
        current, role = directory.team_lead(team), "lead"
        exists = current is not None and directory.user(current) is not None
    if current is None or not exists or current == target.name:
        return target, ""
    note = f"{target.kind} {target.name} no longer exists: team {team}'s {role} {current}"
    return replace(target, name=current), note


def dead_end(target: Target, directory: Directory) -> str | None:
    """Why the target reaches nobody whoever is on call (what the config lacks); None when
    the config has what it names."""
    if target.kind == TargetKind.CHANNEL:
        channel = directory.channel(target.name)
        if channel is None:
            return f"unknown channel {target.name}"
        return None if channel.urls else f"channel {target.name} has no urls"
    if target.kind == TargetKind.SCHEDULE:
        layers = directory.schedule_layers(target.name)
        if layers is None:
            return f"unknown schedule {target.name}"
        return None if target.layer in layers else (
            f"schedule {target.name} has no layer {target.layer}")
    user = directory.user(target.name)
    if user is None:
        return f"unknown user {target.name}"
    return None if user.contacts else f"user {target.name} has no contacts"


def pages_for(
    recipients: Sequence[User | Channel],
    state: EscalationState,
    index: int,
    reason: MessageReason,
    now: datetime,
) -> tuple[tuple[Page, ...], tuple[Deadline, ...]]:
    """Pages for now, and CONTACT deadlines for each person's delayed contacts."""
    actor, to = _cause(state, reason)
    pages: list[Page] = []
    later: list[Deadline] = []
    for who in recipients:
        if isinstance(who, Channel):
            pages.extend(
                Page(recipient=who.name, recipient_kind=TargetKind.CHANNEL, url=url, short=False,
                     reason=reason, step=index, cycle=state.cycle, run=state.run, contact=i,
                     actor=actor, changed_to=to)
                for i, url in enumerate(who.urls)
            )
            continue
        for i, contact in enumerate(who.contacts):
            if contact.delay > timedelta(0):
                key = contact_key(state.run, state.cycle, index, who.name, i, contact.url)
                later.append(Deadline(now + contact.delay, DeadlineKind.CONTACT, key))
            else:
                pages.append(Page(
                    recipient=who.name, recipient_kind=TargetKind.USER, url=contact.url,
                    short=contact.short, reason=reason, step=index, cycle=state.cycle,
                    run=state.run, contact=i, actor=actor, changed_to=to,
                ))
    return tuple(pages), tuple(later)


def _cause(state: EscalationState, reason: MessageReason) -> tuple[str, str]:
    """Who changed the incident, and to what, for the pages of a run a person's change began."""
    cause = state.cause
    if cause is None or reason is not cause.reason:
        return "", ""
    return cause.actor, cause.to


def page_reason(
    policy: Policy, severity: str, run: int, cycle: int, index: int,
    cause: RunCause | None = None,
) -> MessageReason:
    """Why a step's page goes out. Every page of a run something began says what: a
    reassignment, a raised severity or a maintenance window's end (`cause`); else a later
    run's is a re-escalation (unack, snooze over, left alone)."""
    if cause is not None:
        return cause.reason
    if run > 0:
        return MessageReason.RE_ESCALATED
    if cycle > 0:
        return MessageReason.REMINDER
    # The first step this incident's severity reaches is its first page, even if it is not 0.
    if index == next_applicable(policy, severity, after=-1):
        return MessageReason.TRIGGERED
    return MessageReason.ESCALATED


def next_applicable(policy: Policy, severity: str, after: int) -> int | None:
    for index in range(after + 1, len(policy.steps)):
        if policy.steps[index].applies_to(severity):
            return index
    return None
