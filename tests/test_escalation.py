"""The escalation engine on a fake clock: each deadline is fired at its due time by hand.

`Sim` plays the store and the timer loop: it applies each Plan (cancel, then arm; one deadline
per kind and key), keeps the round-robin cursors, and fires the earliest deadline next. So a
30-minute policy with a repeat runs in milliseconds and every page has an exact virtual time.
"""

from __future__ import annotations

import itertools
import json
import time as wallclock
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.core.errors import InvalidTransition
from receiver.core.model import (
    EventKind,
    Incident,
    IncidentState,
    MessageReason,
    Severity,
    TimelineEvent,
)
from receiver.escalation.codec import state_from_dict, state_to_dict, state_to_stored
from receiver.escalation.engine import (
    acknowledge,
    deferred_until,
    delivery_failed,
    moves_on_update,
    on_deadline,
    on_update,
    resolve,
    restart,
    resume,
    snooze,
    start,
    take,
    unacknowledge,
)
from receiver.escalation.keys import contact_key, contact_prefix, parse_contact_key
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
    Contact,
    Policy,
    Step,
    StepMode,
    Target,
    TargetKind,
    User,
    answer_window,
    own_policy,
    person_policy,
)
from receiver.store.codec import dumps, loads

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday, inside working hours
MIN = timedelta(minutes=1)

SEV1 = Severity("SEV1", 0, urgency="high")
SEV2 = Severity("SEV2", 1, urgency="high")
SEV3 = Severity("SEV3", 2, urgency="low")
SEVERITIES = {s.name: s for s in (SEV1, SEV2, SEV3)}


def sched(layer: str) -> Target:
    return Target(TargetKind.SCHEDULE, "payments", layer)


def user(name: str) -> Target:
    return Target(TargetKind.USER, name)


# The example's `standard` policy, as bind_policy leaves it for the payments team (lead dee).
STANDARD = Policy(
    name="standard",
    steps=(
        Step(timedelta(0), (sched("primary"),)),
        Step(5 * MIN, (sched("secondary"),)),
        Step(15 * MIN, (user("dee"),)),
        Step(30 * MIN, (user("erin"), Target(TargetKind.CHANNEL, "exec-status")),
             severities=frozenset({"SEV1"})),
    ),
    repeat=1,
    repeat_after=15 * MIN,
    reack_after=timedelta(hours=4),
)


@dataclass(frozen=True)
class Hours:
    """Working hours 09:00-18:00 UTC, Monday to Friday."""

    def within(self, at: datetime) -> bool:
        return at.weekday() < 5 and 9 <= at.hour < 18

    def next_start(self, at: datetime) -> datetime:
        day = at.replace(hour=9, minute=0, second=0, microsecond=0)
        if at >= day:
            day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        return at if self.within(at) else day


@dataclass
class FakeDirectory:
    """A test double of the Directory protocol: dicts instead of the config and schedules."""

    users: dict[str, User] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    on_call_table: dict[tuple[str, str], str] = field(default_factory=dict)
    hours: dict[str, Hours] = field(default_factory=dict)
    schedules: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"payments": ("primary", "secondary")})
    teams: dict[str, tuple[str | None, str | None]] = field(  # team -> (schedule, lead)
        default_factory=lambda: {"payments": ("payments", "dee")})

    def user(self, name: str) -> User | None:
        return self.users.get(name)

    def channel(self, name: str) -> Channel | None:
        return self.channels.get(name)

    def on_call(self, schedule: str, layer: str, at: datetime) -> str | None:
        return self.on_call_table.get((schedule, layer))

    def schedule_layers(self, schedule: str) -> tuple[str, ...] | None:
        return self.schedules.get(schedule)

    def team_schedule(self, team: str) -> str | None:
        return self.teams.get(team, (None, None))[0]

    def team_lead(self, team: str) -> str | None:
        return self.teams.get(team, (None, None))[1]

    def working_hours(self, team: str) -> Hours | None:
        return self.hours.get(team)


def push(name: str) -> Contact:
    return Contact(f"json://pager/{name}")


def directory(**changes: Any) -> FakeDirectory:
    d = FakeDirectory(
        users={
            "ana": User("ana", (push("ana"), Contact("json://pager/ana-sms", 2 * MIN, True))),
            "bo": User("bo", (push("bo"),)),
            "cy": User("cy", (push("cy"),)),
            "dee": User("dee", (push("dee"),)),
            "erin": User("erin", (push("erin"),)),
        },
        channels={"exec-status": Channel("exec-status", ("json://chat/exec",))},
        on_call_table={("payments", "primary"): "ana", ("payments", "secondary"): "bo"},
        hours={"payments": Hours()},
    )
    return replace(d, **changes)


def incident(severity: str = "SEV1", state: IncidentState = IncidentState.TRIGGERED) -> Incident:
    return Incident(
        id=7, group_key="g", route_id="0.0", team="payments", severity=severity,
        policy="standard", group_labels={}, state=state, opened_at=T0, updated_at=T0,
    )


@dataclass
class Sim:
    """The store and timer loop in miniature; records every page as (minute, recipient, reason)."""

    directory: FakeDirectory
    incident: Incident
    state: EscalationState
    deadlines: dict[tuple[DeadlineKind, str], Deadline] = field(default_factory=dict)
    cursors: dict[tuple[str, int], int] = field(default_factory=dict)
    pages: list[tuple[float, str, str]] = field(default_factory=list)
    events: list[tuple[float, EventKind, dict[str, Any]]] = field(default_factory=list)
    # What became of each page to a person, as the store records it: by (run, cycle, step,
    # person), one fate per page, pending until `deliver` says otherwise.
    fates: dict[tuple[int, int, int, str], list[PageFate]] = field(default_factory=dict)

    @classmethod
    def open(
        cls, severity: str = "SEV1", policy: Policy = STANDARD, at: datetime = T0, **dir_: Any
    ) -> Sim:
        found, opened = directory(**dir_), incident(severity)
        plan = start(policy, opened, SEVERITIES[severity], found, at)
        sim = cls(found, opened, plan.state)
        sim.apply(plan, at)
        return sim

    def apply(self, plan: Plan, now: datetime) -> Plan:
        self.state = plan.state
        for kind in plan.cancel:
            self.deadlines = {k: d for k, d in self.deadlines.items() if k[0] is not kind}
        for d in plan.arm:
            self.deadlines[(d.kind, d.key)] = d
        if plan.incident_state is not None:
            self.incident = replace(self.incident, state=plan.incident_state)
        minute = (now - T0) / MIN
        self.pages += [(minute, p.recipient, p.reason) for p in plan.pages]
        for p in plan.pages:
            if p.recipient_kind is TargetKind.USER:
                key = (p.run, p.cycle, p.step, p.recipient)
                self.fates.setdefault(key, []).append(PageFate.PENDING)
        self.events += [(minute, e.kind, dict(e.detail)) for e in plan.events]
        for key in plan.round_robin_turns:
            self.cursors[key] = self.cursors.get(key, 0) + 1
        return plan

    def fire_next(self) -> Plan:
        deadline = min(self.deadlines.values(), key=lambda d: d.due)
        del self.deadlines[(deadline.kind, deadline.key)]
        severity = SEVERITIES[self.incident.severity]
        plan = on_deadline(self.state, self.incident, severity, deadline, self.directory,
                           self.cursors, deadline.due)
        return self.apply(plan, deadline.due)

    def run(self, until: datetime | None = None) -> None:
        while self.deadlines and (until is None or self.next_due() <= until):
            self.fire_next()

    def next_due(self) -> datetime:
        return min(d.due for d in self.deadlines.values())

    def act(self, action: str, minute: float, until: datetime | None = None,
            who: str = "ana") -> Plan:
        now = T0 + minute * MIN
        return self.apply(self.decide(action, now, until, who), now)

    def decide(self, action: str, now: datetime, until: datetime | None,
               who: str = "ana") -> Plan:
        if action == "update":
            return on_update(self.state, self.incident, now)
        if action == "snooze":
            assert until is not None
            return snooze(self.state, self.incident, who, until, now)
        if action == "unack":
            return unacknowledge(self.state, self.incident, who, now,
                                 severity=SEVERITIES[self.incident.severity], hours=self.hours())
        acts = {"ack": acknowledge, "resolve": resolve}
        return acts[action](self.state, self.incident, who, now)

    def deliver(self, person: str, fate: PageFate, minute: float) -> Plan:
        """The oldest pending page to `person` was sent, or finally failed, at `minute` (the
        deadlines due by then fire first); a failure is told to the engine, with what the
        store would hold of that step's pages (`step_fates`)."""
        now = T0 + minute * MIN
        self.run(until=now)
        key = next(k for k, fates in self.fates.items()
                   if k[3] == person and PageFate.PENDING in fates)
        self.fates[key].remove(PageFate.PENDING)
        self.fates[key].append(fate)
        if fate is not PageFate.FAILED:
            return Plan(self.state)
        run, cycle, step, _ = key
        fates = self.step_fates(run, cycle, step)
        return self.apply(delivery_failed(self.state, self.incident, step, cycle, run, fates,
                                          now), now)

    def step_fates(self, run: int, cycle: int, step: int) -> list[tuple[str, PageFate]]:
        """As Transaction.step_pages: each person and fate of the step's pages once, a
        delayed contact still armed pending."""
        found = {(k[3], fate) for k, fates in self.fates.items() if k[:3] == (run, cycle, step)
                 for fate in fates}
        found |= {(parse_contact_key(d.key)[3], PageFate.PENDING)
                  for d in self.deadlines.values()
                  if d.kind is DeadlineKind.CONTACT
                  and d.key.startswith(contact_prefix(run, cycle, step))}
        return sorted(found)

    def hours(self) -> Hours | None:
        return self.directory.working_hours(self.incident.team)

    def kinds(self) -> list[EventKind]:
        return [kind for _, kind, _ in self.events]


# -- the whole policy, left unacknowledged ----------------------------------------------------

