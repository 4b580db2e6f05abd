"""Escalation at the edge: applies the pure engine's Plans to the store, in one transaction.

Three doors lead here: the incident lifecycle (an incident opened, changed or resolved, inside
the ingest transaction), the timer loop (deadlines came due), and people (ack, resolve, snooze,
unack through the API, a signed link or the CLI). Each asks `escalation` for a Plan and writes
all of it together: the new escalation state, the deadlines armed and cancelled, the incident's
state, the timeline, and the pages into the durable outbox. Because the fired deadline is
deleted in that same transaction, a step fires exactly once however ackd is stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.errors import InvalidTransition, StoreUnavailable
from receiver.core.frozen import frozen, replace
from receiver.core.model import (
    Action,
    EventKind,
    Incident,
    IncidentState,
    MessageReason,
    Severity,
    TimelineEvent,
)
from receiver.escalation import engine as escalation
from receiver.escalation import staleness
from receiver.escalation.codec import state_from_dict, state_to_stored
from receiver.escalation.keys import contact_digest
from receiver.escalation.plan import (
    Deadline,
    DeadlineKind,
    EscalationState,
    EscalationStatus,
    Page,
    Plan,
    RunCause,
)
from receiver.escalation.policy import (
    REASSIGNED_STEP,
    Channel,
    Policy,
    StepMode,
    TargetKind,
    User,
    WorkingHoursView,
)
from receiver.escalation.staleness import Reports, StaleAction, StaleRule
from receiver.escalation.timer import Scheduler
from receiver.escalation.unreached import step_lines
from receiver.incidents import facts
from receiver.incidents.service import UNHELD, observe_resolution
from receiver.maintenance import domain as maintenance
from receiver.maintenance.domain import Window
from receiver.oncall.roster import Roster
from receiver.oncall.schedules import OnCallMemo, next_start, within
from receiver.store import ArmedDeadline, OutboxMessage, Store, Transaction
from receiver.telemetry.logformat import fields
from receiver.telemetry.metrics import Metrics

log = logging.getLogger(__name__)
OpenedHook = Callable[[Transaction, Incident, datetime], Awaitable[None]]
DeadlineHandler = Callable[[Transaction, Incident, ArmedDeadline, datetime], Awaitable[None]]
# Steps due at once that fire inside one transaction before the timer loop takes over: enough
# for any real policy, and a bound on one transaction when nobody can be reached.
AT_ONCE_LIMIT = 32


class ConfigDirectory:
    """The engine's `Directory` of people, channels and schedules, over the running config."""

    def __init__(self, config: Config, on_call: OnCallMemo, roster: Roster | None = None) -> None:
        self._config = config
        self._on_call = on_call
        self._roster = roster

    def user(self, name: str) -> User | None:
        return self._config.users.get(name)

    def channel(self, name: str) -> Channel | None:
        return self._config.channels.get(name)

    def on_call(self, schedule: str, layer: str, at: datetime) -> str | None:
        found = self._config.schedules.get(schedule)
        if found is None or layer not in {lay.name for lay in found.layers}:
            return None
        if self._roster is not None:
            found = self._roster.schedule(found)  # run-time overrides and swaps laid over
        return self._on_call.on_call(found, layer, at)

    def schedule_layers(self, schedule: str) -> list[str] | None:
        found = self._config.schedules.get(schedule)
        return None if found is None else [layer.name for layer in found.layers]

    def team_schedule(self, team: str) -> str | None:
        found = self._config.teams.get(team)
        return None if found is None else found.schedule

    def team_lead(self, team: str) -> str | None:
        found = self._config.teams.get(team)
        return None if found is None else found.lead

    def working_hours(self, team: str) -> _Hours | None:
        found = self._config.teams.get(team)
        if found is None or found.working_hours is None:
            return None
        return _Hours(found.working_hours)


@frozen
class _Hours:
    hours: Any

    def within(self, at: datetime) -> bool:
        return within(self.hours, at)

    def next_start(self, at: datetime) -> datetime:
        return next_start(self.hours, at)


@frozen
class PlanMetrics:
    """What a written Plan tells the metrics once its transaction committed: the steps it
    fired, and whether it acknowledged (MTTA, from `first_paged_at`) or resolved (MTTR) the
    incident."""

    incident: Incident
    steps: tuple[str, ...]  # step_label of each
    acknowledged: bool
    resolved: bool
    first_paged_at: datetime | None  # read only when it acknowledged: facts.first_page


