"""The incident desk: people working an incident (roles, notes, the status cadence), one
writer job each.

Each use case reads the incident and its roles, asks the pure modules (roles.py, notes.py,
cadence.py) what to write, and writes it together with its timeline event, so a change and
its record commit or fail as one. The actor is the principal's name (see core/access.py).

Every change a person makes here to an incident that keeps its acknowledgement (a note or
status update, a role assigned or cleared, a responder paged in, a severity lowered) counts as
working it: it pushes the escalation's reack deadline (`Responder.updated`) as a new alert
does, so an incident people are visibly working is not re-escalated as left alone. A
reassignment or a raised severity starts escalation over instead; a reassignment to the
person making it is theirs at once (`Responder.take`: no page; their acknowledgement if
nobody's was); whoever held it acknowledged is told once when it goes to another person or
a team (`assignment.taken_from`: a `taken_over` note), unless the run it begins pages them
at once (`assignment.paged_by_run`: that page says so).

The status cadence is a durable deadline (kind `cadence`) on the escalation timer: armed in
the transaction that opens an incident (the responder's opened hook), moved by each status
update, fired by the responder's timer loop into `_remind` here, and cancelled with the
escalation's other deadlines when the incident is resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.model import EventKind, Incident, MessageReason, Severity, TimelineEvent
from receiver.escalation.plan import DeadlineKind
from receiver.escalation.policy import person_policy
from receiver.escalation.responder import Responder
from receiver.incidents import assignment, cadence, declare, follow, notes, roles
from receiver.incidents.assignment import Reassignment
from receiver.incidents.declare import Declaration
from receiver.incidents.drills import route_for
from receiver.incidents.roles import Role, RoleChange, RoleHolder
from receiver.store import ArmedDeadline, Store, Transaction
from receiver.telemetry.logformat import fields
from receiver.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

class IncidentDesk:
    def __init__(
        self, store: Store, clock: Clock, config: Callable[[], Config], responder: Responder,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self._responder = responder
        self._metrics = metrics
        responder.opened_hooks.append(self._start_cadence)
        responder.deadline_handlers[DeadlineKind.CADENCE.value] = self._remind
        responder.deadline_handlers[DeadlineKind.FOLLOW.value] = self._follow

    async def declare(self, declaration: Declaration, actor: str) -> Incident:
        """Open an incident no alert raised; it escalates like any other, in the same job."""
        config = self._config()

        async def job(tx: Transaction) -> Incident:
            now = self._clock.now()
            number = await tx.insert_incident(declare.new_incident(config, declaration, now),
                                              None)
            await tx.append(number, [declare.opened_event(declaration, actor, now)])
            incident = await tx.incident(number)
            await self._responder.opened(tx, incident, now)
            tx.after_commit(lambda: self._metrics.incidents_opened.labels(
                incident.team, incident.severity).inc())
            return incident

        incident = await self._store.write(job)
        log.info("incident #%d declared by %s: %s %s %s", incident.id, actor,
                 incident.severity, incident.team, incident.summary,
                 extra=fields("incident_declared", incident.id, incident.team))
        return incident

    async def reassign(self, incident_id: int, to: Reassignment, actor: str) -> Incident:
        """To a team (its policy) or a person (paged first, the policy behind them);
        escalation starts over. A person who reassigns it to themselves is not paged: it is
        in their hands (their acknowledgement, if nobody's was)."""
        config = self._config()
        cause = assignment.reassigned_cause(to, actor)

        async def job(tx: Transaction) -> tuple[Incident, bool, str | None]:
            incident = await tx.incident(incident_id)
            assignment.check_open(incident, "reassign")
            now = self._clock.now()
            event = assignment.reassigned(incident, to, actor, now)
            held = assignment.taken_from(incident, to, actor)
            if held not in config.users:
                held = None  # an API token's name, say: nobody to tell
            if to.team is not None:
                route = route_for(config, to.team)
                await tx.update_incident(incident_id, now, team=to.team, policy=route.policy)
                incident = await tx.incident(incident_id)
                policy = config.policy_for(route.policy, to.team)
            else:
                assert to.user is not None
                policy = person_policy(
                    config.policy_for(incident.policy, incident.team), to.user)
            if to.user == actor:
                # Who takes it by their own hand is not paged to take what they just took:
                # the run is in their hands from its start. Its reack pages them first,
                # the team's policy behind them, as for anyone reassigned to; their unack
                # hands it back to the team's policy at once (engine.unacknowledge).
                acked = await self._responder.take(tx, incident, event, now, policy, actor,
                                                   cause)
            else:
                # A person named by whoever reassigned is paged now, at any hour, as a
                # responder paged in is: the name is their choice. A team's policy waits for
                # its hours.
                acked = False
                await self._responder.restart(tx, incident, event, now, policy, cause,
                                              at_once=to.user is not None)
                if held is not None and held in assignment.paged_by_run(
                        await tx.events_since(incident_id, now)):
                    held = None  # the new team's on call: the run's page says it, at once
            # Whoever held it acknowledged is told once that it is not theirs now: they
            # would go on thinking it was (the status cadence and the stale notice no
            # longer ask them), and nothing else tells them.
            if held is not None:
                await self._responder.tell_users(tx, incident, [held], MessageReason.TAKEN_OVER,
                                                 actor, now, changed_to=cause.to)
            return await tx.incident(incident_id), acked, held

        incident, acked, held = await self._store.write(job)
        if acked:
            log.info("incident #%d acknowledged by %s (reassigned to themselves)", incident_id,
                     actor, extra=fields("incident_acknowledged", incident_id, incident.team))
        if held is not None:
            taken = ("taken over" if to.user == actor
                     else f"reassigned to {cause.to}")
            log.info("incident #%d %s by %s from %s, who held it (told)", incident_id, taken,
                     actor, held, extra=fields("incident_taken_over", incident_id,
                                               incident.team))
        return incident

    async def add_responder(self, incident_id: int, user: str, actor: str) -> Incident:
        """Page `user` into the incident now; who owns it does not change."""

        async def job(tx: Transaction) -> Incident:
            incident = await tx.incident(incident_id)
            assignment.check_open(incident, "add a responder")
            now = self._clock.now()
            await tx.append(incident_id, [assignment.responder_added(user, actor, now)])
            if user != actor:  # who joins by their own hand needs no page asking them to
                await self._reach(tx, incident, user, MessageReason.RESPONDER_ADDED, now,
                                  actor=actor)
            await self._responder.updated(tx, incident, now)  # not left alone
            return incident

        return await self._store.write(job)

    async def change_severity(self, incident_id: int, severity: Severity, actor: str
                              ) -> Incident:
        """Raised: escalation starts over under the new severity's steps. Lowered: no page.
        The status cadence follows the new severity from now."""

        async def job(tx: Transaction) -> Incident:
            incident = await tx.incident(incident_id)
            assignment.check_open(incident, "change the severity")
            return await self.set_severity(tx, incident, severity, actor, self._clock.now())

        return await self._store.write(job)

    async def set_severity(self, tx: Transaction, incident: Incident, severity: Severity,
                           actor: str, now: datetime) -> Incident:
        """Change an open incident's severity in `tx`, as `change_severity` says: a person's
        change, or the ingest path's when a more urgent alert joins (actor alertmanager)."""
        config = self._config()
        change = assignment.severity_change(
            incident, config.severity(incident.severity), severity, actor, now)
        if change is None:
            return incident
        incident_id = incident.id
        told = assignment.stakeholders_told(
            config.stakeholders, incident.severity,
            await tx.events_since(incident_id, incident.opened_at))
        await tx.update_incident(incident_id, now, severity=severity.name)
        incident = await tx.incident(incident_id)
        if change.raised:
            await self._responder.restart(tx, incident, change.event, now,
                                          cause=assignment.raised_cause(severity, actor))
            news = [c for c in config.stakeholders.get(severity.name, ()) if c not in told]
            await self._responder.tell_stakeholders(
                tx, incident, news, MessageReason.STAKEHOLDER_DECLARED, now, actor=actor,
                changed_to=severity.name)
        else:
            await tx.append(incident_id, [change.event])
            await self._responder.updated(tx, incident, now)  # not left alone
        await self._arm_cadence(tx, incident, now)
        return await tx.incident(incident_id)

    async def roles(self, incident_id: int) -> dict[Role, RoleHolder]:
        """The roles held now; NotFound for an unknown incident."""

        async def job(tx: Transaction) -> dict[Role, RoleHolder]:
            await tx.incident(incident_id)
            return await tx.roles(incident_id)

        return await self._store.write(job)

    async def assign(
        self, incident_id: int, role: Role, user: str, actor: str
    ) -> dict[Role, RoleHolder]:
        users = self._config().users

        async def job(tx: Transaction) -> dict[Role, RoleHolder]:
            incident = await tx.incident(incident_id)
            held = await tx.roles(incident_id)
            change = roles.assign(incident, held, role, user, actor, users, self._clock.now())
            return await self._write(tx, incident, held, change)

        result = await self._store.write(job)
        log.info("incident #%d: %s is %s (by %s)", incident_id, user, role.label, actor,
                 extra=fields("role_assigned", incident_id))
        return result

    async def clear(self, incident_id: int, role: Role, actor: str) -> dict[Role, RoleHolder]:
        async def job(tx: Transaction) -> dict[Role, RoleHolder]:
            incident = await tx.incident(incident_id)
            held = await tx.roles(incident_id)
            change = roles.clear(incident, held, role, actor, self._clock.now())
            return await self._write(tx, incident, held, change)

        return await self._store.write(job)

    async def note(self, incident_id: int, text: str, actor: str) -> TimelineEvent:
        """Post a note; from whoever speaks for the incident, it is a status update."""

        async def job(tx: Transaction) -> TimelineEvent:
            incident = await tx.incident(incident_id)
            held = await tx.roles(incident_id)
            now = self._clock.now()
            event = notes.note(incident, held, text, actor, now)
            await tx.append(incident_id, [event])
            if event.kind is EventKind.STATUS_UPDATE:
                await self._arm_cadence(tx, incident, now)  # the clock starts again
            await self._responder.updated(tx, incident, now)  # not left alone
            return event

        return await self._store.write(job)

    # -- the status cadence ---------------------------------------------------------------

    async def _start_cadence(self, tx: Transaction, incident: Incident, now: datetime) -> None:
        await self._arm_cadence(tx, incident, now)

    async def _arm_cadence(self, tx: Transaction, incident: Incident, since: datetime) -> None:
        when = cadence.due(self._config().severity(incident.severity), since)
        if when is None:
            await tx.cancel(incident.id, [DeadlineKind.CADENCE.value])
            return
        armed = await tx.arm(incident.id, [(when, DeadlineKind.CADENCE.value, cadence.KEY)])
        self._responder.arm_after_commit(tx, armed)

    async def _remind(
        self, tx: Transaction, incident: Incident, row: ArmedDeadline, now: datetime
    ) -> None:
        """The cadence ran out: remind whoever is accountable, say so, start again."""
        config = self._config()
        held = await tx.roles(incident.id)
        reminder = cadence.remind(incident, held, config.severity(incident.severity), row.due,
                                  frozenset(config.users), now)
        if reminder is None:
            return
        await tx.append(incident.id, [reminder.event])
        if reminder.recipient is not None:
            await self._reach(tx, incident, reminder.recipient, MessageReason.STATUS_DUE, now,
                              status_every=float(reminder.event.detail["every"]))
        armed = await tx.arm(
            incident.id, [(reminder.next_due, DeadlineKind.CADENCE.value, cadence.KEY)])
        self._responder.arm_after_commit(tx, armed)
        # Once committed: the job may run again before it commits (Store.write).
        tx.after_commit(partial(
            log.info, "incident #%d: status update overdue, reminded %s", incident.id,
            reminder.recipient or "nobody", extra=fields("status_due", incident.id,
                                                          incident.team)))

    # -- reaching a person as a page does ------------------------------------------------

    async def _reach(
        self, tx: Transaction, incident: Incident, name: str, reason: MessageReason,
        now: datetime, *, actor: str = "", status_every: float | None = None,
    ) -> None:
        """Message `name` on each immediate contact now, and arm a follow-up for each delayed
        one (SMS after push), as a step's page does (follow.py)."""
        user = self._config().users.get(name)
        if user is None:
            return
        reached = follow.reach(user, reason, now, actor=actor, status_every=status_every)
        await self._responder.enqueue(tx, incident, reached.now, now)
        armed = await tx.arm(incident.id, [(due, DeadlineKind.FOLLOW.value, later.key())
                                           for due, later in reached.later])
        self._responder.arm_after_commit(tx, armed)

    async def _follow(
        self, tx: Transaction, incident: Incident, row: ArmedDeadline, now: datetime
    ) -> None:
        """A delayed contact came due: message it unless the person (or, for a status
        reminder, anyone) answered since the first message."""
        config = self._config()
        later = follow.FollowUp.from_key(row.key)
        if not incident.is_open or not follow.wanted(
                later, incident.is_open, await tx.events_since(incident.id, later.since)):
            return
        user = config.users.get(later.name)
        every = config.severity(incident.severity).status_every
        message = None if user is None else follow.message(
            later, user, every.total_seconds() if every is not None else None)
        if message is not None:
            await self._responder.enqueue(tx, incident, [message], now)
            return
        # A reload took the contact (or the person) away: on the timeline and in the log,
        # as a step's delayed contact would be, never dropped unsaid.
        event = follow.lost(later, user, now)
        await tx.append(incident.id, [event])
        tx.after_commit(partial(
            log.warning, "incident #%d: the %s message to %s's delayed contact %d was not"
            " sent: %s", incident.id, later.reason.value, later.name, later.contact + 1,
            event.detail["error"], extra=fields("follow_up_lost", incident.id, incident.team)))

    async def _write(
        self, tx: Transaction, incident: Incident, held: dict[Role, RoleHolder],
        change: RoleChange,
    ) -> dict[Role, RoleHolder]:
        if change.event is None:
            return held  # nothing changed
        if change.holder is None:
            await tx.clear_role(incident.id, change.role)
        else:
            await tx.set_role(incident.id, change.holder)
        await tx.append(incident.id, [change.event])
        await self._responder.updated(tx, incident, change.event.at)  # not left alone
        return roles.applied(held, change)