SEV1_RUN = [
    (0, "ana", "triggered"), (2, "ana", "triggered"), (5, "bo", "escalated"),
    (15, "dee", "escalated"), (30, "erin", "escalated"), (30, "exec-status", "escalated"),
    # cycle 1 starts 15m after the last step of cycle 0 fired
    (45, "ana", "reminder"), (47, "ana", "reminder"), (50, "bo", "reminder"),
    (60, "dee", "reminder"), (75, "erin", "reminder"), (75, "exec-status", "reminder"),
]
SEV2_RUN = [  # the SEV1-only step is skipped, so cycle 1 starts at 15m + 15m
    (0, "ana", "triggered"), (2, "ana", "triggered"), (5, "bo", "escalated"),
    (15, "dee", "escalated"),
    (30, "ana", "reminder"), (32, "ana", "reminder"), (35, "bo", "reminder"),
    (45, "dee", "reminder"),
]


@pytest.mark.parametrize(
    ("severity", "expected", "exhausted_at"),
    # the last step's wait (repeat_after, 15m) after it fired: 75 + 15, 45 + 15
    [("SEV1", SEV1_RUN, 90), ("SEV2", SEV2_RUN, 60)],
    ids=["sev1-all-steps", "sev2-skips-sev1-only-step"],
)
def test_unacknowledged_policy_pages_in_order(
    severity: str, expected: list[tuple[float, str, str]], exhausted_at: float
) -> None:
    began = wallclock.perf_counter()
    sim = Sim.open(severity)
    assert sim.pages == []  # start never pages by itself
    sim.run()
    # Virtual minutes cost no real ones: nothing waits for a deadline in real time. Waiting
    # for the shortest wait between two pages (2 minutes) would take 120 s; the pure
    # decisions take milliseconds however loaded the machine (0.5 s was a guess at its speed).
    minutes = sorted({at for at, _, _ in expected})
    shortest = min(b - a for a, b in itertools.pairwise(minutes)) * 60
    assert wallclock.perf_counter() - began < shortest / 20
    assert sim.pages == expected
    assert sim.state.status is EscalationStatus.EXHAUSTED
    assert sim.events[-1][:2] == (exhausted_at, EventKind.ESCALATION_EXHAUSTED)
    assert sim.deadlines == {}


def test_a_step_armed_for_a_severity_lowered_since_is_skipped_when_due() -> None:
    """SEV1 lowered to SEV2 at minute 20, with the SEV1-only step armed for minute 30: it
    pages nobody, says so on the timeline, and the rest runs as SEV2's would have (the
    repeat 15 minutes after dee's step, not after the skipped one)."""
    sim = Sim.open("SEV1")
    sim.run(until=T0 + 20 * MIN)
    sim.incident = replace(sim.incident, severity="SEV2")
    sim.run()
    assert sim.pages == SEV2_RUN
    skipped = [(at, detail) for at, kind, detail in sim.events if kind is EventKind.STEP_SKIPPED]
    assert skipped == [(30, {"step": 3, "number": 4, "cycle": 0, "run": 0,
                             "severity": "SEV2", "severities": ["SEV1"]})]
    assert sim.events[-1][:2] == (60, EventKind.ESCALATION_EXHAUSTED)


def test_a_skipped_step_times_the_next_from_the_step_before_it() -> None:
    """A step timed from the one before follows the last step that fired, as if the skipped
    one had been skipped when it was armed: bo at 0 + 7, not 5 + 7. After it, SEV2's steps
    as usual (the SEV1-only step at 20 passed over when bo fires, cy 4 after bo)."""
    policy = Policy("p", (
        Step(timedelta(0), (user("ana"),)),
        Step(5 * MIN, (user("erin"),), relative_to_previous=True,
             severities=frozenset({"SEV1"})),
        Step(7 * MIN, (user("bo"),), relative_to_previous=True),
        Step(20 * MIN, (user("erin"),), severities=frozenset({"SEV1"})),
        Step(4 * MIN, (user("cy"),), relative_to_previous=True),
    ))
    sim = Sim.open("SEV1", policy=policy)
    sim.run(until=T0 + MIN)
    sim.incident = replace(sim.incident, severity="SEV2")
    sim.run()
    assert sim.pages == [(0, "ana", "triggered"), (2, "ana", "triggered"),
                         (7, "bo", "escalated"), (11, "cy", "escalated")]
    assert [at for at, kind, _ in sim.events if kind is EventKind.STEP_SKIPPED] == [5]


def test_step_fired_event_describes_the_step() -> None:
    sim = Sim.open()
    sim.fire_next()
    [(minute, kind, detail)] = sim.events
    assert (minute, kind) == (0, EventKind.STEP_FIRED)
    assert detail == {"step": 0, "number": 1, "cycle": 0, "run": 0, "reason": "triggered",
                      "recipients": ["ana"], "unresolved": []}


def test_start_arms_the_first_step_even_at_zero_delay() -> None:
    sim = Sim.open()
    assert list(sim.deadlines.values()) == [Deadline(T0, DeadlineKind.STEP, "0:0:0")]
    assert sim.state.policy is STANDARD


def test_no_applicable_step_exhausts_at_once() -> None:
    only_sev1 = Policy("p", (Step(timedelta(0), (user("bo"),), severities=frozenset({"SEV1"})),))
    sim = Sim.open("SEV2", policy=only_sev1)
    assert sim.deadlines == {}
    assert sim.kinds() == [EventKind.ESCALATION_EXHAUSTED]


def test_first_applicable_step_is_triggered_not_escalated() -> None:
    policy = Policy("p", (Step(timedelta(0), (user("bo"),), severities=frozenset({"SEV1"})),
                          Step(3 * MIN, (user("cy"),))))
    sim = Sim.open("SEV2", policy=policy)
    sim.run()
    assert sim.pages == [(3, "cy", "triggered")]


def test_relative_delay_counts_from_the_previous_step() -> None:
    policy = Policy("p", (Step(timedelta(0), (user("bo"),)),
                          Step(10 * MIN, (user("cy"),)),
                          Step(4 * MIN, (user("dee"),), relative_to_previous=True)))
    sim = Sim.open(policy=policy)
    sim.run()
    assert sim.pages == [(0, "bo", "triggered"), (10, "cy", "escalated"), (14, "dee", "escalated")]


# -- round robin ------------------------------------------------------------------------------

RR = Policy("rr", (Step(timedelta(0), (user("ana"), user("bo"), user("cy")),
                        mode=StepMode.ROUND_ROBIN),))


@pytest.mark.parametrize(
    ("cursor", "expected"),
    [(0, "ana"), (1, "bo"), (2, "cy"), (3, "ana"), (7, "bo")],
    ids=["first", "second", "third", "wraps", "wraps-twice"],
)
def test_round_robin_picks_by_cursor(cursor: int, expected: str) -> None:
    sim = Sim.open(policy=RR)
    sim.cursors[("rr", 0)] = cursor
    plan = sim.fire_next()
    assert [p.recipient for p in plan.pages] == [expected]
    assert plan.round_robin_turns == (("rr", 0),)


def test_round_robin_rotates_across_incidents() -> None:
    cursors: dict[tuple[str, int], int] = {}
    paged = []
    for _ in range(4):
        sim = Sim.open(policy=RR)
        sim.cursors = cursors
        sim.fire_next()
        paged.append(sim.pages[0][1])
    assert paged == ["ana", "bo", "cy", "ana"]


RR_REPEAT = Policy("rr", (
    Step(timedelta(0), (user("ana"), user("bo"), user("cy")), mode=StepMode.ROUND_ROBIN),
    Step(timedelta(minutes=5), (user("dee"),))), repeat=1, repeat_after=timedelta(minutes=10))


def test_a_round_robin_repeat_reminds_the_person_whose_turn_it_was() -> None:
    """Round robin hands each incident to the next person; a repeat of the steps is a
    reminder, so it goes to whoever got the first page (not to the next person, reminding
    them of a page they never got), and the shared cursor turns once per incident."""
    cursors: dict[tuple[str, int], int] = {}
    sim = Sim.open(policy=RR_REPEAT)
    sim.cursors = cursors
    sim.run()
    assert sim.pages == [(0, "ana", "triggered"), (2, "ana", "triggered"),  # push, then SMS
                         (5, "dee", "escalated"),
                         (15, "ana", "reminder"), (17, "ana", "reminder"), (20, "dee", "reminder")]
    assert cursors == {("rr", 0): 1}
    following = Sim.open(policy=RR_REPEAT)
    following.cursors = cursors
    following.run()
    assert [who for _, who, _ in following.pages] == ["bo", "dee", "bo", "dee"]
    # A new run (an unack) is a new turn.
    following.act("ack", 30)
    following.act("unack", 31)
    following.run(until=T0 + 31 * MIN)
    assert following.pages[-1] == (31, "cy", "re_escalated")


def test_a_round_robin_turn_that_reached_nobody_is_not_kept() -> None:
    """The person whose turn it was has no contact left (a reload): the repeat takes the
    next turn rather than page nobody again."""
    cursors: dict[tuple[str, int], int] = {}
    users = {**directory().users, "ana": User("ana", ())}
    sim = Sim.open(policy=RR_REPEAT, users=users)
    sim.cursors = cursors
    sim.run()
    assert [who for _, who, _ in sim.pages] == ["dee", "bo", "dee"]


def test_a_person_reassigned_to_turns_the_policys_own_round_robin() -> None:
    """The policy's round-robin step behind the person is still its step 0: it reads and
    turns the cursor the policy's other incidents share."""
    cursors = {("rr", 0): 1}
    sim = Sim.open(policy=RR)
    sim.cursors = cursors
    sim.fire_next()  # bo, the cursor turns to 2
    now = T0 + MIN
    event = TimelineEvent(now, EventKind.REASSIGNED, "dee")
    cause = RunCause(MessageReason.REASSIGNED, "dee", "erin")
    sim.apply(restart(sim.state, sim.incident, SEV1, event, now, person_policy(RR, "erin"),
                      cause, hours=sim.hours()), now)
    sim.run(until=T0 + 20 * MIN)
    assert [who for _, who, _ in sim.pages] == ["bo", "erin", "cy"]
    assert cursors == {("rr", 0): 3}


# -- delayed contacts -------------------------------------------------------------------------


SMS = Contact("json://pager/ana-sms", 2 * MIN, True)
SMS_KEY = contact_key(0, 0, 0, "ana", 1, SMS.url)


def test_delayed_contact_is_armed_not_paged() -> None:
    sim = Sim.open()
    plan = sim.fire_next()
    assert [(p.url, p.short) for p in plan.pages] == [("json://pager/ana", False)]
    assert Deadline(T0 + 2 * MIN, DeadlineKind.CONTACT, SMS_KEY) in plan.arm
    sim.run(until=T0 + 2 * MIN)
    assert sim.pages[-1] == (2, "ana", "triggered")