class Responder:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        config: Callable[[], Config],
        scheduler_factory: Callable[[Responder], Scheduler] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._config = config
        self._on_call = OnCallMemo()
        # Run-time overrides and swaps, laid over the config's schedules for every answer.
        self.roster = Roster()
        self.scheduler = (scheduler_factory or _default_scheduler)(self)
        self.outbox_listeners: list[Callable[[], None]] = []
        # Told the group key of each incident a person (or a policy) resolved, once committed.
        self.resolution_listeners: list[Callable[[str], None]] = []
        # When a webhook last reached each open incident (the ingest path notes it).
        self.reports = Reports(clock.now())
        # On a store replicas share, reports are saved there too (`save_reports`): the
        # replica whose timer fires the stale deadline may not be the one that took them.
        self.store_reports = False
        # Told the group key of each incident found stale, once committed: its next report
        # must take the full ingest path, which arms the stale deadline again.
        self.stale_listeners: list[Callable[[str], None]] = []
        # The maintenance windows (maintenance/service.py): while one covers an incident, its
        # pages are recorded, not sent, and its escalation waits for the window's end.
        self.windows: Callable[[], list[Window]] = list
        # The layers above escalation (the incident layer's status cadence): run inside the
        # transaction that opens an incident, and for the deadlines of the kinds they own.
        self.opened_hooks: list[OpenedHook] = []
        self.deadline_handlers: dict[str, DeadlineHandler] = {}

    # -- the incident lifecycle (called inside the ingest transaction) --------------------

    async def opened(self, tx: Transaction, incident: Incident, now: datetime) -> None:
        config = self._config()
        policy = config.policy_for(incident.policy, incident.team)
        directory = ConfigDirectory(config, self._on_call, self.roster)
        plan = escalation.start(
            policy, incident, config.severity(incident.severity), directory, now
        )
        await self._apply(tx, incident, plan, now)
        await self._stakeholders(tx, incident, MessageReason.STAKEHOLDER_DECLARED, now)
        for hook in self.opened_hooks:
            await hook(tx, incident, now)

    async def updated(self, tx: Transaction, incident: Incident, now: datetime) -> None:
        """New alerts joined the incident (the ingest path), or a person worked on it (the
        incident desk): an acknowledged incident's reack waits `reack_after` from now."""
        if not escalation.moves_on_update(incident):
            return
        state = await self._state(tx, incident)
        if state is not None:
            await self._apply(tx, incident, escalation.on_update(state, incident, now), now)

    async def resolved(
        self, tx: Transaction, incident: Incident, actor: str, now: datetime
    ) -> None:
        """Alertmanager resolved it: the ingest path already set the state and the event."""
        state = await self._state(tx, incident)
        if state is None:
            return
        plan = escalation.resolve(state, incident, actor, now)
        recorded = [e for e in plan.events if e.kind is not EventKind.RESOLVED]
        await self._apply(tx, incident, _without_transition(plan, recorded), now)
        await self._notify_resolution(tx, incident, actor, now)

    async def reported(
        self, tx: Transaction, incident_id: int, rule: StaleRule | None, now: datetime
    ) -> None:
        """A webhook reached this open incident through a transaction: make sure a stale
        deadline waits for it (armed once; later reports only move the note in `reports`)."""
        if rule is None:
            return
        if self.store_reports:
            tx.after_commit(partial(self.reports.save, incident_id, now))
        kind = DeadlineKind.STALE.value
        armed = await tx.arm_once(incident_id, now + rule.after, kind, rule.key)
        if armed is not None:
            tx.after_commit(lambda: self._arm_all((armed,)))

    async def save_reports(self) -> None:
        """Save the reports noted since the last save, for the other replicas' stale checks
        (one statement for all); kept for the next save if the store is away."""
        pending = self.reports.unsaved()
        if not pending:
            return
        try:
            await self._store.write(lambda tx: tx.note_reports(pending))
        except StoreUnavailable as exc:
            self.reports.save_failed(pending)
            log.warning("cannot save %d incident report(s) for the other replicas: %s",
                        len(pending), exc)

    async def save_reports_every(self, period: timedelta = staleness.SAVE_EVERY) -> None:
        """The loop that saves reports, on a store replicas share (the daemon runs it)."""
        while True:
            await self._clock.sleep_until(self._clock.now() + period)
            await self.save_reports()

    # -- deadlines ------------------------------------------------------------------------

    async def fire(self, deadline_ids: list[int]) -> None:
        """Fire due deadlines: each is taken out of the store with its effects, or not at all."""

        async def job(tx: Transaction) -> None:
            # One instant: the deadlines are taken, decided and applied at it. Those not
            # taken were cancelled (acknowledged, resolved), fired already (by another
            # replica, maybe), or moved later.
            now = self._clock.now()
            rows = await tx.take_deadlines(deadline_ids, now)
            if rows:
                # Counted here, once, by the replica that took each, against its due time
                # (every replica's timer holds every deadline: a count there was one per
                # replica, and against the time that timer planned to try it).
                late = [(now - row.due).total_seconds() for row in rows]
                tx.after_commit(partial(self._observe_lateness, late))
            for row in rows:
                await self._fire_one(tx, row, now)

        await self._store.write(job)

    def _observe_lateness(self, late: list[float]) -> None:
        for seconds in late:
            self._metrics.deadline_lateness.observe(seconds)

    async def _fire_one(self, tx: Transaction, row: ArmedDeadline, now: datetime) -> None:
        incident = await tx.incident(row.incident_id)
        if row.kind == DeadlineKind.STALE.value:
            await self._fire_stale(tx, incident, row, now)
            return
        if row.kind == DeadlineKind.MAINTENANCE.value:
            await self._fire_maintenance(tx, incident, row, now)
            return
        handler = self.deadline_handlers.get(row.kind)
        if handler is not None:
            await handler(tx, incident, row, now)
            return
        state = await self._state(tx, incident)
        if state is not None:
            deadline = Deadline(row.due, DeadlineKind(row.kind), row.key)
            plan = await self._plan_deadline(tx, incident, state, deadline, now)
            await self._apply(tx, incident, plan, now)

    async def _plan_deadline(
        self,
        tx: Transaction,
        incident: Incident,
        state: EscalationState,
        deadline: Deadline,
        now: datetime,
    ) -> Plan:
        config = self._config()
        policy = state.policy
        # Only round-robin steps read their cursor.
        keys = [(policy.name, i - policy.ahead) for i, step in enumerate(policy.steps)
                if step.mode is StepMode.ROUND_ROBIN]
        cursors = await tx.round_robin(keys) if keys else {}
        return escalation.on_deadline(
            state, incident, config.severity(incident.severity), deadline,
            ConfigDirectory(config, self._on_call, self.roster), cursors, now,
        )

    async def _fire_stale(
        self, tx: Transaction, incident: Incident, row: ArmedDeadline, now: datetime
    ) -> None:
        """The stale deadline came due: reported since, it waits again from the last report;
        not, the incident is stale: the timeline says so, whoever holds it is told once, and
        a route that says so has it resolved."""
        # Reports other replicas took (taken out: the wait armed next, from the last report,
        # holds what they say).
        stored = await tx.take_report(incident.id) if self.store_reports else None
        if not incident.is_open:
            return
        rule = StaleRule.from_key(row.key)
        last = self.reports.last(incident.id)
        if stored is not None:
            last = max(last, stored)
        # Another replica's latest reports may not be saved yet: give them time to be.
        grace = staleness.SAVE_GRACE if self.store_reports else timedelta(0)
        again = staleness.check(last + grace, rule, now)
        if again is not None:
            armed = await tx.arm(incident.id, [(again, row.kind, row.key)])
            tx.after_commit(lambda: self._arm_all(armed))
            return
        detail = {"after": rule.after.total_seconds(), "action": rule.action.value,
                  "last_reported": last.isoformat()}
        await tx.append(incident.id, [TimelineEvent(now, EventKind.STALE, "ackd", detail)])
        holders = await self._holders(tx, incident)
        await self._notify_users(tx, incident, holders, MessageReason.STALE,
                                 staleness.RESOLVED_BY, now,
                                 stale_after=rule.after.total_seconds())
        tx.after_commit(partial(self._observe_stale, incident, rule.action))
        if rule.action is StaleAction.RESOLVE:
            state = await self._state(tx, incident)
            if state is not None:
                plan = escalation.resolve(state, incident, staleness.RESOLVED_BY, now)
                await self._apply(tx, incident, plan, now)
                await self._stakeholders(tx, incident, MessageReason.STAKEHOLDER_RESOLVED, now)
            return
        for listener in self.stale_listeners:
            tx.after_commit(partial(listener, incident.group_key))

    async def _fire_maintenance(
        self, tx: Transaction, incident: Incident, row: ArmedDeadline, now: datetime
    ) -> None:
        """The window that held the incident's pages ended (or was deleted): still triggered
        and held by no other window, it escalates from its first step."""
        if incident.state is not IncidentState.TRIGGERED:
            return  # resolved, or somebody took it meanwhile: nobody to page
        window = await self._covering(tx, incident, now)
        if window is not None:  # another window (or a longer one) holds it still
            armed = await tx.arm(incident.id, [(window.ends_at, row.kind, window.label)])
            tx.after_commit(lambda: self._arm_all(armed))
            return
        state = await self._state(tx, incident)
        if state is None or state.status not in (EscalationStatus.ACTIVE,
                                                 EscalationStatus.EXHAUSTED):
            return  # snoozed or deferred: its own deadline starts it again
        await tx.cancel(incident.id, [DeadlineKind.MAINTENANCE.value])
        severity, hours = self._urgency(incident)
        plan = escalation.resume(state, severity, hours, row.key, now)
        await self._apply(tx, incident, plan, now)

    async def _covering(self, tx: Transaction, incident: Incident, now: datetime) -> Window | None:
        windows = self.windows()
        if not maintenance.needs_alerts(windows, incident.team, now):
            return None  # no window is active for this team: no read
        firing = await tx.firing_labels(incident.id)
        return maintenance.covering(windows, incident.team, firing, now)

    async def _held(self, tx: Transaction, incident: Incident, plan: Plan, now: datetime) -> Plan:
        """A plan that pages, while a maintenance window covers the incident: each page is on
        the timeline as suppressed instead of in the outbox, the steps and delayed contacts
        wait no more, and one deadline waits for the window's end (see _fire_maintenance)."""
        if not plan.pages:
            return plan
        window = await self._covering(tx, incident, now)
        if window is None:
            return plan
        held = (DeadlineKind.STEP, DeadlineKind.CONTACT)
        # One wait per incident, for the window that ends last: a second would resume it twice.
        await tx.cancel(incident.id, [kind.value for kind in (*held, DeadlineKind.MAINTENANCE)])
        armed = await tx.arm(incident.id,
                             [(window.ends_at, DeadlineKind.MAINTENANCE.value, window.label)])
        tx.after_commit(lambda: self._arm_all(armed))
        suppressed = tuple(
            TimelineEvent(now, EventKind.PAGE_SUPPRESSED, "maintenance", {
                "recipient": page.recipient, "recipient_kind": str(page.recipient_kind),
                "contact": page.contact, "reason": page.reason, "step": page.step,
                "window": window.label, "until": window.ends_at.isoformat()})
            for page in plan.pages
        )
        tx.after_commit(partial(self._observe_held, incident, len(plan.pages)))
        return replace(plan, pages=(), arm=tuple(d for d in plan.arm if d.kind not in held),
                       events=(*plan.events, *suppressed))

    def _observe_held(self, incident: Incident, pages: int) -> None:
        self._metrics.child(self._metrics.notifications_suppressed, "maintenance").inc(pages)
        log.info("incident #%d: %d page(s) held by a maintenance window", incident.id, pages,
                 extra=fields("pages_suppressed", incident.id, incident.team))

    async def maintenance_changed(self) -> None:
        """A window was deleted or the config changed: every incident a window holds looks
        again now, and escalates if none holds it any more."""
        now = self._clock.now()

        async def job(tx: Transaction) -> list[ArmedDeadline]:
            return await tx.bring_forward(DeadlineKind.MAINTENANCE.value, now)

        armed = await self._store.write(job)
        self._arm_all(armed)

    async def _holders(self, tx: Transaction, incident: Incident) -> list[str]:
        """Who holds the incident: whoever acknowledged it (if a person we know), else
        everyone paged for it so far."""
        config = self._config()
        by = incident.acknowledged_by
        if incident.state is IncidentState.ACKNOWLEDGED and by is not None and by in config.users:
            return [by]
        return await tx.paged_recipients(incident.id)

    def _observe_stale(self, incident: Incident, action: StaleAction) -> None:
        m = self._metrics
        m.child(m.incidents_stale, incident.team, incident.severity, action.value).inc()

    async def delivery_failed(self, incident_id: int, message: OutboxMessage) -> None:
        """A page finally failed. If nobody its step paged can be reached (every page of that
        step, run and cycle to every person failed, none is still to go), escalate now rather
        than wait for a deadline nobody can meet: `escalation.delivery_failed` decides, on
        what the store holds of the step's pages."""
        step, cycle, run = message.step, message.cycle, message.run
        if message.recipient_kind != "user" or step is None or run is None:
            return

        async def job(tx: Transaction) -> None:
            # The failed row is finished in its own commit just before this one runs.
            incident = await tx.incident(incident_id)
            state = await self._state(tx, incident)
            if state is None or not incident.is_open:
                return
            fates = await tx.step_pages(incident_id, run, cycle, step)
            now = self._clock.now()
            plan = escalation.delivery_failed(state, incident, step, cycle, run, fates, now)
            await self._apply(tx, incident, plan, now)

        await self._store.write(job)

    # -- people ---------------------------------------------------------------------------

    async def act(
        self,
        incident_id: int,
        action: Action,
        actor: str,
        until: datetime | None = None,
        *,
        via: str = "",
    ) -> Incident:
        """Acknowledge, resolve, snooze or un-acknowledge; raises InvalidTransition. `actor`
        is the person; `via` how they acted, when not with their own token ("link")."""

        async def job(tx: Transaction) -> Incident:
            incident = await tx.incident(incident_id)
            now = self._clock.now()
            state = await self._state(tx, incident)
            if state is None:
                raise InvalidTransition(f"incident {incident_id} has no escalation to act on")
            plan = self._decide(action, state, incident, actor, until, now, via)
            await self._apply(tx, incident, plan, now)
            # Not to the person who acted: the phone that just acted needs no note of it.
            if action is Action.RESOLVE:
                await self._notify_resolution(tx, incident, actor, now, leave_out=actor)
            elif action is Action.ACK:
                await self._notify_paged(tx, incident, MessageReason.ACKNOWLEDGED, actor, now,
                                         leave_out=actor)
            return await tx.incident(incident_id)

        incident = await self._store.write(job)
        log.info("incident #%d %s by %s%s", incident_id, action.done, actor,
                 UNHELD if incident.resolved_unacknowledged else "",
                 extra=fields(f"incident_{action.done}", incident_id, incident.team))
        return incident

    def _decide(
        self,
        action: Action,
        state: EscalationState,
        incident: Incident,
        actor: str,
        until: datetime | None,
        now: datetime,
        via: str,
    ) -> Plan:
        if action is Action.ACK:
            return escalation.acknowledge(state, incident, actor, now, via=via)
        if action is Action.RESOLVE:
            return escalation.resolve(state, incident, actor, now, via=via)
        if action is Action.UNACK:
            severity, hours = self._urgency(incident)
            return escalation.unacknowledge(state, incident, actor, now, severity=severity,
                                            hours=hours, via=via)
        if until is None or until <= now:
            raise InvalidTransition("snooze needs a time in the future")
        return escalation.snooze(state, incident, actor, until, now, via=via)

    # -- applying a plan ------------------------------------------------------------------

    async def _state(
        self, tx: Transaction, incident: Incident
    ) -> EscalationState | None:
        raw = await tx.escalation(incident.id)
        return None if raw is None else state_from_dict(raw)

    async def _apply(self, tx: Transaction, incident: Incident, plan: Plan, now: datetime) -> None:
        """Write the plan; its metrics are observed once the transaction commits.

        A step due at once (the first step of a new incident, the next one after a step that
        reached nobody) fires right here, in this transaction: what the timer loop would do a
        moment later, without a durable deadline to write and take. A chain of such steps is
        cut after AT_ONCE_LIMIT, and the timer loop takes over from there."""
        for _ in range(AT_ONCE_LIMIT):
            plan = await self._held(tx, incident, plan, now)
            at_once = _step_due(plan, now)
            incident = await self._write(tx, incident, plan, now, at_once)
            if at_once is None:
                return
            plan = await self._plan_deadline(tx, incident, plan.state, at_once, now)
        await self._write(tx, incident, await self._held(tx, incident, plan, now), now, None)

    async def _write(
        self, tx: Transaction, incident: Incident, plan: Plan, now: datetime,
        at_once: Deadline | None,
    ) -> Incident:
        """Write the plan, except the deadline `at_once` and the state it leaves behind (the
        plan of that deadline comes next and writes its own). The incident as it is now."""
        if at_once is None:
            await tx.set_escalation(incident.id, state_to_stored(plan.state))
        # str() of a StrEnum is its value, without `.value`'s Python-level descriptor (a
        # resolution cancels every kind of deadline).
        if plan.cancel:
            await tx.cancel(incident.id, [str(kind) for kind in plan.cancel])
        # Each part only when the plan has one: a new incident's first plan (its first step,
        # due at once, fired next) writes nothing here.
        acknowledged = resolved = False
        if plan.incident_state is not None and plan.incident_state is not incident.state:
            acknowledged, resolved = await self._transition(tx, incident, plan, now)
        if plan.events:
            plan = await self._append(tx, incident, plan, now)
        if plan.pages:
            await self._enqueue(tx, incident, [_page_message(p) for p in plan.pages], now)
        # The deadlines last: arming one answers its id, so on PostgreSQL it is a round trip,
        # and it carries what the plan wrote before it (held: the state, events, pages), where
        # a fired step's events and page went in a statement of their own after it.
        later = [(d.due, str(d.kind), d.key) for d in plan.arm if d is not at_once]
        if later:
            armed = await tx.arm(incident.id, later)
            tx.after_commit(lambda: self._arm_all(armed))
        if plan.round_robin_turns:
            await tx.advance_round_robin(plan.round_robin_turns)
        steps = tuple(
            step_label(plan.state.policy, int(e.detail.get("step", 0)))
            for e in plan.events if e.kind is EventKind.STEP_FIRED
        )
        fresh = await tx.incident(incident.id)
        if steps or acknowledged or resolved:  # what _observe counts
            # MTTA counts from the first page, which the timeline holds (once per incident).
            paged = facts.first_page(await tx.events_since(incident.id, incident.opened_at)) \
                if acknowledged else None
            tx.after_commit(partial(
                self._observe, PlanMetrics(fresh, steps, acknowledged, resolved, paged)))
        return fresh

    async def _append(
        self, tx: Transaction, incident: Incident, plan: Plan, now: datetime
    ) -> Plan:
        """The plan's events onto the timeline; an exhaustion among them told (`_ran_out`),
        a step that paged nobody logged. The plan with the events as written."""
        ran_out = next((e for e in plan.events if e.kind is EventKind.ESCALATION_EXHAUSTED),
                       None)
        if ran_out is not None:
            plan = await self._ran_out(tx, incident, plan, ran_out, now)
        await tx.append(incident.id, plan.events)
        unreached = step_lines(incident.id, plan.events)  # a page to nobody is never silent
        if unreached:
            tx.after_commit(partial(_log_lines, incident, unreached))
        return plan

    async def _ran_out(
        self, tx: Transaction, incident: Incident, plan: Plan, event: TimelineEvent,
        now: datetime,
    ) -> Plan:
        """The escalation ran out (the end of the last step's wait, nobody acknowledging): its
        event names whom this run paged, the severity's stakeholder channels are told in this
        transaction, and once it commits a WARNING line and ackd_escalations_exhausted_total
        say so. The deadline taken in this transaction makes it once, on any replica."""
        timeline = await tx.events_since(incident.id, incident.opened_at)
        paged = facts.paged_in_run(timeline, plan.state.run)
        told = replace(event, detail={**event.detail, "paged": paged})
        names = self._config().stakeholders.get(incident.severity, ())
        await self.tell_stakeholders(tx, incident, names, MessageReason.STAKEHOLDER_EXHAUSTED,
                                     now)
        tx.after_commit(partial(self._observe_exhausted, incident, told.detail))
        return replace(plan, events=tuple(told if e is event else e for e in plan.events))

    def _observe_exhausted(self, incident: Incident, detail: Mapping[str, Any]) -> None:
        log.warning(
            "incident #%d (team %s, %s): escalation exhausted: %s (policy %s, %d step(s),"
            " %d repeat(s)); paged: %s",
            incident.id, incident.team, incident.severity, detail["why"], incident.policy,
            detail["steps"], detail["repeats"], ", ".join(detail["paged"]) or "nobody",
            extra=fields("escalation_exhausted", incident.id, incident.team))
        if not incident.is_drill:  # a drill's report says who answered; no alert for it
            m = self._metrics
            m.child(m.escalations_exhausted, incident.team, incident.severity).inc()

    async def restart(
        self, tx: Transaction, incident: Incident, event: TimelineEvent, now: datetime,
        policy: Policy | None = None, cause: RunCause | None = None, *, at_once: bool = False,
    ) -> None:
        """Escalation starts over (a reassignment, a raised severity: `cause`, which its
        pages name), in `tx`: the first step that applies pages at once, in this
        transaction; a low-urgency run outside working hours waits for them, unless
        `at_once` (a person named by whoever reassigned: their choice, at any hour, and
        the policy behind them with it: `EscalationState.any_hour`)."""
        state = await self._state(tx, incident)
        if state is None:
            raise InvalidTransition(f"incident {incident.id} has no escalation to restart")
        severity, hours = self._urgency(incident)
        plan = escalation.restart(state, incident, severity, event, now, policy, cause,
                                  hours=hours, any_hour=at_once)
        await self._apply(tx, incident, plan, now)

    async def take(
        self, tx: Transaction, incident: Incident, event: TimelineEvent, now: datetime,
        policy: Policy, actor: str, cause: RunCause | None = None,
    ) -> bool:
        """`actor` reassigned the incident to themselves (`event`), in `tx`: a new run under
        `policy` that pages nobody (`escalation.take`). Unacknowledged, it is their
        acknowledgement: MTTA observed once committed, and everyone else paged told who took
        it, as `act` tells them of an acknowledgement. Acknowledged already, it is theirs from
        now (`acknowledged_by` and `acknowledged_at`: whom the status cadence and the stale
        notice ask, since when). True when it acknowledged the incident."""
        state = await self._state(tx, incident)
        if state is None:
            raise InvalidTransition(f"incident {incident.id} has no escalation to reassign")
        plan = escalation.take(state, incident, event, now, policy, actor, cause)
        await self._apply(tx, incident, plan, now)
        if incident.state is IncidentState.TRIGGERED:
            await self._notify_paged(tx, incident, MessageReason.ACKNOWLEDGED, actor, now,
                                     leave_out=actor)
            return True
        # Theirs from now: acknowledged_by and acknowledged_at say who holds it and since
        # when, together (the first acknowledgement stays MTTA's, on the timeline).
        await tx.update_incident(incident.id, now, acknowledged_by=actor, acknowledged_at=now)
        return False

    def _urgency(self, incident: Incident) -> tuple[Severity, WorkingHoursView | None]:
        """What decides whether a new run of the incident's escalation waits for working
        hours: its severity and its team's hours, as the running config has them."""
        config = self._config()
        directory = ConfigDirectory(config, self._on_call, self.roster)
        return config.severity(incident.severity), directory.working_hours(incident.team)

    def arm_after_commit(self, tx: Transaction, armed: list[ArmedDeadline]) -> None:
        """Put deadlines written in `tx` on the timer once it commits."""
        if armed:
            tx.after_commit(lambda: self._arm_all(armed))

    async def enqueue(
        self, tx: Transaction, incident: Incident, messages: list[OutboxMessage], now: datetime
    ) -> None:
        """Messages into the outbox in `tx`; the dispatcher wakes once it commits."""
        if messages:
            await self._enqueue(tx, incident, messages, now)

    def _arm_all(self, armed: Iterable[ArmedDeadline]) -> None:
        for deadline in armed:
            self.scheduler.arm(deadline.id, deadline.due)

    async def _transition(
        self, tx: Transaction, incident: Incident, plan: Plan, now: datetime
    ) -> tuple[bool, bool]:
        target = plan.incident_state
        assert target is not None
        actor = _actor(plan.events)
        fields: dict[str, Any] = {"state": target}
        first_ack = target is IncidentState.ACKNOWLEDGED and incident.acknowledged_at is None
        if target is IncidentState.ACKNOWLEDGED:
            # Who holds it and since when, together: an acknowledgement after an unack is
            # its own. MTTA counts the first (`first_ack`, observed once committed from this
            # very time); the timeline keeps it for the post-mortem and the reports.
            fields.update(acknowledged_by=actor, acknowledged_at=now)
        if target is IncidentState.RESOLVED:
            # Resolved while nobody held it: no acknowledger named (Incident.resolution).
            fields = incident.resolution(actor, now)
            for listener in self.resolution_listeners:
                tx.after_commit(partial(listener, incident.group_key))
            tx.after_commit(partial(self.reports.forget, incident.id))
        await tx.update_incident(incident.id, now, **fields)
        return first_ack, target is IncidentState.RESOLVED

    async def _enqueue(
        self, tx: Transaction, incident: Incident, messages: list[OutboxMessage], now: datetime
    ) -> None:
        await tx.enqueue(incident.id, messages, now)
        for listener in self.outbox_listeners:
            tx.after_commit(listener)

    async def _stakeholders(
        self, tx: Transaction, incident: Incident, reason: MessageReason, now: datetime
    ) -> None:
        names = self._config().stakeholders.get(incident.severity, ())
        await self.tell_stakeholders(tx, incident, names, reason, now)

    async def tell_stakeholders(
        self, tx: Transaction, incident: Incident, names: Iterable[str], reason: MessageReason,
        now: datetime, *, actor: str = "", changed_to: str = "",
    ) -> None:
        """Each URL of these stakeholder channels gets the message, in `tx`. Never for a
        drill: it tests the team's escalation path, and a status room or an executive told of
        an outage that is not one learns to ignore the next."""
        if incident.is_drill:
            return
        config = self._config()
        messages = [
            OutboxMessage(recipient=name, recipient_kind="channel", contact=index,
                          url_digest=contact_digest(url), reason=reason, actor=actor,
                          changed_to=changed_to)
            for name in names
            if (channel := config.channels.get(name)) is not None
            for index, url in enumerate(channel.urls)
        ]
        if messages:
            await self._enqueue(tx, incident, messages, now)

    async def _notify_paged(
        self, tx: Transaction, incident: Incident, reason: MessageReason, actor: str,
        now: datetime, *, leave_out: str | None = None,
    ) -> None:
        """Tell everyone who was paged for this incident (first contact each) what happened,
        but `leave_out`."""
        paged = [name for name in await tx.paged_recipients(incident.id) if name != leave_out]
        await self._notify_users(tx, incident, paged, reason, actor, now)

    async def tell_users(
        self, tx: Transaction, incident: Incident, names: Iterable[str], reason: MessageReason,
        actor: str, now: datetime, *, changed_to: str = "",
    ) -> None:
        """One note to each of these people, on their first contact, in `tx` (a takeover's
        to whoever held the incident: incidents/desk.py)."""
        await self._notify_users(tx, incident, names, reason, actor, now, changed_to=changed_to)

    async def _notify_users(
        self, tx: Transaction, incident: Incident, names: Iterable[str], reason: MessageReason,
        actor: str, now: datetime, stale_after: float | None = None, changed_to: str = "",
    ) -> None:
        """One message to each of these people, on their first contact."""
        config = self._config()
        messages = []
        for name in names:
            user = config.users.get(name)
            if user is not None and user.contacts:
                messages.append(OutboxMessage(
                    recipient=name, recipient_kind="user", contact=0,
                    url_digest=contact_digest(user.contacts[0].url), reason=reason,
                    short=user.contacts[0].short, actor=actor, stale_after=stale_after,
                    changed_to=changed_to,
                ))
        if messages:
            await self._enqueue(tx, incident, messages, now)

    async def _notify_resolution(
        self, tx: Transaction, incident: Incident, actor: str, now: datetime, *,
        leave_out: str | None = None,
    ) -> None:
        """Everyone paged but `leave_out` (a person who resolved it by hand) is told, and
        the severity's stakeholder channels."""
        await self._notify_paged(tx, incident, MessageReason.RESOLVED, actor, now,
                                 leave_out=leave_out)
        await self._stakeholders(tx, incident, MessageReason.STAKEHOLDER_RESOLVED, now)

    # -- metrics, after commit ------------------------------------------------------------

    def _observe(self, item: PlanMetrics) -> None:
        incident = item.incident
        if incident.is_drill:
            return  # a drill's response is reported on its own, never in the real figures
        m = self._metrics
        for step in item.steps:
            m.escalation_steps.labels(incident.team, incident.policy, step).inc()
        took = facts.time_to_acknowledge(item.first_paged_at, incident.acknowledged_at)
        if item.acknowledged and took is not None:
            m.child(m.time_to_acknowledge, incident.team, incident.severity).observe(
                took.total_seconds())
        if item.resolved:
            # A person's resolution or a stale one: it ends when it was made, not at an
            # alert's end (facts.problem_ended).
            observe_resolution(m, incident, ())


