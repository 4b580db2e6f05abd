"""What the escalation engine decides: an incident's escalation state, the deadlines it arms,
the pages it sends, and the Plan that carries all of one decision to the responder.
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime
from enum import StrEnum

from receiver.core.frozen import frozen
from receiver.core.model import (
    IncidentState,
    MessageReason,
    TimelineEvent,
)
from receiver.escalation.policy import (
    Policy,
    TargetKind,
)


class DeadlineKind(StrEnum):
    STEP = "step"  # the next escalation step is due
    CONTACT = "contact"  # a delayed contact (SMS after push) of a paged person is due
    WAKE = "wake"  # working hours began: a deferred run starts, or the STEP held (its key) fires
    SNOOZE = "snooze"  # a snooze ended
    REACK = "reack"  # an acknowledged incident was left alone too long
    STALE = "stale"  # Alertmanager may have stopped reporting the alerts (see staleness.py)
    MAINTENANCE = "maintenance"  # a maintenance window that held the pages ends
    CADENCE = "cadence"  # a status update is due (incidents/cadence.py)
    FOLLOW = "follow"  # a delayed contact of a person the incident layer messaged (follow.py)


class PageFate(StrEnum):
    """What became of one page of a step to one person, as the store records it: the facts
    `engine.delivery_failed` decides on. A page is pending while it is in the outbox (queued,
    in flight, waiting for a retry) and while a delayed contact of the step waits (a CONTACT
    deadline); suppressed, it was held back (not failed) and may still reach its person."""

    SENT = "sent"
    FAILED = "failed"  # an attempt failed; a later one may have been sent or be pending
    SUPPRESSED = "suppressed"
    PENDING = "pending"


@frozen(slots=True)
class Deadline:
    """The store keeps one deadline per (incident, kind, key): arming it again moves it."""

    due: datetime
    kind: DeadlineKind
    key: str = ""


@frozen(slots=True, kw_only=True)
class Page:
    """One message to one Apprise URL."""

    recipient: str
    recipient_kind: TargetKind
    url: str = field(repr=False)
    short: bool
    reason: MessageReason  # a page's (MessageReason.is_page)
    step: int
    cycle: int
    run: int = 0  # so a late failure of an older run's page cannot move the current run
    contact: int = 0  # the index of `url` in the user's contacts or the channel's urls
    actor: str = ""  # reassigned, severity_raised: who changed the incident
    changed_to: str = ""  # and to what ("team platform", "cy", "SEV1")


@frozen(slots=True)
class RunCause:
    """Why the current run began when a person changed what the incident is: a reassignment
    (`to` is "team NAME" or a person's name) or a raised severity (`to` is its name); or why
    it began again from its first step: the end of a maintenance window that held its pages
    (`actor` is the window's label, `to` when the hold began, ISO 8601, or ""). Every page of
    that run says so; a run begun by an unack, a snooze's end or a reack has none and its
    pages say re_escalated."""

    reason: MessageReason  # REASSIGNED, SEVERITY_RAISED or AFTER_MAINTENANCE
    actor: str
    to: str


class EscalationStatus(StrEnum):
    DEFERRED = "deferred"  # low urgency, waiting for working hours
    ACTIVE = "active"  # a STEP deadline is armed
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    # Every step of every cycle fired and nobody acknowledged within the last one's wait.
    EXHAUSTED = "exhausted"
    RESOLVED = "resolved"


@frozen(slots=True)
class EscalationState:
    """Where an incident's escalation stands; the pending STEP is (run, cycle, next_step),
    and `next_step` equal to the number of steps is the end of the last one's wait."""

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
    cause: RunCause | None = None  # what began this run, if a person's change did
    # This run's round-robin turns, as (step index, target index): each incident takes one
    # turn per step per run, and a repeat cycle pages the person whose turn it is again (a
    # reminder of their page), not the next one. A new run takes a new turn.
    turns: tuple[tuple[int, int], ...] = ()
    # This run pages at any hour: a person named by a reassignment was paged at once, and
    # the policy behind them follows as it began, none of its steps held for working hours.
    any_hour: bool = False
    # Who un-acknowledged the incident, beginning this run (not an assignee handing it back:
    # that run is the team's own policy): they said it is not handled, and the run's first
    # cycle does not page them for it (engine._knows).
    unacked_by: str = ""


@frozen(slots=True)
class Plan:
    """Everything one decision changes; the store applies `cancel` before `arm`."""

    state: EscalationState
    arm: tuple[Deadline, ...] = ()
    cancel: tuple[DeadlineKind, ...] = ()
    incident_state: IncidentState | None = None
    events: tuple[TimelineEvent, ...] = ()
    pages: tuple[Page, ...] = ()
    # The round-robin steps that took their turn, as (policy, step): each cursor moves on by one.
    round_robin_turns: tuple[tuple[str, int], ...] = ()