def test_acknowledging_cancels_the_delayed_contact() -> None:
    sim = Sim.open()
    sim.fire_next()
    contact = sim.deadlines[(DeadlineKind.CONTACT, SMS_KEY)]
    plan = sim.act("ack", 1)
    assert set(plan.cancel) >= {DeadlineKind.STEP, DeadlineKind.CONTACT, DeadlineKind.WAKE}
    assert [k for k, _ in sim.deadlines] == [DeadlineKind.REACK]
    # Even if the store still held it, the stale contact must not page.
    late = on_deadline(sim.state, sim.incident, SEV1, contact, sim.directory, {}, contact.due)
    assert late == Plan(sim.state)


def test_delayed_contact_still_pages_once_exhausted() -> None:
    # ana's SMS is 2 minutes after her push, the step's wait 1 minute: exhausted first.
    one_step = Policy("p", (Step(timedelta(0), (sched("primary"),)),), repeat_after=MIN)
    sim = Sim.open(policy=one_step)
    sim.fire_next()
    sim.fire_next()
    assert sim.state.status is EscalationStatus.EXHAUSTED
    assert sim.events[-1][:2] == (1, EventKind.ESCALATION_EXHAUSTED)
    sim.run()
    assert sim.pages == [(0, "ana", "triggered"), (2, "ana", "triggered")]


def test_contact_gone_after_reload_records_a_failure() -> None:
    sim = Sim.open()
    sim.fire_next()
    sim.directory.users["ana"] = User("ana", (push("ana"),))
    sim.run(until=T0 + 2 * MIN)
    assert sim.pages == [(0, "ana", "triggered")]
    assert sim.events[-1][1] is EventKind.NOTIFICATION_FAILED


VOICE = Contact("json://pager/ana-voice", 10 * MIN)


@pytest.mark.parametrize(
    ("contacts", "sent"),
    [
        ((SMS, push("ana")), [(SMS.url, True, 0)]),
        ((VOICE, push("ana"), SMS), [(SMS.url, True, 2)]),
        ((VOICE, push("ana")), []),
    ],
    ids=["reordered", "inserted", "removed"],
)
def test_a_reload_that_moves_contacts_leaves_the_delayed_one_its_url(
    contacts: tuple[Contact, ...], sent: list[tuple[str, bool, int]]
) -> None:
    """ana's SMS waits its 2 minutes; a reload moves it (or removes it, and another contact
    takes its place): it goes to the SMS URL wherever it is now, or fails visibly, never to
    the contact now at its old position."""
    sim = Sim.open()
    sim.fire_next()
    sim.directory.users["ana"] = User("ana", contacts)
    contact = sim.deadlines[(DeadlineKind.CONTACT, SMS_KEY)]
    plan = on_deadline(sim.state, sim.incident, SEV1, contact, sim.directory, {}, contact.due)
    assert [(p.url, p.short, p.contact) for p in plan.pages] == sent
    failed = [e.detail["error"] for e in plan.events if e.kind is EventKind.NOTIFICATION_FAILED]
    assert failed == ([] if sent else ["user ana no longer has contact 2"])


def test_a_contact_deadline_armed_before_digests_goes_by_its_index() -> None:
    """A key an earlier release armed (RUN:CYCLE:STEP:USER:INDEX) still fires, as before."""
    sim = Sim.open()
    sim.fire_next()
    old = Deadline(T0 + 2 * MIN, DeadlineKind.CONTACT, "0:0:0:ana:1")
    plan = on_deadline(sim.state, sim.incident, SEV1, old, sim.directory, {}, old.due)
    assert [(p.url, p.short, p.contact) for p in plan.pages] == [(SMS.url, True, 1)]
    assert parse_contact_key("0:0:0:ana:1") == (0, 0, 0, "ana", 1, "")
    assert parse_contact_key(SMS_KEY)[3:5] == ("ana", 1)


# -- stale deadlines --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "deadline",
    [
        Deadline(T0, DeadlineKind.STEP, "0:0:1"),
        Deadline(T0, DeadlineKind.WAKE),
        Deadline(T0, DeadlineKind.SNOOZE),
    ],
    ids=["next-step", "wake", "snooze-end"],
)
def test_stale_deadlines_after_ack_do_nothing(deadline: Deadline) -> None:
    sim = Sim.open()
    sim.fire_next()
    sim.act("ack", 1)
    plan = on_deadline(sim.state, sim.incident, SEV1, deadline, sim.directory, {}, T0 + 5 * MIN)
    assert plan == Plan(sim.state)


@pytest.mark.parametrize(
    "key", ["0:0:0", "0:0:2", "0:1:1", "1:0:1"], ids=["fired", "ahead", "other-cycle", "other-run"]
)
def test_step_deadline_of_another_position_is_stale(key: str) -> None:
    sim = Sim.open()
    sim.fire_next()  # step 0 fired; 0:0:1 is pending
    deadline = Deadline(T0 + 5 * MIN, DeadlineKind.STEP, key)
    plan = on_deadline(sim.state, sim.incident, SEV1, deadline, sim.directory, {}, deadline.due)
    assert plan == Plan(sim.state)


# -- low urgency ------------------------------------------------------------------------------


def test_low_urgency_waits_for_working_hours_then_escalates() -> None:
    friday_night = datetime(2026, 1, 9, 22, 0, tzinfo=UTC)
    monday_nine = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)
    sim = Sim.open("SEV3", at=friday_night)
    assert sim.state.status is EscalationStatus.DEFERRED
    assert list(sim.deadlines.values()) == [Deadline(monday_nine, DeadlineKind.WAKE)]
    assert sim.events[0][1:] == (EventKind.ESCALATION_DEFERRED,
                                 {"until": monday_nine.isoformat(), "severity": "SEV3"})
    sim.fire_next()
    assert list(sim.deadlines.values()) == [Deadline(monday_nine, DeadlineKind.STEP, "0:0:0")]
    sim.fire_next()
    assert [(p[1], p[2]) for p in sim.pages] == [("ana", "triggered")]
    assert sim.kinds() == [EventKind.ESCALATION_DEFERRED, EventKind.STEP_FIRED]


@pytest.mark.parametrize(
    ("severity", "at", "hours"),
    [
        ("SEV3", T0, {"payments": Hours()}),
        ("SEV1", T0.replace(hour=23), {"payments": Hours()}),
        ("SEV3", T0.replace(hour=23), {}),
    ],
    ids=["low-within-hours", "high-urgency-at-night", "team-without-working-hours"],
)
def test_what_does_not_defer(severity: str, at: datetime, hours: dict[str, Hours]) -> None:
    sim = Sim.open(severity, at=at, hours=hours)
    assert sim.state.status is EscalationStatus.ACTIVE
    assert list(sim.deadlines.values()) == [Deadline(at, DeadlineKind.STEP, "0:0:0")]


MONDAY_NIGHT = T0.replace(hour=22)
TUESDAY_NINE = T0.replace(day=6, hour=9)


@pytest.mark.parametrize(
    ("severity", "hours", "at", "expected"),
    [
        (SEV3, Hours(), MONDAY_NIGHT, TUESDAY_NINE),
        (SEV3, Hours(), T0.replace(day=9, hour=18), T0.replace(day=12, hour=9)),  # Friday 18:00
        (SEV3, Hours(), T0.replace(hour=8, minute=59), T0.replace(hour=9)),
        (SEV3, Hours(), T0.replace(hour=9), None),  # the start is within
        (SEV3, None, MONDAY_NIGHT, None),  # a team without working hours
        (SEV1, Hours(), MONDAY_NIGHT, None),  # high urgency never waits
    ],
)
def test_deferred_until(
    severity: Severity, hours: Hours | None, at: datetime, expected: datetime | None
) -> None:
    assert deferred_until(severity, hours, at) == expected


def _acknowledged_sev3(opened: datetime) -> Sim:
    """A SEV3 opened in hours, first step fired, acknowledged a minute later."""
    sim = Sim.open("SEV3", at=opened)
    sim.fire_next()
    sim.apply(acknowledge(sim.state, sim.incident, "ana", opened + MIN), opened + MIN)
    return sim


def _run_begins(sim: Sim, path: str, now: datetime) -> Plan:
    """Escalation starts over at `now`, the way `path` starts it."""
    if path == "reack":
        reack = sim.deadlines.pop((DeadlineKind.REACK, ""))
        plan = on_deadline(sim.state, sim.incident, SEV3, replace(reack, due=now),
                           sim.directory, sim.cursors, now)
    elif path == "snooze_end":
        sim.apply(snooze(sim.state, sim.incident, "ana", now, now - MIN), now - MIN)
        sim.deadlines.clear()
        plan = on_deadline(sim.state, sim.incident, SEV3, Deadline(now, DeadlineKind.SNOOZE),
                           sim.directory, sim.cursors, now)
    elif path == "unack":
        plan = sim.decide("unack", now, None, who="cy")  # not ana: who unacks is not paged
    elif path == "maintenance_end":
        # The window held the first run's pages (its steps cancelled); nobody acknowledged.
        sim.state = replace(sim.state, status=EscalationStatus.ACTIVE)
        sim.incident = replace(sim.incident, state=IncidentState.TRIGGERED)
        sim.deadlines.clear()
        plan = resume(sim.state, SEV3, sim.hours(), "#1", now)
    else:
        cause = RunCause(MessageReason.REASSIGNED, "dee", "cy")
        event = TimelineEvent(now, EventKind.REASSIGNED, "dee")
        plan = restart(sim.state, sim.incident, SEV3, event, now,
                       person_policy(STANDARD, "cy"), cause, hours=sim.hours())
    return sim.apply(plan, now)


RUN_PATHS = ["reack", "snooze_end", "unack", "maintenance_end", "reassign"]


