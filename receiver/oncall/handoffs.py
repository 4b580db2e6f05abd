"""Handoff notices: at each handoff of a schedule that asks for them (`handoff_notices: true`),
the incoming person is told, through their contacts, that they are on call now, until when,
and which of their teams' incidents are open.

Each layer has at most one notice planned: its next handoff to somebody (a row in the store,
`store/sqlite/oncall.py`), armed on a timer loop of its own (`escalation.timer.Scheduler`, the same
loop escalation uses, over these rows' ids). Plans follow what changes who is on call: a
start, a reload, a run-time override made or deleted. When a notice comes due it is marked
sent in the transaction that reads the open incidents, and sent only after that commit: a
notice is never sent twice, across restarts too (a crash between the commit and the send
loses that one notice, rather than risking it twice). A notice whose handoff no longer
happens as planned (an override moved it) or that came due while ackd was down and whose
person is no longer on call, is dropped unsent.

Plans and takes read the run-time overrides from the store, in their own transaction, not
from the roster: a replica's roster is told of another replica's override only a moment
after that commit (store NOTIFY, core/refresh.py), and a replica planning meanwhile from its
roster put back the handoff the override had moved (the person no longer on call would be
told, or the notice dropped at its time as "no longer on call"). The roster only says when to
plan again; a change told while a plan runs gets one more plan after it.

Replicas on one database each plan and arm every notice (the plans are one row), and each
tries to take it at its time: the first takes it, and the others find it sent. One that
finds it still unsent but not for the taking (another replica's transaction holds it, not
yet committed: `take_notice` skips a locked row) tries again BUSY_RETRY later, since that
transaction may yet roll back (its replica killed, its connection lost), leaving the notice
to nobody: no other replica arms it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial

from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.frozen import frozen
from receiver.core.oneline import one_line
from receiver.core.refresh import Refresh
from receiver.escalation.timer import Scheduler
from receiver.notify.notifier import Message, Notifier, NotifyType, channel_kind
from receiver.oncall.overrides import RuntimeOverride, with_runtime
from receiver.oncall.roster import Roster
from receiver.oncall.schedules import Schedule, next_change, on_call
from receiver.store import PlannedNotice, Store, Transaction

log = logging.getLogger(__name__)

# How many changes ahead a layer's next handoff to somebody is looked for: past a span with
# nobody on call, a hole the check-config warns of, but not without end.
LOOK_AHEAD = 64
MAX_LISTED = 20
# How soon a notice that another replica is taking is looked at again.
BUSY_RETRY = timedelta(seconds=1)


@frozen
class OpenIncident:
    id: int
    severity: str
    state: str
    summary: str


def next_handoff(schedule: Schedule, layer: str, at: datetime) -> tuple[datetime, str] | None:
    """The next instant after `at` when somebody new comes on call in `layer`, and who."""
    for _ in range(LOOK_AHEAD):
        change = next_change(schedule, layer, at)
        if change is None:
            return None
        user = on_call(schedule, layer, change)
        if user is not None:
            return change, user
        at = change
    return None


def notice_message(
    schedule: Schedule, notice: PlannedNotice, until: datetime | None,
    incidents: Sequence[OpenIncident],
) -> Message:
    """What the incoming person reads; every outside text on one line."""
    where = f"{schedule.name} {notice.layer}"
    ends = (f"until {until.astimezone(schedule.tz).strftime('%a %d %b %H:%M %Z')}"
            if until is not None else "with no handoff ahead")
    lines = [f"You are on call now for {where}, {ends}."]
    if incidents:
        lines.append(f"{len(incidents)} open incident(s) on your teams:")
        lines += [f"#{i.id} [{i.severity}] {i.state}: {one_line(i.summary)}"
                  for i in incidents[:MAX_LISTED]]
        if len(incidents) > MAX_LISTED:
            lines.append(f"and {len(incidents) - MAX_LISTED} more")
    else:
        lines.append("No open incidents on your teams.")
    title = f"On call now: {where}"
    kind = NotifyType.WARNING if incidents else NotifyType.INFO
    return Message(title, "\n".join(lines), kind)


class HandoffNotices:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        notifier: Notifier,
        roster: Roster,
        config: Callable[[], Config],
    ) -> None:
        self._store = store
        self._clock = clock
        self._notifier = notifier
        self._config = config
        self.timer = Scheduler(clock, self.fire)
        # One plan at a time; asked during one, one more after it (it may have read the
        # overrides before the change that asked committed).
        self._replanning = Refresh("on-call overrides for the handoff notices", self.plan)
        self._sends: set[asyncio.Task[None]] = set()
        roster.listeners.append(self.replan)

    async def start(self) -> None:
        await self.plan()
        unsent = await self._store.write(lambda tx: tx.unsent_notices())
        self.timer.load((n.id, n.at) for n in unsent)
        self.timer.start()

    @property
    def in_flight(self) -> int:
        """Notices taken (marked sent) whose sending has not ended."""
        return len(self._sends)

    async def stop(self) -> None:
        await self.timer.stop()
        await self._replanning.stop()
        if self._sends:
            await asyncio.wait(self._sends, timeout=5)

    def replan(self) -> None:
        """Who is on call may have changed (a reload, an override): plan again, soon."""
        with contextlib.suppress(RuntimeError):  # no loop: nothing runs yet to plan for
            self._replanning()

    async def plan(self) -> None:
        """Each notifying layer's next handoff planned (and armed), every other unplanned,
        by the schedules with the store's run-time overrides laid over them."""
        config, now = self._config(), self._clock.now()
        notifying = [s for s in config.schedules.values() if s.handoff_notices]

        async def job(tx: Transaction) -> list[PlannedNotice]:
            overrides = await tx.current_overrides(now) if notifying else []
            wanted = []
            for schedule in notifying:
                laid = _laid(schedule, overrides)
                for layer in laid.layers:
                    upcoming = next_handoff(laid, layer.name, now)
                    at, user = upcoming if upcoming is not None else (None, None)
                    wanted.append((schedule.name, layer.name, at, user))
            await tx.unplan_others([(s, lay) for s, lay, _, _ in wanted], now)
            planned = [await tx.plan_notice(*w, now) for w in wanted]
            return [p for p in planned if p is not None]

        for notice in await self._store.write(job):
            self.timer.arm(notice.id, notice.at)

    async def fire(self, ids: list[int]) -> None:
        config, now = self._config(), self._clock.now()

        async def job(tx: Transaction) -> tuple[list[tuple[PlannedNotice, Message]], list[int]]:
            due = []
            overrides: list[RuntimeOverride] | None = None  # read once something is taken
            for notice_id in ids:
                notice = await tx.take_notice(notice_id, now)
                if notice is None:
                    continue
                if overrides is None:
                    overrides = await tx.current_overrides(now)
                taken = await _taken(tx, config, notice, overrides, now)
                if taken is not None:
                    due.append(taken)
            if len(due) == len(ids):
                return due, []
            # Not taken, yet still unsent and due: another replica is taking it now.
            asked = set(ids)
            busy = [n.id for n in await tx.unsent_notices() if n.id in asked and n.at <= now]
            return due, busy

        due, busy = await self._store.write(job)
        for notice_id in busy:
            self.timer.arm(notice_id, self._clock.now() + BUSY_RETRY)
        for notice, message in due:
            task = asyncio.create_task(self._send(config, notice, message))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
        self.replan()

    async def _send(self, config: Config, notice: PlannedNotice, message: Message) -> None:
        user = config.users.get(notice.user)
        if user is None:
            return
        # The contacts that page at once: a delayed one (SMS after the push) is escalation's.
        contacts = [c for c in user.contacts if not c.delay] or list(user.contacts[:1])
        for contact in contacts:
            delivery = await self._notifier.send(contact.url, message)
            # The notifier logs nothing itself: a failed notice is this line's to tell.
            if delivery.ok:
                log.info("handoff notice to %s for %s %s: %s", notice.user, notice.schedule,
                         notice.layer, delivery.status)
            else:
                log.warning("handoff notice to %s for %s %s via %s: %s after %.2fs: %s",
                            notice.user, notice.schedule, notice.layer,
                            channel_kind(contact.url), delivery.status, delivery.seconds,
                            delivery.error)