def step_label(policy: Policy, index: int) -> str:
    """What ackd_escalation_steps counts a fired step under: the policy's own step, from 0
    for its first; a step put ahead of the policy's own (the person an incident was
    reassigned to, paged first) is `reassigned`, not a step of the policy."""
    if index < policy.ahead:
        return REASSIGNED_STEP
    return str(index - policy.ahead)


def _default_scheduler(responder: Responder) -> Scheduler:
    return Scheduler(responder._clock, responder.fire)  # lateness: counted in fire


def _log_lines(incident: Incident, lines: list[tuple[int, str]]) -> None:
    for level, line in lines:
        log.log(level, "%s", line, extra=fields("step_unreached", incident.id, incident.team))


def _step_due(plan: Plan, now: datetime) -> Deadline | None:
    return next((d for d in plan.arm if d.kind is DeadlineKind.STEP and d.due <= now), None)


def _without_transition(plan: Plan, events: Iterable[TimelineEvent]) -> Plan:
    return replace(plan, incident_state=None, events=tuple(events))


def _actor(events: Iterable[TimelineEvent]) -> str:
    for event in events:
        if event.kind in (EventKind.ACKNOWLEDGED, EventKind.RESOLVED, EventKind.SNOOZED,
                          EventKind.UNACKNOWLEDGED):
            return event.actor
    return "ackd"


def _page_message(page: Page) -> OutboxMessage:
    kind: Literal["user", "channel"] = "channel" if page.recipient_kind is TargetKind.CHANNEL \
        else "user"
    return OutboxMessage(
        recipient=page.recipient, recipient_kind=kind, contact=page.contact,
        url_digest=contact_digest(page.url), reason=page.reason, short=page.short,
        step=page.step, cycle=page.cycle, run=page.run, actor=page.actor,
        changed_to=page.changed_to,
    )

