"""Escalation policies and the people they reach: what the config describes, and the
`Directory` protocol through which the engine sees people, channels and schedules at the
moment a step fires.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from receiver.core.frozen import frozen


@frozen(slots=True)
class Contact:
    """One way to reach a person; `delay` counts from the page, so SMS can follow a push."""

    url: str = field(repr=False)  # an Apprise URL carries credentials
    delay: timedelta = timedelta(0)
    short: bool = False

    def __post_init__(self) -> None:
        if self.delay < timedelta(0):
            raise ValueError(f"a contact's delay cannot be negative, got {self.delay}")


@frozen(slots=True)
class User:
    name: str
    contacts: tuple[Contact, ...]


@frozen(slots=True)
class Channel:
    """A broadcast destination that is not a person: every URL gets every page."""

    name: str
    urls: tuple[str, ...] = field(repr=False)


class TargetKind(StrEnum):
    SCHEDULE = "schedule"
    USER = "user"
    CHANNEL = "channel"


@frozen(slots=True)
class Target:
    kind: TargetKind
    name: str
    layer: str = "primary"  # only for schedules
    # The team whose own schedule (`oncall`) or lead this target was bound to when the
    # incident opened; None for a schedule or user the policy names itself. Should a reload
    # remove the name bound, the step reaches the team's schedule or lead as it is now.
    team: str | None = None


class StepMode(StrEnum):
    ALL = "all"
    ROUND_ROBIN = "round_robin"


@frozen(slots=True)
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


# What a step put ahead of a policy's own (Policy.ahead: the person a reassignment pages
# first) is called where steps are counted or reported (ackd_escalation_steps, the reports):
# no step of the policy, whose own steps keep their numbers.
REASSIGNED_STEP = "reassigned"


@frozen(slots=True)
class Policy:
    name: str
    steps: tuple[Step, ...]
    repeat: int = 0  # run the steps this many more times while nobody acknowledges
    repeat_after: timedelta = timedelta(minutes=15)
    reack_after: timedelta | None = None  # an acknowledged incident left alone this long
    # Steps put ahead of the policy's own: the person a reassignment pages first
    # (incidents.assignment.person_policy). ackd_escalation_steps counts them apart from the
    # policy's steps, which keep their own numbers.
    ahead: int = 0

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"policy {self.name!r} needs at least one step")
        if not 0 <= self.ahead < len(self.steps):
            raise ValueError(f"policy {self.name!r}: {self.ahead} step(s) ahead of its own")
        if self.repeat < 0:
            raise ValueError(f"policy {self.name!r}: repeat cannot be negative")
        if self.repeat_after < timedelta(0):
            raise ValueError(f"policy {self.name!r}: repeat_after cannot be negative")
        if self.reack_after is not None and self.reack_after < timedelta(0):
            raise ValueError(f"policy {self.name!r}: reack_after cannot be negative")


# -- a person ahead of a policy (a reassignment to them) ------------------------------------


def person_policy(policy: Policy, user: str) -> Policy:
    """`user` at once, then, if nobody acknowledged within `answer_window(policy)`, the
    incident's policy from its first step, its delays counted from then. A repeat runs the
    whole again, `user` first; reack_after stays the policy's. `own_policy` undoes it."""
    wait = answer_window(policy)
    person = Step(timedelta(0), (Target(TargetKind.USER, user),))
    behind = tuple(_after(step, wait, first=i == 0) for i, step in enumerate(policy.steps))
    return Policy(policy.name, (person, *behind), policy.repeat, policy.repeat_after,
                  policy.reack_after, ahead=1)


def answer_window(policy: Policy) -> timedelta:
    """How long the policy gives whoever its first step pages before it pages anyone else:
    the delay to its second step, or for a one-step policy the wait before it repeats."""
    if len(policy.steps) < 2:
        return policy.repeat_after
    first, second = policy.steps[0], policy.steps[1]
    if second.relative_to_previous:
        return second.delay
    return max(second.delay - first.delay, timedelta(0))


def _after(step: Step, wait: timedelta, first: bool) -> Step:
    """A step of the policy behind the person, `wait` later. A step timed from the one before
    it keeps its delay (the one before moved already); the first is timed from the cycle's
    start, where the person's page is."""
    if step.relative_to_previous and not first:
        return step
    return replace(step, delay=step.delay + wait, relative_to_previous=False)


def ahead_people(policy: Policy) -> frozenset[str]:
    """The people a reassignment put ahead of the policy's own steps (none for a policy as
    the config has it)."""
    return frozenset(t.name for step in policy.steps[:policy.ahead] for t in step.targets
                     if t.kind is TargetKind.USER)


def own_policy(policy: Policy) -> Policy:
    """The policy without the person a reassignment put ahead of it: `person_policy`
    undone, its steps at their own delays again. The wait it added is the answer window of
    the steps behind the person (a step timed from the one before kept its delay, every
    other got the wait added), so the snapshot alone says it. The first step's
    `relative_to_previous` comes back False: a cycle's first step is timed from its start
    whichever it says."""
    if not policy.ahead:
        return policy
    own = Policy(policy.name, policy.steps[policy.ahead:], policy.repeat, policy.repeat_after,
                 policy.reack_after)
    wait = answer_window(own)
    steps = tuple(step if step.relative_to_previous else replace(step, delay=step.delay - wait)
                  for step in own.steps)
    return replace(own, steps=steps)


class WorkingHoursView(Protocol):
    def within(self, at: datetime) -> bool: ...

    def next_start(self, at: datetime) -> datetime: ...


class Directory(Protocol):
    """People, channels and schedules as the current config has them."""

    def user(self, name: str) -> User | None: ...

    def channel(self, name: str) -> Channel | None: ...

    def on_call(self, schedule: str, layer: str, at: datetime) -> str | None: ...

    def schedule_layers(self, schedule: str) -> Collection[str] | None:
        """The names of the schedule's layers; None when there is no such schedule."""
        ...

    def team_schedule(self, team: str) -> str | None: ...

    def team_lead(self, team: str) -> str | None: ...

    def working_hours(self, team: str) -> WorkingHoursView | None: ...