@pytest.mark.parametrize("path", RUN_PATHS)
def test_a_low_urgency_run_begun_after_hours_waits_for_them(path: str) -> None:
    sim = _acknowledged_sev3(T0.replace(hour=17))
    plan = _run_begins(sim, path, MONDAY_NIGHT)
    assert plan.pages == ()
    assert sim.state.status is EscalationStatus.DEFERRED
    assert sim.incident.state is IncidentState.TRIGGERED
    run = 0 if path == "maintenance_end" else 1  # a window's end resumes the same run
    assert sim.state.run == run
    assert list(sim.deadlines.values()) == [Deadline(TUESDAY_NINE, DeadlineKind.WAKE)]
    assert sim.events[-1][1:] == (EventKind.ESCALATION_DEFERRED,
                                  {"until": TUESDAY_NINE.isoformat(), "severity": "SEV3"})
    # A step deadline of the run before is stale while it waits.
    stale = Deadline(MONDAY_NIGHT, DeadlineKind.STEP, "0:0:1")
    assert on_deadline(sim.state, sim.incident, SEV3, stale, sim.directory, sim.cursors,
                       MONDAY_NIGHT).pages == ()
    sim.run(until=TUESDAY_NINE)
    first = {"reassign": ("cy", "reassigned"), "maintenance_end": ("ana", "after_maintenance")}
    assert sim.pages[-1] == ((TUESDAY_NINE - T0) / MIN, *first.get(path, ("ana",
                                                                          "re_escalated")))
    assert sim.state.run == run


@pytest.mark.parametrize("path", RUN_PATHS)
def test_a_low_urgency_run_begun_in_hours_pages_at_once(path: str) -> None:
    sim = _acknowledged_sev3(T0)
    now = T0.replace(hour=15)
    _run_begins(sim, path, now)
    assert sim.state.status is EscalationStatus.ACTIVE
    assert list(sim.deadlines.values())[0].due == now
    assert EventKind.ESCALATION_DEFERRED not in sim.kinds()


def test_a_high_urgency_run_after_hours_pages_at_once() -> None:
    sim = Sim.open("SEV1")
    sim.fire_next()
    sim.act("ack", 1)
    sim.apply(unacknowledge(sim.state, sim.incident, "ana", MONDAY_NIGHT, severity=SEV1,
                            hours=sim.hours()), MONDAY_NIGHT)
    assert list(sim.deadlines.values()) == [Deadline(MONDAY_NIGHT, DeadlineKind.STEP, "1:0:0")]


# A low-urgency run's later steps: whatever comes due outside working hours is held.

def _minutes(pages: list[tuple[float, str, str]]) -> list[tuple[str, str]]:
    """Pages as (day HH:MM, recipient): the clock an SRE reads."""
    return [((T0 + at * MIN).strftime("%a %H:%M"), who) for at, who, _ in pages]


def _held(sim: Sim) -> list[tuple[str, dict[str, Any]]]:
    return [((T0 + at * MIN).strftime("%a %H:%M"), d) for at, kind, d in sim.events
            if kind is EventKind.ESCALATION_DEFERRED]


REMINDING = Policy("p", (Step(timedelta(0), (user("bo"),)),), repeat=3,
                   repeat_after=15 * MIN)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("SEV3", [("Mon 17:55", "bo"), ("Tue 09:00", "bo"), ("Tue 09:15", "bo"),
               ("Tue 09:30", "bo")]),
     ("SEV2", [("Mon 17:55", "bo"), ("Mon 18:10", "bo"), ("Mon 18:25", "bo"),
               ("Mon 18:40", "bo")])],
    ids=["low-urgency-held", "high-urgency-at-night"],
)
def test_a_low_urgency_repeat_due_after_hours_waits_for_them(
    severity: str, expected: list[tuple[str, str]]
) -> None:
    """First paged at 17:55: the reminder due at 18:10 waits for Tuesday 09:00 and the
    repeats go on from there, one reminder at the start, not one for each missed."""
    sim = Sim.open(severity, policy=REMINDING, at=T0.replace(hour=17, minute=55))
    sim.run(until=MONDAY_NIGHT)
    if severity == "SEV3":
        assert sim.state.status is EscalationStatus.DEFERRED
        assert list(sim.deadlines.values()) == [Deadline(TUESDAY_NINE, DeadlineKind.WAKE,
                                                         "0:1:0")]
        assert _held(sim) == [("Mon 18:10", {
            "until": TUESDAY_NINE.isoformat(), "severity": "SEV3", "run": 0, "cycle": 1,
            "held": "step", "step": 0, "number": 1})]
        # Held across a restart of the daemon: the state is stored and read back as it was.
        assert state_from_dict(loads(dumps(state_to_stored(sim.state)))) == sim.state
    sim.run()
    assert _minutes(sim.pages) == expected
    assert [(T0 + at * MIN).strftime("%a %H:%M") for at, _ in exhausted(sim)] == [
        "Tue 09:45" if severity == "SEV3" else "Mon 18:55"]
    assert sim.pages[1][2] == "reminder"


def test_a_later_step_held_overnight_keeps_the_spacing_of_those_after_it() -> None:
    """Opened 17:50: ana, her SMS and bo before 18:00; dee's step (15m after the start) is
    due at 18:05 and waits for 09:00; the repeat then begins its 15m after dee's page."""
    sim = Sim.open("SEV3", at=T0.replace(hour=17, minute=50))
    sim.run()
    assert _minutes(sim.pages) == [
        ("Mon 17:50", "ana"), ("Mon 17:52", "ana"), ("Mon 17:55", "bo"),
        ("Tue 09:00", "dee"),
        ("Tue 09:15", "ana"), ("Tue 09:17", "ana"), ("Tue 09:20", "bo"), ("Tue 09:30", "dee")]
    assert [(at, d.get("step")) for at, d in _held(sim)] == [("Mon 18:05", 2)]
    assert [(T0 + at * MIN).strftime("%a %H:%M") for at, _ in exhausted(sim)] == ["Tue 09:45"]


def test_the_end_of_the_last_wait_after_hours_is_held_too() -> None:
    """bo paged 17:50 and his 15m end at 18:05: the escalation runs out (its stakeholders
    told) when the hours begin, not at night."""
    sim = Sim.open("SEV3", policy=replace(REMINDING, repeat=0), at=T0.replace(hour=17, minute=50))
    sim.run(until=MONDAY_NIGHT)
    assert exhausted(sim) == []
    assert _held(sim) == [("Mon 18:05", {"until": TUESDAY_NINE.isoformat(), "severity": "SEV3",
                                         "run": 0, "cycle": 0, "held": "end"})]
    sim.run()
    assert [(T0 + at * MIN).strftime("%a %H:%M") for at, _ in exhausted(sim)] == ["Tue 09:00"]
    assert sim.state.status is EscalationStatus.EXHAUSTED


def test_a_severity_raised_to_high_urgency_while_held_pages_at_once() -> None:
    sim = Sim.open("SEV3", policy=REMINDING, at=T0.replace(hour=17, minute=55))
    sim.run(until=MONDAY_NIGHT)
    assert sim.state.status is EscalationStatus.DEFERRED
    held = sim.deadlines[(DeadlineKind.WAKE, "0:1:0")]
    event = TimelineEvent(MONDAY_NIGHT, EventKind.SEVERITY_CHANGED, "cy")
    cause = RunCause(MessageReason.SEVERITY_RAISED, "cy", "SEV1")
    sim.incident = replace(sim.incident, severity="SEV1")
    plan = sim.apply(restart(sim.state, sim.incident, SEV1, event, MONDAY_NIGHT, cause=cause,
                             hours=sim.hours()), MONDAY_NIGHT)
    assert DeadlineKind.WAKE in plan.cancel
    sim.run(until=MONDAY_NIGHT)
    assert sim.pages[-1] == ((MONDAY_NIGHT - T0) / MIN, "bo", "severity_raised")
    # The held reminder's wake, were it still armed, belongs to the run before: nothing.
    assert on_deadline(sim.state, sim.incident, SEV1, held, sim.directory, sim.cursors,
                       held.due) == Plan(sim.state)


def test_an_acknowledgement_while_held_cancels_the_wake() -> None:
    sim = Sim.open("SEV3", policy=REMINDING, at=T0.replace(hour=17, minute=55))
    sim.run(until=MONDAY_NIGHT)
    plan = sim.apply(acknowledge(sim.state, sim.incident, "ana", MONDAY_NIGHT), MONDAY_NIGHT)
    assert DeadlineKind.WAKE in plan.cancel
    sim.run(until=TUESDAY_NINE.replace(hour=12))
    assert _minutes(sim.pages) == [("Mon 17:55", "bo")]


def test_a_person_named_at_night_is_paged_with_the_policy_behind_them_at_any_hour() -> None:
    """A reassignment to cy at once (the responder's `at_once`): whoever named her chose the
    hour, for her page and the team's steps behind it; the run after it waits again."""
    sim = _acknowledged_sev3(T0.replace(hour=17))
    cause = RunCause(MessageReason.REASSIGNED, "dee", "cy")
    event = TimelineEvent(MONDAY_NIGHT, EventKind.REASSIGNED, "dee")
    sim.apply(restart(sim.state, sim.incident, SEV3, event, MONDAY_NIGHT,
                      person_policy(STANDARD, "cy"), cause, hours=sim.hours(), any_hour=True),
              MONDAY_NIGHT)
    assert sim.state.any_hour
    sim.run(until=MONDAY_NIGHT + 10 * MIN)
    assert _minutes(sim.pages)[1:] == [("Mon 22:00", "cy"), ("Mon 22:05", "ana"),
                                       ("Mon 22:07", "ana"), ("Mon 22:10", "bo")]
    assert _held(sim) == []
    sim.act("ack", (MONDAY_NIGHT - T0) / MIN + 11)
    sim.act("unack", (MONDAY_NIGHT - T0) / MIN + 12)
    assert not sim.state.any_hour
    assert sim.state.status is EscalationStatus.DEFERRED


# -- people -----------------------------------------------------------------------------------


def test_snooze_then_snooze_end_re_escalates_in_a_new_run() -> None:
    sim = Sim.open()
    sim.fire_next()
    plan = sim.act("snooze", 3, until=T0 + 63 * MIN)
    assert plan.incident_state is IncidentState.ACKNOWLEDGED
    assert set(plan.cancel) == {DeadlineKind.STEP, DeadlineKind.CONTACT, DeadlineKind.WAKE,
                                DeadlineKind.REACK}
    assert list(sim.deadlines.values()) == [Deadline(T0 + 63 * MIN, DeadlineKind.SNOOZE)]
    sim.fire_next()
    assert sim.incident.state is IncidentState.TRIGGERED
    assert sim.state.run == 1
    sim.run(until=T0 + 70 * MIN)
    assert sim.pages == [(0, "ana", "triggered"), (63, "ana", "re_escalated"),
                         (65, "ana", "re_escalated"), (68, "bo", "re_escalated")]
    assert sim.kinds()[1:4] == [EventKind.SNOOZED, EventKind.SNOOZE_ENDED, EventKind.STEP_FIRED]


