"""The outbox dispatcher: takes due notifications out of the durable outbox and delivers them.

One loop sleeps on the clock until the earliest outbox row is due (or a commit that enqueued
wakes it), then makes one pass: in one writer job (Store.lease_and_decide) it leases the due
rows (no later pass reads a row again until its lease ends, see Transaction.lease_due_outbox),
decides what each becomes (sent, bundled, deferred, suppressed, held back by the rate limit)
and writes the bookkeeping, so the lease and the verdicts commit together; only then it
starts the sends, at most `workers` at a time and one per URL (so a hung endpoint
holds one worker, never all of them). A send waits in its URL's lane behind the one in
progress; when the lane frees, every page that queued in it meanwhile goes out as one
message, a bundle (plan.lane_bundle: pages first, then the notes, apart), so a page to a
slow but working channel waits at most for the send in progress and its own, not behind
every earlier page to the same person. A message that waited so is checked again at its
turn (RECORD_ROWS incidents a job): a page whose incident was handled meanwhile is
suppressed, as the pass would have.
Each send's result is written in jobs of its own, RECORD_ROWS rows each (a storm's bundle
delivers hundreds): a row's timeline event and its fate (finished, or retried with backoff)
commit together, and that ends the row's lease. The rows a send holds (`_queued`) follow
the leases exactly: a row leaves as its lease ends, before anything that commit's follow-ups
enqueue can be leased; and a self-check, at the loop's first wake SELF_CHECK after a pass
leased rows, gives back, logged and counted, a row leased to this process that no send
holds, which would otherwise never be sent.

On PostgreSQL a lease lapses (Store.outbox_lease, 60 s), and the others take it sooner from a
replica they see hung (Store.outbox_handover, 10 s after the lease: its listening connection
silent); but a send may wait in its URL's lane behind the replica's earlier sends to that URL
(a slow channel), or the replica itself may have been the one hung (SIGSTOP, a paused VM), for
longer than that. So a send whose turn comes after the handover time, or whose lease is
nearly spent, renews its lease first, in one write, and sends only the rows it still holds: a
row another replica took meanwhile is that replica's to send (and a pass of this replica that
finds such a row due again leaves it to the send that queued it).

Delivery is at-least-once: a row leaves the outbox only in the commit that records its
result. If ackd stops, or the store refuses that commit for longer than RECORD_AGAIN (a
database restarting refuses it for a moment: the commit is tried again, the row still
leased), after the message went out, the row is still there and the message goes again.
A delivery is never reported as sent when it was not: NOTIFICATION_SENT is written only for
a Delivery that said SUCCESS.

Every message passes the noise gate (noise.py), pages and notes apart; a bundle of pages and
one of notes are rendered differently (render.py). A pass is decided purely (plan.py); sends
wait for their URL's lane (lanes.py); each result's timeline event comes from events.py.
The gate's histories (what each URL received lately, what waits and what is held back for
its summary) live in the store (channels.py), one per URL, shared by every replica: the
pass's job locks those of its URLs, decides, and writes its verdicts and the histories it
changed, so replicas gating the same URL take turns and spend one budget, and a restart keeps
the windows. Whichever pass finds a held-back summary due (under that lock) sends it, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

import msgspec

from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.errors import StoreUnavailable
from receiver.core.frozen import frozen
from receiver.core.model import Incident, TimelineEvent
from receiver.core.tasks import cancel
from receiver.core.wakeup import Wakeup
from receiver.delivery.channels import (
    Changes,
    changes,
    channel_key,
    fill_held_back,
    held,
    log_dropped,
)
from receiver.delivery.events import (
    delivery_event,
    summary_event,
    suppressed_event,
)
from receiver.delivery.lanes import Lanes
from receiver.delivery.noise import NoiseGate
from receiver.delivery.plan import (
    Addressed,
    Outgoing,
    PassPlan,
    Send,
    Summary,
    backoff,
    joined,
    lane_bundle,
    plan_pass,
    unwanted_pages,
)
from receiver.delivery.render import Renderer, shown_of
from receiver.notify.contacts import Destination, resolve
from receiver.notify.messages import (
    render_held_back,
)
from receiver.notify.notifier import (
    Delivery,
    DeliveryStatus,
    Message,
    Notifier,
    channel_kind,
    mask,
)
from receiver.store import OutboxMessage, OutboxRow, Store, Transaction
from receiver.store.records import IncidentFacts
from receiver.telemetry.logformat import fields
from receiver.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

OnFailed = Callable[[int, OutboxMessage], Awaitable[None]]
K = TypeVar("K", bound=Hashable)

BATCH = 256
UNREAD = datetime.min.replace(tzinfo=UTC)  # not read yet: the next pass asks the store
NEVER = datetime.max.replace(tzinfo=UTC)  # no summary waits
# After the store refused a write, the rows involved wait this long before another try.
STORE_RETRY = timedelta(seconds=5)
# A delivery's result the store refused is written again this many seconds apart before its
# rows are given back (to be sent again): the message went out, and a database that restarts
# or fails over refuses writes for a few seconds. 15.5 s in all, well inside a lease
# (PostgreSQL's: 60 s), so no other replica takes the rows meanwhile.
RECORD_AGAIN = (0.5, 1.0, 2.0, 4.0, 8.0)
# A send renews its rows' leases before it goes unless they outlast its timeout by this much:
# the tries to write its result (RECORD_AGAIN), and 5 s.
LEASE_SPARE = timedelta(seconds=5 + sum(RECORD_AGAIN))
# A delivery's result is written this many rows a job (a storm's bundle carries hundreds), and
# a message checked again at its turn reads (and suppresses) this many incidents a job.
RECORD_ROWS = 64
# A log line names at most this many of a message's incidents (or rows), and how many more.
LOGGED = 5
# How long after a pass leases rows the loop, at its next wake, checks that every row leased to
# this process is held by one of its sends (or waits to be given back): a row leased and held
# by none is never sent (_check_leases).
SELF_CHECK = timedelta(seconds=60)


# A row that cannot be sent (its contact is gone, its payload unreadable), and why.
_Lost = tuple[OutboxRow, IncidentFacts | None, Delivery]
# A row not sent (suppressed by a pass, or a page no longer wanted as its turn came), its
# incident as read then (None: gone), and why.
_Dropped = tuple[Addressed, IncidentFacts | None, str]


@frozen(slots=True)
class _Pass:
    """What one pass's job leased and decided, for the loop to act on once it committed."""

    leased: int
    lost: list[_Lost]
    plan: PassPlan
    sends: list[Outgoing]  # the plan's, with their rows' whole incidents
    summary_at: datetime