def _laid(planned: Schedule, overrides: Iterable[RuntimeOverride]) -> Schedule:
    """`planned` (the running config's) with these run-time overrides of it laid over it."""
    return with_runtime(planned, [o for o in overrides if o.schedule == planned.name])


async def _taken(
    tx: Transaction, config: Config, notice: PlannedNotice,
    overrides: Sequence[RuntimeOverride], now: datetime,
) -> tuple[PlannedNotice, Message] | None:
    """The message of a notice just taken (marked sent), or None if it is dropped: its
    schedule or layer is gone, or its person is not on call at its time or now."""
    planned = config.schedules.get(notice.schedule)
    if planned is None or notice.layer not in {lay.name for lay in planned.layers}:
        return None
    laid = _laid(planned, overrides)
    if on_call(laid, notice.layer, notice.at) != notice.user or on_call(
        laid, notice.layer, now
    ) != notice.user:
        # Once committed (the take with it): the job may run again before (Store.write).
        tx.after_commit(partial(
            log.info, "handoff notice to %s for %s %s dropped: no longer on call",
            notice.user, notice.schedule, notice.layer))
        return None
    teams = [t.name for t in config.teams.values() if t.schedule == notice.schedule]
    incidents = await open_incidents(tx, teams)
    until = next_change(laid, notice.layer, now)
    return notice, notice_message(laid, notice, until, incidents)


async def open_incidents(tx: Transaction, teams: Sequence[str]) -> list[OpenIncident]:
    if not teams:
        return []
    return [OpenIncident(i.id, i.severity, i.state.value, i.summary)
            for i in await tx.open_incidents_of(teams)]