def test_acknowledged_and_left_alone_re_escalates_after_reack() -> None:
    sim = Sim.open()
    sim.fire_next()
    sim.act("ack", 1)
    assert list(sim.deadlines.values()) == [Deadline(T0 + 241 * MIN, DeadlineKind.REACK)]
    plan = sim.fire_next()
    assert plan.incident_state is IncidentState.TRIGGERED
    assert sim.events[-1][1:] == (EventKind.RE_ESCALATED, {"after": 14400.0})
    sim.fire_next()
    assert sim.pages[-1] == (241, "ana", "re_escalated")


def test_no_reack_without_reack_after() -> None:
    sim = Sim.open(policy=replace(STANDARD, reack_after=None))
    sim.fire_next()
    sim.act("ack", 1)
    assert sim.deadlines == {}
    assert sim.act("update", 30).arm == ()


@pytest.mark.parametrize(
    ("before", "expected_reack"),
    [("ack", T0 + 360 * MIN), (None, None), ("snooze", None)],
    ids=["acknowledged-pushes-reack", "triggered-unchanged", "snoozed-unchanged"],
)
def test_update_pushes_reack(before: str | None, expected_reack: datetime | None) -> None:
    sim = Sim.open()
    sim.fire_next()
    if before == "snooze":
        sim.act("snooze", 1, until=T0 + 600 * MIN)
    elif before == "ack":
        sim.act("ack", 1)
    state = sim.state
    plan = sim.act("update", 120)
    assert plan.state == state
    assert (plan.events, plan.pages, plan.cancel) == ((), (), ())
    reack = sim.deadlines.get((DeadlineKind.REACK, ""))
    assert (reack.due if reack else None) == expected_reack


@pytest.mark.parametrize(
    ("name", "moves"),
    [("active", False), ("deferred", False), ("acknowledged", True), ("snoozed", True),
     ("exhausted", False)],
)
def test_only_incidents_that_move_on_update_need_their_state_read(name: str, moves: bool) -> None:
    sim = _in_state(name)
    assert moves_on_update(sim.incident) is moves
    if not moves:
        assert on_update(sim.state, sim.incident, T0 + 50 * MIN) == Plan(sim.state)


def test_unacknowledge_starts_a_new_run_now() -> None:
    sim = Sim.open()
    sim.fire_next()
    sim.act("ack", 1)
    plan = sim.act("unack", 10, who="cy")
    assert plan.incident_state is IncidentState.TRIGGERED
    assert set(plan.cancel) == {DeadlineKind.REACK, DeadlineKind.SNOOZE}
    assert list(sim.deadlines.values()) == [Deadline(T0 + 10 * MIN, DeadlineKind.STEP, "1:0:0")]
    assert (plan.events[0].kind, plan.events[0].actor) == (EventKind.UNACKNOWLEDGED, "cy")
    sim.fire_next()
    assert sim.pages[-1] == (10, "ana", "re_escalated")


def test_who_unacknowledges_is_not_paged_by_the_run_it_begins() -> None:
    """ana, the on-call, acknowledged, then handed it back ("not me"): the new run's first
    step reaches only her, and she is not paged by it (not_paged on the step); it still
    reached someone, so bo's step comes on its own time, 5 minutes later, and the repeat
    reminds her as everyone. The state says so across the store."""
    sim = Sim.open("SEV2")
    sim.fire_next()
    sim.act("ack", 1)
    sim.act("unack", 10)
    assert sim.state.unacked_by == "ana"
    assert state_from_dict(json.loads(json.dumps(state_to_dict(sim.state)))) == sim.state
    sim.run(until=T0 + 60 * MIN)
    assert sim.pages[1:] == [(15, "bo", "re_escalated"), (25, "dee", "re_escalated"),
                             (40, "ana", "re_escalated"), (42, "ana", "re_escalated"),
                             (45, "bo", "re_escalated"), (55, "dee", "re_escalated")]
    fired = [d for _, kind, d in sim.events if kind is EventKind.STEP_FIRED][1:]
    assert [(d["number"], d["cycle"], d["recipients"], d.get("not_paged")) for d in fired] == [
        (1, 0, [], {"user": "ana", "why": "un-acknowledged it"}), (2, 0, ["bo"], None),
        (3, 0, ["dee"], None), (1, 1, ["ana"], None), (2, 1, ["bo"], None),
        (3, 1, ["dee"], None)]
    # Any later run pages her again: the next acknowledgement's reack, say.
    sim.act("ack", 61)
    sim.run(until=T0 + 301 * MIN)
    assert sim.state.unacked_by == ""
    assert sim.pages[-2:] == [(55, "dee", "re_escalated"), (301, "ana", "re_escalated")]


CAUSES = [
    RunCause(MessageReason.REASSIGNED, "cy", "team platform"),
    RunCause(MessageReason.SEVERITY_RAISED, "cy", "SEV1"),
]


@pytest.mark.parametrize("cause", CAUSES, ids=["reassigned", "severity-raised"])
def test_a_restart_pages_say_what_a_person_changed_not_re_escalated(cause: RunCause) -> None:
    sim = Sim.open()
    sim.fire_next()
    sim.act("ack", 1)
    now = T0 + 10 * MIN
    event = TimelineEvent(now, EventKind.REASSIGNED, "cy")
    sim.apply(restart(sim.state, sim.incident, SEV1, event, now, cause=cause,
                      hours=sim.hours()), now)
    sim.run(until=T0 + 15 * MIN)
    # Every page of the run the change began names it: the first step, ana's delayed SMS and
    # the next step alike, each with who changed the incident and to what.
    assert sim.pages[-3:] == [(10, "ana", cause.reason), (12, "ana", cause.reason),
                              (15, "bo", cause.reason)]
    fired = on_deadline(sim.state, sim.incident, SEV1, next(iter(sim.deadlines.values())),
                        sim.directory, sim.cursors, T0 + 25 * MIN)
    assert {(p.actor, p.changed_to) for p in fired.pages} == {(cause.actor, cause.to)}
    assert state_from_dict(json.loads(json.dumps(state_to_dict(sim.state)))) == sim.state
    # A later run begun by people acting as before is a re-escalation again.
    sim.act("ack", 30)
    sim.act("unack", 31, who="cy")  # not ana, whom her own unack does not page
    sim.fire_next()
    assert sim.pages[-1] == (31, "ana", "re_escalated")
    assert sim.state.cause is None


def test_a_person_reassigned_to_has_the_team_policy_behind_them() -> None:
    sim = Sim.open()
    sim.fire_next()
    sim.act("ack", 1)
    now = T0 + 10 * MIN
    policy = person_policy(STANDARD, "cy")
    assert answer_window(STANDARD) == 5 * MIN  # the first step's time before the second
    event = TimelineEvent(now, EventKind.REASSIGNED, "dee")
    cause = RunCause(MessageReason.REASSIGNED, "dee", "cy")
    sim.apply(restart(sim.state, sim.incident, SEV1, event, now, policy, cause,
                      hours=sim.hours()), now)
    sim.run(until=T0 + 61 * MIN)
    # cy alone at once; unanswered for 5 minutes, STANDARD from its first step, its delays
    # counted from then (ana's SMS 2 minutes after her push); then the whole again, cy first.
    assert [(m, who) for m, who, _ in sim.pages[1:]] == [
        (10, "cy"), (15, "ana"), (17, "ana"), (20, "bo"), (30, "dee"), (45, "erin"),
        (45, "exec-status"), (60, "cy")]
    assert {reason for _, _, reason in sim.pages[1:]} == {"reassigned"}


def test_who_reassigns_to_a_team_is_not_paged_by_the_first_cycle_it_begins() -> None:
    """dee reassigns the incident to a team whose policy reaches her at step 3: her own
    change does not page her (not_paged); the step still reached someone, so erin's comes on
    its own time, and the repeat reminds dee as everyone. (Reassigning it to another person,
    she is paged by the policy behind them: above, that person did not answer.)"""
    sim = Sim.open()
    sim.fire_next()
    sim.act("ack", 1)
    now = T0 + 10 * MIN
    event = TimelineEvent(now, EventKind.REASSIGNED, "dee")
    cause = RunCause(MessageReason.REASSIGNED, "dee", "team platform")
    sim.apply(restart(sim.state, sim.incident, SEV1, event, now, STANDARD, cause,
                      hours=sim.hours()), now)
    sim.run(until=T0 + 70 * MIN)
    assert [(m, who) for m, who, _ in sim.pages[1:]] == [
        (10, "ana"), (12, "ana"), (15, "bo"), (40, "erin"), (40, "exec-status"), (55, "ana"),
        (57, "ana"), (60, "bo"), (70, "dee")]
    fired = [d for _, kind, d in sim.events if kind is EventKind.STEP_FIRED][1:]
    assert [(d["number"], d["cycle"], d.get("not_paged")) for d in fired] == [
        (1, 0, None), (2, 0, None), (3, 0, {"user": "dee", "why": "reassigned it"}),
        (4, 0, None), (1, 1, None), (2, 1, None), (3, 1, None)]


def _take(sim: Sim, minute: float, who: str = "cy") -> Plan:
    """`who` reassigns the incident to themselves at `minute`."""
    now = T0 + minute * MIN
    event = TimelineEvent(now, EventKind.REASSIGNED, who, {"user": who})
    cause = RunCause(MessageReason.REASSIGNED, who, who)
    return sim.apply(take(sim.state, sim.incident, event, now, person_policy(STANDARD, who),
                          who, cause), now)


def test_who_takes_an_unacknowledged_incident_acknowledges_it_and_is_not_paged() -> None:
    """ana and bo were paged; cy takes it herself at 7m: no page to her or anyone, her
    acknowledgement after the reassignment, every step stopped, the reack due 4h on. Left
    alone that long, the run is hers: she is paged first, the team's policy behind her."""
    sim = Sim.open()
    sim.run(until=T0 + 6 * MIN)
    assert [who for _, who, _ in sim.pages] == ["ana", "ana", "bo"]
    plan = _take(sim, 7)
    assert plan.pages == ()
    assert [(e.kind, e.actor) for e in plan.events] == [
        (EventKind.REASSIGNED, "cy"), (EventKind.ACKNOWLEDGED, "cy")]
    assert plan.incident_state is IncidentState.ACKNOWLEDGED
    assert sim.state.status is EscalationStatus.ACKNOWLEDGED
    assert list(sim.deadlines.values()) == [Deadline(T0 + 247 * MIN, DeadlineKind.REACK)]
    sim.fire_next()
    sim.run(until=T0 + 252 * MIN)
    assert sim.pages[3:] == [(247, "cy", "re_escalated"), (252, "ana", "re_escalated")]


