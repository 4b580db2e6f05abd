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
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial

from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.errors import StoreUnavailable
from receiver.core.frozen import frozen
from receiver.core.oneline import one_line
from receiver.core.tasks import cancel
from receiver.escalation.timer import Scheduler
from receiver.notify.notifier import Message, Notifier, NotifyType
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
        self._roster = roster
        self._config = config
        self.timer = Scheduler(clock, self.fire)
        self._replanning: asyncio.Task[None] | None = None
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
        await cancel(self._replanning)
        if self._sends:
            await asyncio.wait(self._sends, timeout=5)

    def replan(self) -> None:
        """Who is on call may have changed (a reload, an override): plan again, soon."""
        if self._replanning is None or self._replanning.done():
            with contextlib.suppress(RuntimeError):  # no loop: nothing runs yet to plan for
                self._replanning = asyncio.get_running_loop().create_task(self._replan())

    async def _replan(self) -> None:
        try:
            await self.plan()
        except StoreUnavailable as exc:
            log.error("planning handoff notices failed: %s", exc)

    async def plan(self) -> None:
        """Each notifying layer's next handoff planned (and armed), every other unplanned."""
        config, now = self._config(), self._clock.now()
        wanted = []
        for schedule in config.schedules.values():
            if not schedule.handoff_notices:
                continue
            laid = self._roster.schedule(schedule)
            for layer in laid.layers:
                upcoming = next_handoff(laid, layer.name, now)
                at, user = upcoming if upcoming is not None else (None, None)
                wanted.append((schedule.name, layer.name, at, user))

        async def job(tx: Transaction) -> list[PlannedNotice]:
            await tx.unplan_others([(s, lay) for s, lay, _, _ in wanted], now)
            planned = [await tx.plan_notice(*w, now) for w in wanted]
            return [p for p in planned if p is not None]

        for notice in await self._store.write(job):
            self.timer.arm(notice.id, notice.at)

    async def fire(self, ids: list[int]) -> None:
        config, now = self._config(), self._clock.now()

        async def job(tx: Transaction) -> tuple[list[tuple[PlannedNotice, Message]], list[int]]:
            due = []
            for notice_id in ids:
                taken = await self._take(tx, config, notice_id, now)
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

    async def _take(
        self, tx: Transaction, config: Config, notice_id: int, now: datetime
    ) -> tuple[PlannedNotice, Message] | None:
        notice = await tx.take_notice(notice_id, now)
        if notice is None:
            return None
        planned = config.schedules.get(notice.schedule)
        if planned is None or notice.layer not in {lay.name for lay in planned.layers}:
            return None
        laid = self._roster.schedule(planned)
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

    async def _send(self, config: Config, notice: PlannedNotice, message: Message) -> None:
        user = config.users.get(notice.user)
        if user is None:
            return
        # The contacts that page at once: a delayed one (SMS after the push) is escalation's.
        contacts = [c for c in user.contacts if not c.delay] or list(user.contacts[:1])
        for contact in contacts:
            delivery = await self._notifier.send(contact.url, message)
            log.info("handoff notice to %s for %s %s: %s", notice.user, notice.schedule,
                     notice.layer, delivery.status)


async def open_incidents(tx: Transaction, teams: Sequence[str]) -> list[OpenIncident]:
    if not teams:
        return []
    return [OpenIncident(i.id, i.severity, i.state.value, i.summary)
            for i in await tx.open_incidents_of(teams)]