@frozen(slots=True)
class _Queued:
    """A message waiting in its URL's lane, when its rows were leased, the config its pass
    read their URL from, and whether it queued behind another send to the URL."""

    outgoing: Outgoing
    leased_at: datetime
    decided: Config
    behind: bool = False


# -- the loop ---------------------------------------------------------------------------------


class Dispatcher:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: Clock,
        metrics: Metrics,
        config: Callable[[], Config],
        on_failed: OnFailed | None = None,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._metrics = metrics
        self._config = config
        self._on_failed = on_failed
        # When the earliest held-back summary may go, as the last pass read it from the
        # store (the histories live there, shared with other replicas); the first pass reads.
        self._summary_at = UNREAD
        # Leased rows to give back (a send whose result the store refused, a pass that failed
        # after it leased its rows), each due again at its time.
        self._unreleased: dict[int, datetime] = {}
        self._deciding = 0  # rows the running pass leased and has not handed to sends yet
        # Rows handed to sends whose results are not written yet (queued in a lane, or
        # going), each with the message that queued it: a pass that finds one due again (its
        # lease lapsed while it was queued) leaves it to its send, which holds it still, or
        # finds it taken (_still_held). A row leaves as its lease ends (its result committed,
        # given back, taken by another replica), never later: a row that is due again then
        # is a pass's to take, and a send that ends later forgets only the rows it holds.
        self._queued: dict[int, _Queued] = {}
        self._check_at = UNREAD  # when the next self-check (_check_leases) runs
        # The messages waiting in each URL's lane, oldest first: the send whose turn comes
        # takes what goes next (lane_bundle), its own message or not.
        self._waiting: dict[str, list[_Queued]] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self._wakeup = Wakeup(clock)
        self._stopping = asyncio.Event()  # a result being written again gives up at once
        self._lanes: Lanes | None = None
        self._renderer = Renderer(store, clock, config)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._lanes = Lanes(self._config().notifications.workers)
        self._task = asyncio.create_task(self._run(), name="ackd-dispatcher")

    def wake(self) -> None:
        """Look at the outbox now: a commit just enqueued notifications."""
        self._wakeup.wake()

    @property
    def in_flight(self) -> int:
        """Deliveries started and not yet recorded (a bundle or a summary counts once), and
        the rows a pass leased while it decides about them."""
        return len(self._sends) + self._deciding

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking rows; let sends in flight finish and be recorded, for up to `grace` s."""
        self._stopping.set()
        await cancel(self._task)
        self._task = None
        if grace is None:
            # One delivery's timeout is as long as a send in flight can take.
            grace = self._config().notifications.timeout.total_seconds() + 1.0
        pending = set(self._sends)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()  # their rows stay in the outbox and go again after restart
            if late:
                log.warning("stopped with %d delivery(ies) unfinished", len(late))
                await asyncio.wait(late)

    async def _run(self) -> None:
        while True:
            try:
                now = self._clock.now()
                if now >= self._check_at:
                    await self._check_leases(now)
                if await self._pass(now):
                    await asyncio.sleep(0)
                    continue  # the batch was full: more rows are due
                wake_at = await self._next_wake(now)
            except StoreUnavailable as exc:
                log.error("outbox unavailable, trying again in %s: %s", STORE_RETRY, exc)
                wake_at = self._clock.now() + STORE_RETRY
            except Exception:
                log.exception("outbox pass failed, trying again in %s", STORE_RETRY)
                wake_at = self._clock.now() + STORE_RETRY
            await self._wakeup.sleep(wake_at)

    async def _check_leases(self, now: datetime) -> None:
        """The self-check: a row leased to this process that none of its sends holds and
        that is not waiting to be given back would stay leased, never sent (on SQLite until
        ackd restarts; on PostgreSQL until its lease lapses). Nothing should leave one (the
        rows' bookkeeping follows their leases); should something, the row is given back,
        due now, and the loss is logged and counted. Runs between passes, in one job: no
        pass is deciding, and a send's result commits before or after it, whole. It takes
        this dispatcher for the only one leasing as this process (one daemon a SQLite store,
        one dispatcher a replica's number), as the daemon runs it."""
        # The next one is due SELF_CHECK after a pass leases rows again (_pass): a row is lost,
        # if ever, by the pass that leased it. It runs at the first wake of the loop from then
        # (a commit that enqueues, a send's end, a row or summary due), never a wake of its
        # own: on the fake clock, a store job at a wake of its own let a timer's deadline in
        # the same jump be taken at a later virtual time; the gauge and AckdNotificationsStuck
        # tell of a row that waits meanwhile.
        self._check_at = NEVER

        async def job(tx: Transaction) -> list[int]:
            lost = [row_id for row_id in await tx.held_outbox()
                    if row_id not in self._queued and row_id not in self._unreleased]
            for row_id in lost:
                await tx.release_outbox(row_id, now)
            return lost

        lost = await self._store.write(job)
        if lost:
            log.error("outbox row(s) %s were leased to this process but no send held them:"
                      " given back, to be sent now", lost)
            self._metrics.outbox_leases_recovered.inc(len(lost))

    async def _next_wake(self, now: datetime) -> datetime | None:
        """The next time a pass has something to do; None: only a wake() or a send's end.
        `now` is the time the last pass looked at: what was due by then, it saw."""
        times = list(self._unreleased.values())
        if now < self._summary_at < NEVER:
            times.append(self._summary_at)  # a held-back summary, this replica's or another's
        # Rows in flight are leased (their end wakes us); a row due by `now` that is not was
        # seen by this pass, so only later ones count.
        due = await self._store.next_outbox_at(now)
        if due is not None:
            times.append(due)
        return min(times, default=None)

    def _gate(self) -> NoiseGate:
        s = self._config().notifications
        return NoiseGate(s.bundle_window, s.rate_limit, s.rate_window, s.max_hold)

    async def _pass(self, now: datetime) -> bool:
        """Decide about every row due at `now`, record the bookkeeping, start the sends.
        True if the batch was full (more rows may be due)."""
        self._wakeup.clear()
        await self._release()
        config = self._config()
        summary_at = self._summary_at

        def urgent(incident: IncidentFacts) -> bool:
            return config.severity(incident.severity).urgency == "high"

        async def job(
            tx: Transaction, rows: list[tuple[OutboxRow, IncidentFacts | None]]
        ) -> _Pass:
            # Leased, decided and written in one job (one commit): a failure leaves the rows
            # due as they were, and a send starts only for a verdict that is durable.
            leased = len(rows)
            rows = [item for item in rows if item[0].id not in self._queued]
            self._deciding = len(rows)
            due, lost = self._addressed(rows, config)
            await _write_lost(tx, lost, now)
            if not due and now < summary_at:
                return _Pass(leased, lost, PassPlan({}, {}), [], summary_at)
            plan, next_summary = await self._decide(tx, due, now, urgent)
            return _Pass(leased, lost, plan, await _whole(tx, plan.sends), next_summary)

        try:
            # Leased: rows in flight are not read again by the passes that run until they end.
            done = await self._store.lease_and_decide(now, BATCH, job)
        except BaseException:
            self._deciding = 0
            raise
        self._summary_at = done.summary_at
        if done.leased and self._check_at == NEVER:
            self._check_at = now + SELF_CHECK
        plan = done.plan
        self._observe_suppressed(plan)
        for summary in plan.summaries:
            self._spawn(self._send_summary(summary))
        for outgoing in done.sends:
            self._queue(outgoing, now, config)
        self._deciding = 0
        await self._lost(done.lost)
        return done.leased >= BATCH

    async def _release(self) -> None:
        """Give back the leases of rows whose send ended without a recorded result."""
        if not self._unreleased:
            return
        releasing = dict(self._unreleased)

        async def job(tx: Transaction) -> None:
            for row_id, due in releasing.items():
                await tx.release_outbox(row_id, due)

        await self._store.write(job)
        for row_id, due in releasing.items():
            if self._unreleased.get(row_id) == due:
                del self._unreleased[row_id]

    @staticmethod
    def _addressed(
        due: list[tuple[OutboxRow, IncidentFacts | None]], config: Config
    ) -> tuple[list[tuple[Addressed, IncidentFacts | None]], list[_Lost]]:
        """The rows with the URL their contact has in the running config, and those that
        cannot be sent: a row whose contact a reload removed, or whose payload cannot be
        read (it fails now, on its timeline, in the log and in the metrics)."""
        addressed: list[tuple[Addressed, IncidentFacts | None]] = []
        lost: list[_Lost] = []
        # Each distinct message is resolved once (a storm's rows say the same few things:
        # its contact's URL digest checked, its `short` set), with what it becomes.
        seen: dict[OutboxMessage, tuple[OutboxMessage, str] | str] = {}
        for row, incident in due:
            message = row.message
            if message is None:
                why = f"the notification cannot be sent: {row.unreadable}"
                lost.append((row, incident, Delivery(DeliveryStatus.FAILURE, 0.0, why)))
                continue
            to = seen.get(message)
            if to is None:
                found = resolve(message.recipient, message.recipient_kind, message.contact,
                                config.users, config.channels, message.url_digest)
                to = seen[message] = (
                    (msgspec.structs.replace(message, short=found.short), found.url)
                    if isinstance(found, Destination) else found)
            if isinstance(to, str):
                lost.append((row, incident, Delivery(DeliveryStatus.FAILURE, 0.0, to)))
            else:
                addressed.append((Addressed(row, *to), incident))
        return addressed, lost

    async def _lost(self, lost: list[_Lost]) -> None:
        """After the commit that failed them: the log, the metrics, the escalation."""
        for row, _, delivery in lost:
            log.error("notification %d of incident %d cannot be sent: %s",
                      row.id, row.incident_id, delivery.error)
            self._observe("", delivery, retry=False)
            if row.message is not None:
                await self._final_failure(row.incident_id, row.message)

    async def _decide(
        self, tx: Transaction, due: list[tuple[Addressed, IncidentFacts | None]],
        now: datetime, urgent: Callable[[IncidentFacts], bool],
    ) -> tuple[PassPlan, datetime]:
        """The pass's plan, against the histories of its URLs as the store holds them (locked
        until this job commits: another replica gating the same URL waits, then sees what
        this pass spent), its verdicts and the histories it changed written in the same job;
        and when the next held-back summary may go."""
        gate = self._gate()
        urls = {row.url for row, _ in due}
        records = await tx.lock_channels([channel_key(url) for url in urls], now)
        before = held(records, urls, self._contact_url)
        if before.dropped:
            tx.after_commit(partial(log_dropped, before.dropped))
        summaries = [channel_key(url) for url, history in before.histories.items()
                     if gate.summary_due(history, now)]
        if summaries:
            fill_held_back(before, await tx.held_back(summaries))
        plan = plan_pass(gate, before.histories, before.addressees, due, now, urgent)
        await self._write_bookkeeping(tx, plan, now)
        gated = [row.id for outgoing in plan.sends for row, _ in outgoing.items
                 if not (row.attempts or row.row.gated)]
        if gated:
            await tx.passed_gate(gated)
        await _write_changes(tx, changes(gate, before, plan, now), now)
        return plan, await tx.next_summary_at() or NEVER

    def _contact_url(self, addressee: OutboxMessage) -> str | None:
        config = self._config()
        found = resolve(addressee.recipient, addressee.recipient_kind, addressee.contact,
                        config.users, config.channels, addressee.url_digest)
        return found.url if isinstance(found, Destination) else None

    @staticmethod
    async def _write_bookkeeping(tx: Transaction, plan: PassPlan, now: datetime) -> None:
        # The rows deferred to each time, in one write each (a storm's pass defers dozens of
        # pages to their bundle's one time); a row deferred twice waits for its later verdict.
        waiting: dict[datetime, list[int]] = {}
        for row_id, until in dict(plan.deferred).items():
            waiting.setdefault(until, []).append(row_id)
        for until, row_ids in waiting.items():
            await tx.defer_outbox(row_ids, until)
        await _write_suppressed(tx, plan.suppressed, now)

    def _count_suppressed(self, suppressed: Iterable[_Dropped]) -> None:
        m = self._metrics.notifications_suppressed
        for _, _, why in suppressed:
            m.labels(why).inc()

    def _observe_suppressed(self, plan: PassPlan) -> None:
        self._count_suppressed(plan.suppressed)
        m = self._metrics.notifications_suppressed
        for outgoing in plan.sends:
            if len(outgoing.items) > 1:
                m.labels("bundled").inc(len(outgoing.items) - 1)

    def _spawn(self, work: Awaitable[None]) -> None:
        """A send that no outbox row stands for (a held-back summary)."""

        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("a delivery task failed")

        task = asyncio.create_task(run(), name="ackd-delivery")
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    # -- one message --------------------------------------------------------------------------

    def _queue(self, outgoing: Outgoing, leased_at: datetime, decided: Config) -> None:
        """Queue `outgoing` (its rows leased at `leased_at`) in its URL's lane, with a task
        that waits for the lane's next turn and sends then what goes next: this message, with
        those queued beside it, or nothing if an earlier turn took it along. Each turn takes
        at least one message, so a turn is left for every message still queued."""
        assert self._lanes is not None
        behind = outgoing.url in self._waiting or self._lanes.busy(outgoing.url)
        entry = _Queued(outgoing, leased_at, decided, behind)
        self._waiting.setdefault(outgoing.url, []).append(entry)
        for row, _ in outgoing.items:
            self._queued[row.id] = entry
        taken: list[_Queued] = []

        async def run() -> None:
            try:
                await self._send(outgoing.url, taken)
            except asyncio.CancelledError:
                self._unqueue(entry)  # stopped while it waited: its rows stay leased
                raise
            except Exception:
                log.exception("a delivery task failed; its rows wait %s", STORE_RETRY)
                self._cool(self._held_by(taken))
            finally:
                self._forget(taken)
                self._wakeup.wake()  # its rows are finished or rescheduled: re-plan the sleep

        task = asyncio.create_task(run(), name="ackd-delivery")
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def _unqueue(self, entry: _Queued) -> None:
        url = entry.outgoing.url
        queue = self._waiting.get(url, [])
        if any(queued is entry for queued in queue):
            queue[:] = [queued for queued in queue if queued is not entry]
            if not queue:
                del self._waiting[url]
            self._forget([entry])

    def _held_by(self, entries: Iterable[_Queued]) -> list[int]:
        """The rows these queued messages still hold: not those whose lease ended since (a
        row finished, or given back and queued again by a later pass, is not theirs)."""
        return [row.id for entry in entries for row, _ in entry.outgoing.items
                if self._queued.get(row.id) is entry]

    def _forget(self, entries: Iterable[_Queued]) -> None:
        """The rows these queued messages still hold are held no longer (their send ended)."""
        for row_id in self._held_by(entries):
            del self._queued[row_id]

    def _let_go(self, row_ids: Iterable[int]) -> None:
        """These rows' leases ended (their result committed, given back, or another replica
        took them): no send of this process holds them any more."""
        for row_id in row_ids:
            self._queued.pop(row_id, None)

    def _take(self, url: str, taken: list[_Queued]) -> tuple[Outgoing, datetime] | None:
        """What of the URL's queue goes now as one message (into `taken`), and the earliest
        time its rows were leased; None if nothing waits."""
        queue = self._waiting.pop(url, [])
        chosen = set(lane_bundle([queued.outgoing for queued in queue]))
        taken.extend(queued for n, queued in enumerate(queue) if n in chosen)
        rest = [queued for n, queued in enumerate(queue) if n not in chosen]
        if rest:
            self._waiting[url] = rest
        if not taken:
            return None
        if len(taken) > 1:
            rows = sum(len(queued.outgoing.items) for queued in taken)
            log.info("%d messages (%d row(s)) to %s queued behind its send in progress: they go"
                     " as one", len(taken), rows, mask(url).partition("?")[0])
            self._metrics.notifications_suppressed.labels("bundled").inc(len(taken) - 1)
        return (joined([queued.outgoing for queued in taken]),
                min(queued.leased_at for queued in taken))

    async def _send(self, url: str, taken: list[_Queued]) -> None:
        """At the lane's turn: take what goes next (into `taken`), send what of it this
        replica still holds, record the result."""
        assert self._lanes is not None
        async with self._lanes.lane(url):
            if not self._waiting.get(url):
                return  # an earlier turn took this task's message along
            waited = self._lanes.workers_busy()
            async with self._lanes.worker():
                took = self._take(url, taken)
                if took is None:
                    return
                outgoing, leased_at = took
                held = await self._still_held(outgoing, leased_at)
                if held is not None:
                    held = self._still_addressed(held, [queued.decided for queued in taken])
                if held is not None and (waited or any(queued.behind for queued in taken)):
                    held = await self._still_wanted(held)
                if held is None:
                    return
                rendered = await self._render(held)
                if rendered is None:
                    return
                delivery = await self._send_now(url, rendered[0])
        await self._record(held, delivery)

    async def _render(self, outgoing: Outgoing) -> tuple[Message | None] | None:
        """The message (None: it cannot be built, a failed delivery); None if the store could
        not be read (the rows are given back, to go again later)."""
        try:
            return (await self._renderer.render(outgoing),)
        except StoreUnavailable as exc:
            log.error("cannot render for %s, trying again later: %s", mask(outgoing.url), exc)
            self._cool([row.id for row, _ in outgoing.items])
            return None

    async def _still_held(self, outgoing: Outgoing, leased_at: datetime) -> Outgoing | None:
        """As the send's turn comes: `outgoing` with the rows this replica still holds, their
        leases renewed if they were nearly spent (they may have lapsed while the send waited
        behind the URL's earlier ones); None if it holds none of them, or the store could
        not say (the rows are given back)."""
        lease, handover = self._store.outbox_lease, self._store.outbox_handover
        now = self._clock.now()
        spare = self._config().notifications.timeout + LEASE_SPARE
        if lease is None or (now + spare < leased_at + lease
                             and (handover is None or now < leased_at + handover)):
            return outgoing  # the lease outlasts the send, and nobody may have taken it
        ids = [row.id for row, _ in outgoing.items]
        try:
            kept = set(await self._store.write(lambda tx: tx.renew_outbox(ids, now)))
        except Exception as exc:
            log.error("cannot renew the leases of outbox row(s) %s to %s, they wait %s: %s",
                      ids, mask(outgoing.url), STORE_RETRY, exc)
            self._cool(ids)
            return None
        if len(kept) == len(ids):
            return outgoing
        self._let_go(i for i in ids if i not in kept)
        log.warning(
            "outbox row(s) %s to %s were leased %.0fs ago (they waited behind the URL's"
            " earlier sends, or this replica was hung) and another replica took them: not"
            " sent here",
            [i for i in ids if i not in kept], mask(outgoing.url),
            (now - leased_at).total_seconds())
        if not kept:
            return None
        return Outgoing(outgoing.url, tuple(item for item in outgoing.items
                                            if item[0].id in kept))

    def _still_addressed(self, outgoing: Outgoing, decided: list[Config]) -> Outgoing | None:
        """As the send's turn comes: `outgoing` less the rows whose contact a reload since
        their passes (which read their URL from `decided`) removed or gave another URL: a
        message waits in its URL's lane behind the send in progress. Those are given back,
        due now: the next pass decides them with the config running then, which fails them
        on their timeline; none goes to a URL the running config no longer has for it. None
        if no row is left. An unchanged reload keeps the Config object (config.coordinator),
        so this looks at rows only after a real change."""
        config = self._config()
        if all(before is config for before in decided):
            return outgoing
        kept, moved = [], []
        for item in outgoing.items:
            if self._contact_url(item[0].message) == outgoing.url:
                kept.append(item)
            else:
                moved.append(item[0].id)
        if not moved:
            return outgoing
        log.warning("outbox row(s) %s to %s were not sent: a reload changed their contact"
                    " while they waited for their turn; they are decided again", moved,
                    mask(outgoing.url))
        self._give_back(moved, self._clock.now())
        return Outgoing(outgoing.url, tuple(kept)) if kept else None

    async def _still_wanted(self, outgoing: Outgoing) -> Outgoing | None:
        """As the turn comes of a message that waited (behind the URL's send in progress, or
        for a worker): `outgoing` less the pages no longer wanted (plan.unwanted_pages: the
        incident acknowledged, taken or resolved while the page waited), each suppressed as
        a pass suppresses it (notification_suppressed on its timeline, the row finished, the
        metric), in jobs that also read the incidents afresh for what the message says,
        RECORD_ROWS incidents a job: at a storm's release the passes queued behind the first
        send join into one message of thousands of rows, and one job reading all their
        incidents held the loop (and the webhooks batched with it) for all of them. Only the
        incidents of the rows its text shows are read whole; of the others, their id, state
        and severity (tx.incident_briefs), all the check and the text need. None if
        nothing is left, or the store could not say: then the suppressions already committed
        stand, and every other row is given back (decided again by a later pass)."""
        now = self._clock.now()
        by_incident: dict[int, list[tuple[Addressed, IncidentFacts]]] = {}
        for item in outgoing.items:
            by_incident.setdefault(item[0].incident_id, []).append(item)
        wanted = sorted(by_incident)
        # The incidents of the rows the text shows (render.shown_of) are read whole; the
        # others' id, state and severity are all the check and the text need of them. Should
        # a shown row be dropped, the row shown in its place is read whole as it is rendered.
        shown = {row.id for row, _ in outgoing.items[:shown_of(outgoing.items)]}

        def job(part: list[int]) -> Callable[
            [Transaction], Awaitable[tuple[dict[int, IncidentFacts], list[_Dropped]]]
        ]:
            async def run(tx: Transaction) -> tuple[dict[int, IncidentFacts], list[_Dropped]]:
                items = [item for n in part for item in by_incident[n]]
                found: dict[int, IncidentFacts] = {**await tx.incident_briefs(part)}
                dropped = unwanted_pages(items, found)
                gone = {row.id for row, _, _ in dropped}
                whole = sorted({row.incident_id for row, _ in items
                                if row.id in shown and row.id not in gone
                                and row.incident_id in found})
                if whole:
                    found.update(await tx.find_incidents(whole))
                await _write_suppressed(tx, dropped, now)
                if dropped:
                    tx.after_commit(partial(self._let_go, [row.id for row, _, _ in dropped]))
                return found, dropped

            return run

        found: dict[int, IncidentFacts] = {}
        dropped: list[_Dropped] = []
        error: Exception | None = None
        for start in range(0, len(wanted), RECORD_ROWS):
            try:
                part_found, part_dropped = await self._store.write(
                    job(wanted[start:start + RECORD_ROWS]))
            except Exception as exc:
                error = exc
                break
            found.update(part_found)
            dropped.extend(part_dropped)
        if dropped:
            self._count_suppressed(dropped)
            log.info("%d page(s) to %s were not sent: their incidents were handled while they"
                     " waited for their turn (%s)", len(dropped),
                     mask(outgoing.url).partition("?")[0],
                     _few([f"#{row.incident_id} {why}" for row, _, why in dropped]))
        gone = {row.id for row, _, _ in dropped}
        if error is not None:
            ids = [row.id for row, _ in outgoing.items if row.id not in gone]
            log.error("cannot read the incidents of outbox row(s) %s to %s, they wait %s: %s",
                      _few([str(i) for i in ids]), mask(outgoing.url), STORE_RETRY, error)
            self._cool(ids)
            return None
        kept = tuple((row, found.get(row.incident_id, incident))
                     for row, incident in outgoing.items if row.id not in gone)
        return Outgoing(outgoing.url, kept) if kept else None

    async def _deliver(self, url: str, message: Message | None) -> Delivery:
        """A message that no outbox row stands for (a summary): at most one in flight per URL,
        `workers` in all, as every send."""
        assert self._lanes is not None
        async with self._lanes.turn(url):
            return await self._send_now(url, message)

    async def _send_now(self, url: str, message: Message | None) -> Delivery:
        """Every send goes through here, inside the URL's turn."""
        if message is None:
            return Delivery(DeliveryStatus.FAILURE, 0.0, "the message could not be rendered")
        delivery = await self._notifier.send(url, message)
        if url in delivery.error:  # belt and braces: an error text must not leak the URL
            delivery = Delivery(delivery.status, delivery.seconds,
                                delivery.error.replace(url, mask(url)))
        return delivery

    async def _record(self, outgoing: Outgoing, delivery: Delivery) -> None:
        """The result and each row's fate, RECORD_ROWS rows a job; metrics and on_failed
        after them."""
        settings = self._config().notifications
        now = self._clock.now()
        rows = [row for row, _ in outgoing.items]
        finals = [r for r in rows if delivery.ok or r.attempts + 1 >= settings.retry_attempts]
        final_ids = {r.id for r in finals}

        def job(part: list[Addressed]) -> Callable[[Transaction], Awaitable[None]]:
            async def run(tx: Transaction) -> None:
                await tx.append_each(_one_each(
                    ((row.incident_id, (row.message, row.url, row.attempts)) for row in part),
                    lambda key: delivery_event(*key, delivery, len(rows), now)))
                for row in part:
                    if row.id not in final_ids:
                        wait = backoff(settings.retry_backoff, settings.retry_max_backoff,
                                       row.attempts + 1)
                        await tx.retry_outbox(row.id, row.attempts + 1, now + wait)
                await tx.finish_outbox([row.id for row in part if row.id in final_ids])
                # The leases end with this commit, before anything that follows it (the
                # failed pages' escalations enqueue, and wake a pass): a row due again is a
                # pass's.
                tx.after_commit(partial(self._let_go, [row.id for row in part]))

            return run

        # A storm's bundle delivers hundreds of rows, each an event and its row's fate to
        # write: in parts, each its own job (each row's event and fate still commit
        # together), so no one job holds the loop and the webhooks batched with it for long.
        recorded: set[int] = set()
        for start in range(0, len(rows), RECORD_ROWS):
            part = rows[start:start + RECORD_ROWS]
            if await self._write_result(outgoing.url, part, job(part), delivery):
                recorded.update(row.id for row in part)
        self._observe(outgoing.url, delivery, retry=any(r.attempts for r in rows))
        _log_delivery(outgoing.url, rows, delivery, final_ids, settings.retry_attempts)
        if not delivery.ok:
            for row in finals:
                if row.id in recorded:
                    await self._final_failure(row.incident_id, row.message)

    async def _write_result(
        self,
        url: str,
        rows: list[Addressed],
        job: Callable[[Transaction], Awaitable[None]],
        delivery: Delivery,
    ) -> bool:
        ids = [r.id for r in rows]
        for wait in (*RECORD_AGAIN, None):
            try:
                await self._store.write(job)
                return True
            except StoreUnavailable as exc:
                if wait is None or self._stopping.is_set():
                    error: Exception = exc
                    break
                # The rows stay leased to this replica meanwhile: nobody sends them again.
                log.warning("could not record a %s delivery to %s for outbox row(s) %s, trying"
                            " again in %gs: %s", delivery.status.value, mask(url), ids, wait, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
            except Exception as exc:
                error = exc
                break
        # The rows stay in the outbox: the message goes again (at-least-once).
        log.error("could not record a %s delivery to %s for outbox row(s) %s, it will be sent"
                  " again: %s", delivery.status.value, mask(url), ids, error)
        self._cool(ids)
        return False

    def _cool(self, row_ids: Iterable[int]) -> None:
        """These leased rows go back to the outbox, due again in STORE_RETRY (the next pass
        writes that; if the store refuses, the lease ends when ackd starts again)."""
        self._give_back(row_ids, self._clock.now() + STORE_RETRY)

    def _give_back(self, row_ids: Iterable[int], due: datetime) -> None:
        """These leased rows go back to the outbox, due at `due`: from now on the next pass
        holds them (it writes the release, _release), no send."""
        for row_id in row_ids:
            self._queued.pop(row_id, None)
            self._unreleased[row_id] = due

    async def _final_failure(self, incident_id: int, message: OutboxMessage) -> None:
        if self._on_failed is None or message.recipient_kind != "user":
            return
        if not message.reason.is_page:
            return
        try:
            await self._on_failed(incident_id, message)
        except Exception:
            log.exception("handling the failed page of incident %d failed", incident_id)

    def _observe(self, url: str, delivery: Delivery, *, retry: bool) -> None:
        m = self._metrics
        kind = channel_kind(url)
        m.notifications.labels(kind, delivery.status.value).inc()
        m.notification_latency.labels(kind).observe(delivery.seconds)
        if retry:
            m.notification_retries.labels(kind).inc()

    # -- the held-back summary -----------------------------------------------------------------

    async def _send_summary(self, summary: Summary) -> None:
        try:
            message = await self._renderer.held_back(summary)
        except StoreUnavailable as exc:
            # The incidents could not be read: the count still goes, not nothing.
            log.error("cannot read the incidents of the summary to %s: %s",
                      mask(summary.url), exc)
            window = self._config().notifications.rate_window
            message = render_held_back(summary.count, window, summary.incident_ids,
                                       summary.reasons)
        delivery = await self._deliver(summary.url, message)
        now = self._clock.now()
        event = summary_event(summary, delivery, now)

        async def job(tx: Transaction) -> None:
            for incident_id in summary.incident_ids:
                await tx.append(incident_id, [event])

        try:
            await self._store.write(job)
        except Exception as exc:
            log.error("could not record the held-back summary to %s: %s", mask(summary.url), exc)
        self._observe(summary.url, delivery, retry=False)


async def _whole(tx: Transaction, sends: list[Send]) -> list[Outgoing]:
    """The plan's sends with the whole incidents of the rows their text shows (what the
    message says; render.shown_of), read in the pass's job only for those: most rows a storm
    leases wait for a bundle, and a bundle shows its first few of hundreds. A store that
    handed whole incidents already (PostgreSQL) is not asked again."""
    wanted = sorted({row.incident_id for send in sends
                     for row, incident in send.items[:shown_of(send.items)]
                     if not isinstance(incident, Incident)})
    found = await tx.find_incidents(wanted) if wanted else {}
    return [Outgoing(send.url, tuple(
        (row, found.get(row.incident_id, incident)) for row, incident in send.items))
        for send in sends]


async def _write_lost(tx: Transaction, lost: list[_Lost], now: datetime) -> None:
    for row, incident, delivery in lost:
        if incident is not None:
            event = delivery_event(row.message, "", row.attempts, delivery, 1, now)
            await tx.append(row.incident_id, [event])
    await tx.finish_outbox([row.id for row, _, _ in lost])


async def _write_suppressed(
    tx: Transaction, suppressed: Iterable[_Dropped], now: datetime
) -> None:
    """Rows not sent (a pass's verdict, or a page unwanted at its turn): the event on their
    incident's timeline, where it still exists, and the row finished."""
    dropped = list(suppressed)
    rows = {(row.message, row.url): row for row, _, _ in dropped}
    await tx.append_each(_one_each(
        ((row.incident_id, (row.message, row.url, why))
         for row, incident, why in dropped if incident is not None),
        lambda key: suppressed_event(rows[key[0], key[1]], key[2], now)))
    await tx.finish_outbox([row.id for row, _, _ in dropped])


def _one_each(
    keyed: Iterable[tuple[int, K]], make: Callable[[K], TimelineEvent]
) -> list[tuple[int, TimelineEvent]]:
    """One event to each incident, made once for each distinct key (what the event says):
    a bundle's rows mostly say one thing to one URL, and the store encodes an event given
    for several incidents once (Transaction.append_each)."""
    made: dict[K, TimelineEvent] = {}
    each = []
    for incident_id, key in keyed:
        event = made.get(key)
        if event is None:
            event = made[key] = make(key)
        each.append((incident_id, event))
    return each


async def _write_changes(tx: Transaction, found: Changes, now: datetime) -> None:
    if found.forget:
        await tx.forget_held_back(found.forget)
    for channel, incident_ids in found.hold:
        await tx.hold_back(channel, incident_ids, now)
    if found.save:
        await tx.save_channels(found.save)
    if found.drop:
        await tx.drop_channels(found.drop)


def _log_delivery(
    url: str, rows: list[Addressed], delivery: Delivery, final_ids: set[int], attempts: int
) -> None:
    """One line per delivery: which incidents (a storm's bundle: the first LOGGED and how many
    more; each row's timeline has its own event), to whom, through which kind of contact and
    (masked) URL, which attempt, and how it went, so an operator can follow every page in the
    log. A failed attempt that goes again is a WARNING; one after which the message is given
    up for good (`final_ids`: its retries are spent) is an ERROR: nobody gets that message,
    and an SRE whose pages do not arrive greps the log for ERROR. A bundle whose rows stand
    at different attempts may be both: a line for each."""
    if delivery.ok:
        _log_rows(logging.INFO, url, rows, attempts, f"delivered in {delivery.seconds:.2f}s")
        return
    failed = f"{delivery.status.value} after {delivery.seconds:.2f}s: {delivery.error}"
    again = [r for r in rows if r.id not in final_ids]
    if again:
        _log_rows(logging.WARNING, url, again, attempts, f"{failed}; will retry")
    given_up = [r for r in rows if r.id in final_ids]
    if given_up:
        _log_rows(logging.ERROR, url, given_up, attempts, f"{failed}; gave up, not delivered")


def _log_rows(level: int, url: str, rows: list[Addressed], attempts: int, how: str) -> None:
    incidents = _few([f"#{n}" for n in sorted({r.incident_id for r in rows})])
    reasons = "/".join(sorted({r.message.reason.value for r in rows}))
    recipient = rows[0].message.recipient or "?"
    where = mask(url).partition("?")[0]  # Apprise's privacy form lists every default option
    tries = "/".join(str(n) for n in sorted({r.attempts + 1 for r in rows}))
    what = (f"incident {incidents} {reasons} to {recipient} via {channel_kind(url)} ({where}),"
            f" attempt {tries} of {attempts}")
    numbers = {r.incident_id for r in rows}
    extra = fields("delivery", numbers.pop() if len(numbers) == 1 else None)
    log.log(level, "%s: %s", what, how, extra=extra)


def _few(items: list[str]) -> str:
    """The first LOGGED of `items`, and how many more: a log line names what a storm's bundle
    of thousands holds without being thousands of ids long."""
    if len(items) <= LOGGED:
        return ", ".join(items)
    return f"{', '.join(items[:LOGGED])} and {len(items) - LOGGED:,} more"