@pytest.mark.parametrize("before", ["ack", "snooze"])
def test_who_takes_an_acknowledged_incident_holds_it_with_no_acknowledgement_of_their_own(
    before: str,
) -> None:
    """ana acknowledged (or snoozed) it; cy takes it at 10m: the reassignment alone, no
    page, no second acknowledgement (ana's stays MTTA's), the snooze over, the reack 4h
    from cy's taking."""
    sim = Sim.open()
    sim.fire_next()
    sim.act(before, 1, until=T0 + 60 * MIN)
    plan = _take(sim, 10)
    assert (plan.pages, [e.kind for e in plan.events]) == ((), [EventKind.REASSIGNED])
    assert plan.incident_state is IncidentState.ACKNOWLEDGED
    assert (sim.state.status, sim.state.snoozed_until) == (EscalationStatus.ACKNOWLEDGED, None)
    assert list(sim.deadlines.values()) == [Deadline(T0 + 250 * MIN, DeadlineKind.REACK)]


def test_a_resolved_incident_cannot_be_taken() -> None:
    sim = Sim.open()
    sim.fire_next()
    sim.act("resolve", 1)
    with pytest.raises(InvalidTransition):
        _take(sim, 2)


def _unack(sim: Sim, minute: float, who: str) -> Plan:
    now = T0 + minute * MIN
    return sim.apply(unacknowledge(sim.state, sim.incident, who, now, severity=SEV1,
                                   hours=sim.hours()), now)


def test_who_hands_back_what_they_took_is_not_paged_first_the_team_policy_is_at_once() -> None:
    """cy took it at 7m and hands it back at 10m: the team's own policy from its first step,
    at once (ana, the on-call, at 10m, not after cy's 5-minute answer window), nobody ahead
    of it and never cy first; the event says to what policy it went back."""
    sim = Sim.open()
    sim.run(until=T0 + 6 * MIN)
    _take(sim, 7)
    plan = _unack(sim, 10, "cy")
    assert [(e.actor, e.detail) for e in plan.events[:1]] == [
        ("cy", {"handed_back_to": "standard"})]
    assert sim.state.policy == STANDARD
    sim.run(until=T0 + 25 * MIN)
    assert [(m, who) for m, who, _ in sim.pages[3:]] == [
        (10, "ana"), (12, "ana"), (15, "bo"), (25, "dee")]
    fired = [d for _, kind, d in sim.events if kind is EventKind.STEP_FIRED][-3:]
    assert [(d["number"], d["recipients"], "ahead" in d) for d in fired] == [
        (1, ["ana"], False), (2, ["bo"], False), (3, ["dee"], False)]


def test_someone_else_handing_back_a_taken_incident_keeps_its_assignee_first() -> None:
    """dee (the lead) un-acknowledges what cy took: she gives it back to cy, who is paged
    first and at once, the team's policy behind cy after the answer window."""
    sim = Sim.open()
    sim.run(until=T0 + 6 * MIN)
    _take(sim, 7)
    plan = _unack(sim, 10, "dee")
    assert plan.events[0].detail == {}
    sim.run(until=T0 + 20 * MIN)
    assert [(m, who) for m, who, _ in sim.pages[3:]] == [(10, "cy"), (15, "ana"), (17, "ana"),
                                                          (20, "bo")]


@pytest.mark.parametrize("policy", [
    STANDARD,
    Policy("rel", (Step(MIN, (user("a"),)), Step(3 * MIN, (user("b"),),
                                                 relative_to_previous=True),
                   Step(20 * MIN, (user("c"),)))),
    Policy("one", (Step(2 * MIN, (user("a"),)),), repeat_after=9 * MIN),
    Policy("early", (Step(5 * MIN, (user("a"),)), Step(2 * MIN, (user("b"),)))),
], ids=["standard", "relative", "one-step", "second-before-first"])
def test_own_policy_undoes_person_policy(policy: Policy) -> None:
    assert own_policy(person_policy(policy, "cy")) == policy
    assert own_policy(policy) is policy


def _raise(sim: Sim, minute: float, who: str) -> Plan:
    now = T0 + minute * MIN
    event = TimelineEvent(now, EventKind.SEVERITY_CHANGED, who, {"raised": True})
    sim.incident = replace(sim.incident, severity="SEV1")
    return sim.apply(restart(sim.state, sim.incident, SEV1, event, now,
                             cause=RunCause(MessageReason.SEVERITY_RAISED, who, "SEV1"),
                             hours=sim.hours()), now)


def test_who_raises_the_severity_is_not_paged_by_it_and_the_next_step_keeps_its_time() -> None:
    """ana (the on-call, step 1's only person) raises the SEV2 to SEV1 at 1m: step 1 fires
    and pages nobody (neither her push nor her SMS later), on the timeline as reaching her
    unpaged; bo's step follows on its own time (6m), not at once as after a step that
    reached nobody. A repeat reminds her as everyone: she has not acknowledged."""
    sim = Sim.open("SEV2")
    sim.fire_next()  # ana, 0m
    _raise(sim, 1, "ana")
    sim.run(until=T0 + 46 * MIN)
    assert [(m, who) for m, who, _ in sim.pages[1:]] == [
        (6, "bo"), (16, "dee"), (31, "erin"), (31, "exec-status"), (46, "ana")]
    fired = next(d for m, kind, d in sim.events if kind is EventKind.STEP_FIRED and m == 1)
    assert (fired["recipients"], fired["not_paged"]) == (
        [], {"user": "ana", "why": "raised the severity"})


def test_who_raises_the_severity_is_left_out_of_a_later_step_of_that_run_only() -> None:
    """bo (step 2's person) raises it: ana at once; step 2 reaches bo unpaged; dee after."""
    sim = Sim.open("SEV2")
    sim.fire_next()
    plan = _raise(sim, 1, "bo")
    assert [p.recipient for p in plan.pages] == []  # armed; fired next, as the timer does
    sim.run(until=T0 + 16 * MIN)
    assert [(m, who) for m, who, _ in sim.pages[1:]] == [(1, "ana"), (3, "ana"), (16, "dee")]


@pytest.mark.parametrize(
    ("steps", "repeat_after", "window"),
    [
        pytest.param((Step(timedelta(0), (user("a"),)), Step(7 * MIN, (user("b"),))), 15 * MIN,
                     7 * MIN, id="second-step-after"),
        pytest.param((Step(MIN, (user("a"),)), Step(3 * MIN, (user("b"),),
                      relative_to_previous=True)), 15 * MIN, 3 * MIN, id="second-step-delay"),
        pytest.param((Step(timedelta(0), (user("a"),)),), 9 * MIN, 9 * MIN, id="one-step"),
    ],
)
def test_answer_window(steps: tuple[Step, ...], repeat_after: timedelta, window: timedelta
                       ) -> None:
    assert answer_window(Policy("p", steps, repeat_after=repeat_after)) == window


def _in_state(name: str) -> Sim:
    if name == "deferred":
        return Sim.open("SEV3", at=T0.replace(hour=23))
    sim = Sim.open("SEV2", policy=replace(STANDARD, repeat=0))
    if name == "exhausted":
        sim.run()
    elif name == "acknowledged":
        sim.act("ack", 1)
    elif name == "snoozed":
        sim.act("snooze", 1, until=T0 + 60 * MIN)
    return sim


@pytest.mark.parametrize(
    "name", ["active", "deferred", "acknowledged", "snoozed", "exhausted"]
)
def test_resolve_from_every_open_state(name: str) -> None:
    sim = _in_state(name)
    assert sim.state.status == name
    plan = sim.act("resolve", 50)
    assert plan.incident_state is IncidentState.RESOLVED
    assert plan.state.status is EscalationStatus.RESOLVED
    assert set(plan.cancel) == set(DeadlineKind)
    assert [(e.kind, e.actor) for e in plan.events] == [(EventKind.RESOLVED, "ana")]
    assert sim.deadlines == {}


@pytest.mark.parametrize(
    ("name", "action", "kw", "message"),
    [
        ("acknowledged", "ack", {}, "already acknowledged \\(by ana\\)"),
        ("resolved", "ack", {}, "already resolved \\(by ana\\)"),
        ("active", "unack", {}, "triggered and not acknowledged"),
        ("resolved", "unack", {}, "already resolved"),
        ("resolved", "snooze", {"until": T0 + 90 * MIN}, "already resolved"),
        ("active", "snooze", {"until": T0 + 50 * MIN}, "not after now"),
        ("active", "snooze", {"until": T0}, "not after now"),
        ("resolved", "resolve", {}, "already resolved"),
    ],
    ids=["ack-twice", "ack-resolved", "unack-triggered", "unack-resolved", "snooze-resolved",
         "snooze-until-now", "snooze-into-past", "resolve-twice"],
)
def test_invalid_transitions_raise(
    name: str, action: str, kw: dict[str, Any], message: str
) -> None:
    sim = _in_state("active")
    if name == "acknowledged":
        sim.act("ack", 1)
        sim.incident = replace(sim.incident, acknowledged_by="ana")
    elif name == "resolved":
        sim.act("resolve", 1)
        sim.incident = replace(sim.incident, resolved_by="ana")
    with pytest.raises(InvalidTransition, match=message):
        sim.act(action, 50, **kw)


def test_people_actions_carry_the_actor() -> None:
    sim = Sim.open()
    for action, kw, kind in [("snooze", {"until": T0 + 9 * MIN}, EventKind.SNOOZED),
                             ("unack", {}, EventKind.UNACKNOWLEDGED),
                             ("ack", {}, EventKind.ACKNOWLEDGED)]:
        plan = sim.act(action, 1, **kw)
        assert (plan.events[0].kind, plan.events[0].actor) == (kind, "ana")


# -- nobody to page, failed delivery ----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "unresolved"),
    [
        ({"on_call_table": {("payments", "primary"): "ana"}},
         "schedule payments layer secondary: nobody on call"),
        ({"on_call_table": {("payments", "primary"): "ana", ("payments", "secondary"): "zed"}},
         "unknown user zed"),
    ],
    ids=["nobody-on-call", "unknown-user"],
)
def test_step_that_reaches_nobody_escalates_at_once(
    changes: dict[str, Any], unresolved: str
) -> None:
    sim = Sim.open("SEV2", **changes)
    for _ in range(3):  # step 0, ana's delayed SMS, step 1
        sim.fire_next()
    fired = [d for _, k, d in sim.events if k is EventKind.STEP_FIRED][-1]
    assert (fired["step"], fired["recipients"], fired["unresolved"]) == (1, [], [unresolved])
    assert sim.deadlines[(DeadlineKind.STEP, "0:0:2")].due == T0 + 5 * MIN  # not at 15m
    sim.fire_next()
    assert sim.pages[-1] == (5, "dee", "escalated")


def test_a_repeat_after_a_last_step_that_reached_nobody_waits_repeat_after() -> None:
    """The repeat reminds bo, whom step 1 paged: a missing layer behind him is no reason to
    remind him sooner. The end of the last cycle's wait is at once: nobody it paged waits."""
    policy = Policy("p", (Step(timedelta(0), (user("bo"),)), Step(5 * MIN, (sched("tertiary"),))),
                    repeat=1, repeat_after=15 * MIN)
    sim = Sim.open(policy=policy)
    sim.run()
    assert sim.pages == [(0, "bo", "triggered"), (20, "bo", "reminder")]
    assert sim.events[-1][:2] == (25, EventKind.ESCALATION_EXHAUSTED)


def test_repeats_behind_a_last_step_that_reaches_nobody_do_not_page_in_one_burst() -> None:
    """Both steps due at once and the second reaching nobody: each repeat began at once, and
    bo got all four pages in the same second (in one transaction: the responder fires steps
    due at once in it)."""
    policy = Policy("p", (Step(timedelta(0), (user("bo"),)), Step(timedelta(0), (user("zed"),))),
                    repeat=3, repeat_after=15 * MIN)
    sim = Sim.open(policy=policy)
    sim.run()
    assert [(at, who) for at, who, _ in sim.pages] == [(0, "bo"), (15, "bo"), (30, "bo"),
                                                       (45, "bo")]
    assert [at for at, _ in exhausted(sim)] == [45]


def test_the_same_person_twice_in_a_step_is_paged_once() -> None:
    policy = Policy("p", (Step(timedelta(0), (sched("primary"), user("ana"))),))
    sim = Sim.open(policy=policy)
    plan = sim.fire_next()
    assert [p.url for p in plan.pages] == ["json://pager/ana"]


# Every page of ana's (push and SMS) failed: what the store holds once her SMS failed too.
ANA_FAILED = [("ana", PageFate.FAILED)]


def test_delivery_failed_moves_the_next_step_to_now() -> None:
    sim = Sim.open()
    sim.fire_next()
    plan = sim.apply(delivery_failed(sim.state, sim.incident, 0, 0, 0, ANA_FAILED, T0 + MIN),
                     T0 + MIN)
    assert plan.arm == (Deadline(T0 + MIN, DeadlineKind.STEP, "0:0:1"),)
    assert plan.events[0].kind is EventKind.NOTIFICATION_FAILED
    assert plan.events[0].detail["escalating_early"] is True
    sim.run(until=T0 + MIN)
    assert sim.pages[-1] == (1, "bo", "escalated")


@pytest.mark.parametrize(
    ("step", "cycle", "run"),
    [(1, 0, 0), (0, 1, 0), (0, 0, 1)],
    ids=["step-not-fired", "other-cycle", "other-run"],
)
def test_delivery_failed_for_another_step_changes_nothing(step: int, cycle: int, run: int) -> None:
    sim = Sim.open()
    sim.fire_next()
    failed = delivery_failed(sim.state, sim.incident, step, cycle, run, ANA_FAILED, T0 + MIN)
    assert failed == Plan(sim.state)


def test_a_repeat_after_a_last_step_whose_pages_all_failed_waits_repeat_after() -> None:
    """dee, the last SEV2 step (15m), cannot be reached: every page to her failed by 16m.
    The repeat still begins at 30m, `repeat_after` after the step, as after a last step that
    reached nobody when it fired: it reminds ana and bo, whom the earlier steps paged and
    who are within their wait (begun at once, it re-paged them at 16m). The timeline says
    why nothing moved."""
    sim = Sim.open("SEV2")
    sim.run(until=T0 + 15 * MIN)
    plan = sim.apply(delivery_failed(sim.state, sim.incident, 2, 0, 0, [("dee", PageFate.FAILED)],
                                     T0 + 16 * MIN), T0 + 16 * MIN)
    assert (plan.arm, plan.cancel) == ((), ())
    assert [(e.kind, e.detail) for e in plan.events] == [(EventKind.NOTIFICATION_FAILED, {
        "escalating_early": False, "step": 2, "cycle": 0, "run": 0, "next_step": 0,
        "unreachable": ["dee"], "repeat_at": (T0 + 30 * MIN).isoformat()})]
    sim.run(until=T0 + 35 * MIN)
    assert sim.pages[-4:] == [(15, "dee", "escalated"), (30, "ana", "reminder"),
                              (32, "ana", "reminder"), (35, "bo", "reminder")]


def test_delivery_failed_once_acknowledged_changes_nothing() -> None:
    sim = Sim.open()
    sim.fire_next()
    sim.act("ack", 1)
    assert delivery_failed(sim.state, sim.incident, 0, 0, 0, ANA_FAILED, T0 + MIN) == Plan(
        sim.state)


def pair(first: Target) -> Policy:
    """Two people at once (`first`, and erin), then the lead 10 minutes later."""
    return Policy("pair", (Step(timedelta(0), (first, user("erin"))),
                           Step(10 * MIN, (user("dee"),))),
                  repeat=1, repeat_after=10 * MIN)


SENT, FAILED = PageFate.SENT, PageFate.FAILED
# (first of the pair, what happens: (person, fate, minute) or (action, minute), the pages of
# the first 10 minutes as (minute, person)). bo is the secondary (a push); ana the primary
# (a push, and an SMS 2 minutes later); erin a push.
EARLY_ESCALATION = [
    ("one-of-two-failed", sched("secondary"),
     [("bo", SENT, 0.1), ("erin", FAILED, 0.2)],
     [(0, "bo"), (0, "erin"), (10, "dee")]),
    ("one-failed-while-the-other-is-in-flight", sched("secondary"),
     [("erin", FAILED, 0.1), ("bo", SENT, 0.2)],
     [(0, "bo"), (0, "erin"), (10, "dee")]),
    ("both-failed", sched("secondary"),
     [("bo", FAILED, 0.1), ("erin", FAILED, 0.2)],
     [(0, "bo"), (0, "erin"), (0.2, "dee")]),
    ("one-failed-the-others-sms-pending-then-sent", sched("primary"),
     [("ana", FAILED, 0.1), ("erin", FAILED, 0.2), ("ana", SENT, 2.1)],
     [(0, "ana"), (0, "erin"), (2, "ana"), (10, "dee")]),
    ("one-failed-the-others-sms-pending-then-failed", sched("primary"),
     [("ana", FAILED, 0.1), ("erin", FAILED, 0.2), ("ana", FAILED, 2.1)],
     [(0, "ana"), (0, "erin"), (2, "ana"), (2.1, "dee")]),
    ("failed-in-run-1-after-sent-in-run-0", sched("secondary"),
     [("bo", SENT, 0.1), ("erin", SENT, 0.1), ("ack", 1), ("unack", 2),
      ("bo", FAILED, 2.1), ("erin", FAILED, 2.2)],
     [(0, "bo"), (0, "erin"), (2, "bo"), (2, "erin"), (2.2, "dee")]),
]


@pytest.mark.parametrize(
    ("first", "script", "expected"), [case[1:] for case in EARLY_ESCALATION],
    ids=[case[0] for case in EARLY_ESCALATION],
)
def test_a_step_escalates_early_only_when_nobody_it_paged_can_be_reached(
    first: Target, script: list[tuple[Any, ...]], expected: list[tuple[float, str]]
) -> None:
    sim = Sim.open(policy=pair(first))
    for entry in script:
        if len(entry) == 3:
            sim.deliver(*entry)
        else:
            sim.run(until=T0 + entry[1] * MIN)
            sim.act(*entry)
    sim.run(until=T0 + 10 * MIN)
    assert [(minute, who) for minute, who, _ in sim.pages] == expected
    early = [d for _, kind, d in sim.events if d.get("escalating_early")]
    assert [d["unreachable"] for d in early] == (
        [] if expected[-1] == (10, "dee") else [["ana", "erin"] if first.layer == "primary"
                                                else ["bo", "erin"]])


# -- persistence and secrets ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["active", "deferred", "acknowledged", "snoozed", "exhausted"]
)
def test_state_round_trips_through_json(name: str) -> None:
    sim = _in_state(name)
    sim.run(until=T0 + 5 * MIN)
    state = sim.state
    restored = state_from_dict(json.loads(json.dumps(state_to_dict(state))))
    assert restored == state


def test_state_round_trip_keeps_every_policy_field() -> None:
    policy = Policy(
        "p",
        (Step(timedelta(0), (user("cy"),)),
         Step(90 * timedelta(seconds=1), (sched("secondary"), user("bo")), StepMode.ROUND_ROBIN,
              relative_to_previous=True, severities=frozenset({"SEV1", "SEV2"}))),
        repeat=3, repeat_after=timedelta(0), reack_after=timedelta(0), ahead=1,
    )
    state = EscalationState(policy, EscalationStatus.SNOOZED, run=2, cycle=1, next_step=0,
                            cycle_started_at=T0, last_fired_at=T0 + MIN, last_fired_step=0,
                            last_fired_cycle=1, snoozed_until=T0 + 9 * MIN, turns=((1, 1),))
    assert state_from_dict(json.loads(json.dumps(state_to_dict(state)))) == state
    # A state stored before round-robin turns were kept has none.
    older = {k: v for k, v in state_to_dict(state).items() if k != "turns"}
    assert state_from_dict(older) == replace(state, turns=())


@pytest.mark.parametrize(
    "name", ["active", "deferred", "acknowledged", "snoozed", "exhausted", "every-field"]
)
def test_the_stored_form_writes_the_text_of_state_to_dict(name: str) -> None:
    """state_to_stored carries the policy's snapshot encoded once per Policy: the store's
    encoder writes the same text from it as from state_to_dict, the first time and from
    memory after; another Policy, even one equal but for a field, has its own."""
    if name == "every-field":
        policy = Policy(
            "p",
            (Step(timedelta(0), (user("cy"),)),
             Step(90 * timedelta(seconds=1), (sched("secondary"), user("bo")),
                  StepMode.ROUND_ROBIN, relative_to_previous=True,
                  severities=frozenset({"SEV1", "SEV2"}))),
            repeat=3, repeat_after=timedelta(0), reack_after=timedelta(0), ahead=1,
        )
        state = EscalationState(policy, EscalationStatus.ACTIVE, cycle_started_at=T0,
                                turns=((1, 0),), any_hour=True)
    else:
        sim = _in_state(name)
        sim.run(until=T0 + 5 * MIN)
        state = sim.state
    for _ in range(2):
        assert dumps(state_to_stored(state)) == dumps(state_to_dict(state))
    other = replace(state, policy=replace(state.policy, repeat=state.policy.repeat + 1))
    assert dumps(state_to_stored(other)) == dumps(state_to_dict(other))
    assert dumps(state_to_stored(other)) != dumps(state_to_stored(state))
    assert state_from_dict(loads(dumps(state_to_stored(state)))) == state


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("policy"), "lacks the key 'policy'"),
        (lambda d: d.update(status="sleeping"), "malformed"),
        (lambda d: d.update(version=99), "unsupported version 99"),
        (lambda d: d.update(cycle_started_at="2026-01-05T10:00:00"), "no UTC offset"),
        (lambda d: d["policy"].update(steps=[]), "needs at least one step"),
    ],
    ids=["missing-key", "bad-status", "future-version", "naive-time", "no-steps"],
)
def test_damaged_state_raises_value_error(mutate: Any, message: str) -> None:
    data = state_to_dict(Sim.open().state)
    mutate(data)
    with pytest.raises(ValueError, match=message):
        state_from_dict(data)


def test_a_policy_snapshot_decodes_once_to_one_immutable_policy() -> None:
    """States holding the same snapshot (whatever the order of its keys) share one Policy;
    another snapshot is another policy, and a damaged one is still refused each time."""
    data = state_to_dict(Sim.open().state)
    shuffled = json.loads(json.dumps(data))
    shuffled["policy"] = dict(reversed(list(shuffled["policy"].items())))
    first, again = state_from_dict(data), state_from_dict(shuffled)
    assert first.policy is again.policy
    other = json.loads(json.dumps(data))
    other["policy"]["repeat"] = 5
    assert state_from_dict(other).policy == replace(first.policy, repeat=5)
    damaged = json.loads(json.dumps(data))
    damaged["policy"]["steps"] = []
    for _ in range(2):
        with pytest.raises(ValueError, match="needs at least one step"):
            state_from_dict(damaged)


def test_urls_stay_out_of_reprs() -> None:
    secret = "slack://token-a/token-b"
    things = [
        Contact(secret),
        Channel("c", (secret,)),
        User("u", (Contact(secret),)),
        Page(recipient="u", recipient_kind=TargetKind.USER, url=secret, short=False,
             reason=MessageReason.TRIGGERED, step=0, cycle=0),
    ]
    assert all("token" not in repr(thing) for thing in things)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Contact("x", -MIN), "delay cannot be negative"),
        (lambda: Step(-MIN, (user("a"),)), "delay cannot be negative"),
        (lambda: Step(MIN, ()), "at least one target"),
        (lambda: Policy("p", ()), "needs at least one step"),
        (lambda: Policy("p", (Step(MIN, (user("a"),)),), repeat=-1), "repeat cannot be negative"),
    ],
    ids=["contact-delay", "step-delay", "step-targets", "policy-steps", "policy-repeat"],
)
def test_impossible_policies_are_rejected(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        start(STANDARD, incident(), SEV1, directory(), T0.replace(tzinfo=None))


# -- the escalation runs out ------------------------------------------------------------------

ONE_STEP = Policy("p", (Step(timedelta(0), (user("bo"),)),), repeat_after=10 * MIN)
END = Deadline(T0 + 10 * MIN, DeadlineKind.STEP, "0:0:end")


def exhausted(sim: Sim) -> list[tuple[float, dict[str, Any]]]:
    return [(at, d) for at, k, d in sim.events if k is EventKind.ESCALATION_EXHAUSTED]


def test_exhaustion_waits_for_the_last_steps_wait_then_fires_once() -> None:
    """The last step fired is not the end: its person has the policy's `repeat_after` to
    answer. Unanswered then, the escalation is exhausted, once, and waits on nothing."""
    sim = Sim.open(policy=ONE_STEP)
    sim.fire_next()
    assert sim.state.status is EscalationStatus.ACTIVE
    assert list(sim.deadlines.values()) == [END]
    sim.run(until=T0 + 10 * MIN - timedelta(microseconds=1))
    assert exhausted(sim) == []
    sim.run()
    assert exhausted(sim) == [(10, {"run": 0, "cycle": 0, "steps": 1, "repeats": 0,
                                    "why": "every step fired and nobody acknowledged"})]
    assert sim.state.status is EscalationStatus.EXHAUSTED
    assert sim.deadlines == {}
    # The same deadline again (a second replica's timer, a stale heap entry): nothing.
    again = on_deadline(sim.state, sim.incident, SEV1, END, sim.directory, {}, END.due)
    assert again == Plan(sim.state)


def test_exhaustion_survives_the_store_codec_midway() -> None:
    """The state waiting past the last step is stored as any other and read back the same."""
    sim = Sim.open(policy=ONE_STEP)
    sim.fire_next()
    stored = state_from_dict(loads(dumps(state_to_stored(sim.state))))
    assert stored == sim.state
    plan = on_deadline(stored, sim.incident, SEV1, END, sim.directory, {}, END.due)
    assert plan.state.status is EscalationStatus.EXHAUSTED


def test_an_acknowledgement_before_the_end_cancels_it() -> None:
    sim = Sim.open(policy=ONE_STEP)
    sim.fire_next()
    plan = sim.act("ack", 9)
    assert DeadlineKind.STEP in plan.cancel
    assert sim.deadlines == {}
    # Even if the store still held it, the end of an acknowledged escalation is nothing.
    late = on_deadline(sim.state, sim.incident, SEV1, END, sim.directory, {}, END.due)
    assert late == Plan(sim.state)


def test_an_acknowledgement_after_exhaustion_still_acknowledges() -> None:
    sim = Sim.open(policy=ONE_STEP)
    sim.run()
    plan = sim.act("ack", 30)
    assert plan.incident_state is IncidentState.ACKNOWLEDGED
    assert sim.state.status is EscalationStatus.ACKNOWLEDGED
    assert sim.kinds()[-2:] == [EventKind.ESCALATION_EXHAUSTED, EventKind.ACKNOWLEDGED]


def test_a_repeating_policy_is_exhausted_only_after_its_last_repeat() -> None:
    policy = replace(ONE_STEP, repeat=2, repeat_after=5 * MIN)
    sim = Sim.open(policy=policy)
    sim.run()
    # bo at 0, again at 5 and 10 (two repeats), and 5 minutes for the last of them.
    assert sim.pages == [(0, "bo", "triggered"), (5, "bo", "reminder"), (10, "bo", "reminder")]
    assert exhausted(sim) == [(15, {"run": 0, "cycle": 2, "steps": 1, "repeats": 2,
                                    "why": "every step fired and nobody acknowledged"})]


def test_a_last_step_nobody_could_be_reached_at_is_exhausted_at_once() -> None:
    sim = Sim.open(policy=replace(ONE_STEP, steps=(Step(timedelta(0), (user("zed"),)),)))
    sim.run()
    assert sim.pages == []
    assert [at for at, _ in exhausted(sim)] == [0]


def test_the_last_steps_pages_all_failed_exhausts_now() -> None:
    sim = Sim.open(policy=ONE_STEP)
    sim.fire_next()
    plan = sim.deliver("bo", PageFate.FAILED, 3)
    assert plan.arm == (Deadline(T0 + 3 * MIN, DeadlineKind.STEP, "0:0:end"),)
    sim.run()
    assert [at for at, _ in exhausted(sim)] == [3]
    assert sim.pages == [(0, "bo", "triggered")]  # the last step is not paged again


@pytest.mark.parametrize("how", ["restart", "reack"])
def test_a_new_run_after_exhaustion_runs_out_again_on_its_own(how: str) -> None:
    """A reassignment or raised severity (restart), or an acknowledged incident left alone
    (reack), starts a new run: escalation active again, to be exhausted at its own end."""
    sim = Sim.open(policy=replace(ONE_STEP, reack_after=60 * MIN))
    sim.run()
    assert sim.state.status is EscalationStatus.EXHAUSTED
    if how == "restart":
        now = T0 + 20 * MIN
        event = TimelineEvent(now, EventKind.SEVERITY_CHANGED, "cy")
        cause = RunCause(MessageReason.SEVERITY_RAISED, "cy", "SEV1")
        sim.apply(restart(sim.state, sim.incident, SEV1, event, now, cause=cause,
                          hours=sim.hours()), now)
    else:
        sim.act("ack", 20)
        sim.fire_next()  # the reack, at 80
    assert sim.state.status is EscalationStatus.ACTIVE
    sim.run()
    begun = 20 if how == "restart" else 80
    assert [(at, d["run"]) for at, d in exhausted(sim)] == [(10, 0), (begun + 10, 1)]


def test_a_restart_before_the_end_leaves_the_old_end_stale() -> None:
    sim = Sim.open(policy=ONE_STEP)
    sim.fire_next()
    now = T0 + 5 * MIN
    event = TimelineEvent(now, EventKind.REASSIGNED, "cy")
    plan = sim.apply(restart(sim.state, sim.incident, SEV1, event, now, hours=sim.hours()), now)
    assert DeadlineKind.STEP in plan.cancel
    old = on_deadline(sim.state, sim.incident, SEV1, END, sim.directory, {}, END.due)
    assert old == Plan(sim.state)
    sim.run()
    assert [(at, d["run"]) for at, d in exhausted(sim)] == [(15, 1)]
