"""The PostgreSQL store: one database shared by several replicas of ackd.

Writes go as in the SQLite store: callers submit a job (an async function of a Transaction)
and await its result, which comes only after the commit; queued jobs run in batches, one
transaction each, the jobs without savepoints; when one fails, the transaction is rolled
back and the batch runs again with every job inside its own savepoint, so one failing job
cannot spoil the others (see _run_batch). Unlike SQLite, PostgreSQL lets several
transactions write at once: WRITERS tasks take batches from the one queue, each on a
connection of the pool, and PostgreSQL's own group commit shares the WAL flushes among them.
Batches are small (MAX_BATCH): a batch holds the row locks of all its jobs until it commits,
and another replica may be waiting for them. A dispatcher pass, whose channel locks every
replica's pass to the same URL waits for, runs alone, on a writer of its own (_write_alone).

Replicas meet in the database. A job that loses a race to another replica (the unique index
on a group's open incident, a deadlock, a serialization failure) fails its batch's first
run; in the run again, it is rolled back to its savepoint and run again there, up to
RETRIES times: it then sees what the winner committed. A deadlock in a batch of several
jobs is different: the batch's earlier jobs keep their locks, so the batch is given up whole
and its jobs run again one transaction each. Trouble with the connection itself fails the
whole batch with StoreUnavailable (503), and the next batch takes a fresh connection. So
does any other error outside a job's own code (the driver's, as asyncpg's
InternalClientError, or a bug): the connection it leaves in a state nobody knows is closed,
and the writer task goes on with the next batch.

LISTEN/NOTIFY carries what other replicas need to know at once: a deadline armed
(`deadline_listeners`, for the timer heap) and run-time state the API changed
(`change_listeners`: maintenance windows, on-call overrides; each replica reads it again).
A commit that sends a NOTIFY holds PostgreSQL's notification lock (one per database) from
before its commit record until its WAL flush, so every notifying commit of every replica is
flushed one after another. So the deadlines a batch armed are announced after its COMMIT, in
a statement of their own (`_announce`, shared by the batches that committed meanwhile:
announce.py) that writes nothing to the WAL and holds the lock for microseconds, never for
a rolled-back job; and outbox rows are not announced at all: the
replica that enqueued them sends them (its dispatcher wakes at the commit). Change
notifications (rare: the API) stay in their commit.

What a replica that dies between its COMMIT and its announcement (or with rows it enqueued
and had not leased yet) leaves is read by the others when their watch sees it gone: every
armed deadline is handed to the deadline listeners once more, and the dispatchers are woken
to look at the outbox (`_catch_up`). The listening connection is watched too: when it is lost
(the database restarted, a network cut) it is opened again, and since notifications sent
meanwhile are lost, the same catch-up runs and the run-time state is read again. A replica
hung there instead, still connected (SIGSTOP, a blocked loop, a paused VM), looks alive: the
watch finds its deadlines once they are overdue and still armed, and hands them to the timer
(late.py), so its steps fire elsewhere within a second of their due time.

The listening connection also says that this replica is alive: its session holds the
replica's advisory lock (replicas.py), and what the replica leases carries its number; a
listener opened again takes the same number, so a restart of PostgreSQL leaves every replica
its leases. A watch task looks every WATCH seconds at who is alive: the leases of a number
unlocked for replicas.GRACE go back to the outbox, a row due and left unleased
(replicas.OVERDUE) wakes the dispatcher, and who is alive decides which replica tries each
due deadline first (`first_to_try`). A beat task runs a statement on the listening connection
every replicas.BEAT seconds, so that the others can tell this replica from one hung while
connected (its listener idle for replicas.HUNG: they take the pages it leased and froze).
That statement is `SELECT clock_timestamp()`, read between two looks at this replica's own
clock (`wall`): how far this replica's clock is from the database's (core/clockskew.py), the
best of the last ten beats, as `clock_offset`, for /metrics and /-/ready, and a WARNING when
it passes a second and when it is back. The replicas share deadlines by their own clocks, so
one clock fast fires every replica's steps early: nothing corrects it, but it is seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from receiver.config.storage import CONNECT_TIMEOUT, address
from receiver.core.clockskew import SAMPLES, Change, Offset, Sample, SkewWatch, estimate
from receiver.core.errors import NotFound, SchemaBehind, StartupError, StoreUnavailable
from receiver.core.model import Alert, Incident, TimelineEvent
from receiver.core.tasks import cancel
from receiver.maintenance.domain import Window
from receiver.store.base import Store, Transaction
from receiver.store.codec import (
    ALERT_COLUMNS,
    INCIDENT_COLUMNS,
    OPEN_CONTACTS,
    OPEN_ESCALATIONS,
    OPEN_FIRING_ALERTS,
    WAITING_MESSAGES,
    WINDOW_COLUMNS,
    alert_from_row,
    escalations_from_rows,
    events_from_row,
    events_from_rows,
    firing_alerts_from_rows,
    from_us,
    incident_from_row,
    to_us,
    waiting_from_rows,
    windows_from_rows,
)
from receiver.store.jobs import Job, Outcome, answer
from receiver.store.postgres.announce import Announcer
from receiver.store.postgres.incidents import VERSIONS
from receiver.store.postgres.late import LATE, LATE_DEADLINES, LIMIT, LateDeadlines
from receiver.store.postgres.migrate import migrate, schema_version
from receiver.store.postgres.outbox import LEASE, OUTBOX_CHANNEL
from receiver.store.postgres.replicas import (
    BEAT,
    GRACE,
    HUNG,
    LISTENER_NAME,
    WATCH,
    Sweep,
    Unlocked,
    claim,
    share,
    sweep,
)
from receiver.store.postgres.schema import MIGRATIONS
from receiver.store.postgres.statements import CHANGES_CHANNEL, DEADLINES_CHANNEL, Connection
from receiver.store.postgres.text import escape
from receiver.store.postgres.text import register as register_text
from receiver.store.postgres.transaction import PostgresTransaction
from receiver.store.postgres.versions import VersionReads
from receiver.store.records import (
    IncidentFacts,
    IncidentFilter,
    OutboxRow,
    Shared,
    StoreStats,
    Waiting,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 32
# The smallest pool whose passes get a writer of their own (_write_alone): with half of it
# writing, two connections or more are left for reads.
PASSES_ALONE_FROM = 4
RETRIES = 4
# Errors of a job that lost a race with another transaction: run it again.
RETRYABLE = (
    asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError, asyncpg.SerializationError,
)
# Lock-order races: in a batch of several jobs, the earlier jobs keep their row locks, so the
# job run again in its savepoint meets the same cycle; the batch is run again job by job.
LOCK_ORDER = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# Errors of the connection or the server, not of a job: the whole batch fails.
BROKEN = (
    OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError, asyncpg.InsufficientResourcesError,
    asyncpg.InternalServerError, TimeoutError,
)
# The driver's own state went wrong (asyncpg's InternalClientError, seen once with the database
# stopped while a savepoint was released): nothing says what the connection holds any more, so
# it is closed (PostgreSQL rolls back what it held) and the pool opens another.
UNSOUND = (asyncpg.InternalClientError,)
# Queries a pool connection runs before asyncpg replaces it (its default: 50,000). ackd's
# statements are a fixed set, so a connection's prepared statements do not pile up.
POOL_MAX_QUERIES = 1 << 62
COMMAND_TIMEOUT = 30.0
RELISTEN = 0.5  # seconds between attempts to listen again


class _OneLine(logging.Filter):
    """asyncpg's pool logs each failed attempt to open a lost connection again with a whole
    traceback ("Failed to restore the pool connection floor"), a dozen lines for what a
    restart of PostgreSQL does each time: one line, the error's name and text."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (*BROKEN, *UNSOUND, asyncpg.PostgresError)):
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLine())


async def connect(dsn: str, within: float) -> asyncpg.Connection:
    """One connection, opened within `within` seconds (see `timed`)."""
    return await timed(dsn, within, asyncpg.connect(dsn, timeout=within))


async def timed(dsn: str, within: float, opening: Awaitable[T]) -> T:
    """`opening`, a connection or a pool being opened with asyncpg's `timeout=within`: when
    that runs out, a TimeoutError that says so. asyncpg's own has no text, and `ackd serve`
    exited with "cannot open the store ...: " and nothing after the colon."""
    try:
        return await opening
    except TimeoutError as exc:
        raise TimeoutError(
            f"timed out after {within:g} s connecting to {address(dsn)}") from exc


def _system_now() -> datetime:
    return datetime.now(UTC)


class PostgresStore:
    def __init__(self, dsn: str, *, pool_size: int = 10, migrate: bool = True,
                 name: str = "PostgreSQL", connect_timeout: float = CONNECT_TIMEOUT,
                 wall: Callable[[], datetime] = _system_now) -> None:
        self._dsn = dsn
        # This replica's wall clock, what its timer compares deadlines with (the daemon's is
        # the system's; a test passes one set off to see the skew measured).
        self._wall = wall
        self._samples: deque[Sample] = deque(maxlen=SAMPLES)
        self._skew = SkewWatch()
        self.clock_offset: Offset | None = None  # this replica's clock minus the database's
        self.name = name  # what messages call it: the DSN with its password masked
        self._pool_size = max(2, pool_size)
        self._connect_timeout = connect_timeout
        self._migrate = migrate
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        # This replica's number (its advisory lock), and the numbers of the replicas alive.
        self.replica: int | None = None
        self.alive: tuple[int, ...] = ()
        self._unlocked = Unlocked()  # since when numbers holding leases were seen unlocked
        self._queue: asyncio.Queue[Job[Any]] = asyncio.Queue()
        self._alone: asyncio.Queue[Job[Any]] = asyncio.Queue()  # see _write_alone
        self._passes_alone = True  # the pool's size decides at open
        self._versions = VersionReads(self._read_versions)
        self._announcer = Announcer(self._announce)
        self._writers: list[asyncio.Task[None]] = []
        self.stats = StoreStats()
        self.outbox_lease: timedelta | None = LEASE  # a lease lapses: see outbox.py
        # A replica silent for HUNG loses what it leased as long ago (replicas.py).
        self.outbox_handover: timedelta | None = timedelta(seconds=HUNG)
        self.deadline_listeners: list[Callable[[int, datetime], None]] = []
        self._late = LateDeadlines()  # the overdue deadlines handed to them (late.py)
        # The server processes of this replica's pool connections: the deadlines they
        # announce were armed here already, after the commit (see _on_deadline).
        self._own_backends: set[int] = set()
        self.outbox_listeners: list[Callable[[], None]] = []
        self.change_listeners: list[Callable[[Shared], None]] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            # Every connection opened now, not as load comes: opening one runs the SCRAM
            # handshake (PBKDF2, in asyncpg's Python) on the loop, 85 M instructions, which
            # under load stalled every request of the replica. And kept open: asyncpg would
            # close a connection idle for 5 minutes (below min_size too) and replace one
            # after 50,000 queries, so the first webhooks of a storm after a quiet spell, and
            # a busy replica every minute or so, would pay the handshake again.
            # `timeout` bounds each connection's opening, now and whenever the pool
            # replaces one.
            self._pool = await timed(self._dsn, self._connect_timeout, asyncpg.create_pool(
                self._dsn, min_size=self._pool_size, max_size=self._pool_size,
                command_timeout=COMMAND_TIMEOUT, reset=_keep_session,
                init=self._pool_connection, max_inactive_connection_lifetime=0,
                max_queries=POOL_MAX_QUERIES, timeout=self._connect_timeout,
            ))
            async with self._pool.acquire() as conn:
                await self._prepare_schema(conn)
            await self._listen()
            self.alive = (await self._sweep()).alive  # the timer shares deadlines from the start
            if self._listener is not None:  # a clock off is told at start, not a beat later
                await self._measure(self._listener)
        except BaseException:
            await self._close_connections()
            raise
        # Half the pool writes, the passes' writer among them; the rest serves reads (the API,
        # /metrics, the timer's load). A pool too small to spare the passes a writer of their
        # own (PASSES_ALONE_FROM) batches them with the webhooks, as every pool did before:
        # else a pass waiting for another replica's channel lock and a batch would hold every
        # connection, and reads would have none.
        self._passes_alone = self._pool_size >= PASSES_ALONE_FROM
        writers = max(1, self._pool_size // 2 - self._passes_alone)
        self._writers = [
            asyncio.create_task(self._write_loop(self._queue, MAX_BATCH),
                                name=f"ackd-pg-writer-{n}") for n in range(writers)]
        if self._passes_alone:
            self._writers.append(asyncio.create_task(
                self._write_loop(self._alone, 1), name="ackd-pg-writer-passes"))
        self._watch = asyncio.create_task(self._watch_replicas(), name="ackd-pg-replicas")
        self._beat = asyncio.create_task(self._beat_on_listener(), name="ackd-pg-beat")

    async def _listen(self) -> None:
        listener = await connect(self._dsn, self._connect_timeout)
        try:
            # What the others read this session's silence by (replicas.HUNG).
            await listener.execute(f"SET application_name = '{LISTENER_NAME}'")
            # Before anything is leased: what this replica holds names a lock that is held.
            # Listening again, it takes its number again, and keeps its leases (the others
            # give them back only after GRACE: replicas.py).
            number = await claim(listener, self.replica)
            if self.replica is not None and number != self.replica:
                # Its number is still locked: the session that held it lingers on the server
                # (a network cut it never saw). What this replica leased moves to its new one.
                await listener.execute("UPDATE outbox SET leased_by = $1 WHERE leased_by = $2",
                                       number, self.replica)
                log.warning("listening again as replica %d: replica %d's session lingers",
                            number, self.replica)
            self.replica = number
            await listener.add_listener(DEADLINES_CHANNEL, self._on_deadline)
            await listener.add_listener(OUTBOX_CHANNEL, self._on_outbox)
            await listener.add_listener(CHANGES_CHANNEL, self._on_change)
        except BaseException:
            await listener.close()
            raise
        listener.add_termination_listener(self._on_listener_lost)
        self._listener = listener

    def _on_listener_lost(self, conn: object) -> None:
        if self._listener is conn and self._relisten is None:
            self._listener = None
            self._relisten = asyncio.create_task(self._listen_again(), name="ackd-pg-listen")

    async def _listen_again(self) -> None:
        """Listen again, retrying every RELISTEN seconds, then catch up on what was missed."""
        try:
            while self._pool is not None:
                try:
                    await self._listen()
                    break
                except (*BROKEN, asyncpg.PostgresError) as exc:
                    log.warning("cannot listen for other replicas' notifications: %s", exc)
                    await asyncio.sleep(RELISTEN)
            log.info("listening again for other replicas' deadlines and pages")
            await self._catch_up()
            for on_change in self.change_listeners:
                for what in Shared:
                    on_change(what)
        except StoreUnavailable as exc:
            log.warning("cannot read the deadlines missed while not listening: %s", exc)
        finally:
            self._relisten = None

    async def _catch_up(self) -> None:
        """What notifications may have missed: every armed deadline handed to the timer
        again (one already there fires once all the same: the store decides), and the
        dispatcher woken to look at the outbox."""
        for deadline_id, due in await self.deadlines():
            for on_deadline in self.deadline_listeners:
                on_deadline(deadline_id, due)
        for on_outbox in self.outbox_listeners:
            on_outbox()

    async def _watch_replicas(self) -> None:
        """Every WATCH seconds: who is alive, and the leases of those gone (unlocked for
        GRACE) given back; when one is gone, what it armed or enqueued and did not announce
        is read (_catch_up)."""
        failing = False
        behind = False  # a replica went and what it left is not read yet
        while True:
            await asyncio.sleep(WATCH)
            try:
                found = await self._sweep()
            except StoreUnavailable as exc:
                if not failing:
                    log.warning("cannot see which replicas are alive: %s", exc)
                failing = True
                continue
            except Exception:
                log.exception("looking at which replicas are alive failed")
                continue
            failing = False
            behind = await self._swept(found, behind or bool(set(self.alive) - set(found.alive)))
            try:
                await self._hand_late()
            except Exception:  # the watch goes on: who is alive matters more
                log.exception("looking for deadlines no replica took failed")

    async def _beat_on_listener(self) -> None:
        """A statement on the listening connection every BEAT seconds: its session's state
        changes, which is how the others know this replica is not hung (replicas.HUNG). A
        beat that fails is not retried: the listener's loss is handled where it is seen."""
        while True:
            await asyncio.sleep(BEAT)
            listener = self._listener
            if listener is None or listener.is_closed():
                continue
            try:
                await self._measure(listener)
            except (*BROKEN, *UNSOUND, asyncpg.PostgresError) as exc:
                log.debug("a beat on the listening connection failed: %s", exc)
            except Exception:  # the beat goes on: silent, this replica would look hung
                log.exception("a beat on the listening connection failed")

    async def _measure(self, listener: asyncpg.Connection) -> None:
        """The database's clock read between two looks at this replica's (clockskew.py)."""
        sent = self._wall()
        server = await listener.fetchval("SELECT clock_timestamp()", timeout=COMMAND_TIMEOUT)
        self._sampled(Sample(sent, server, self._wall()))

    def _sampled(self, sample: Sample) -> None:
        """A beat's reading of the database's clock: the offset of the best of the last
        SAMPLES, and a WARNING when it passes clockskew.THRESHOLD or is back under
        clockskew.RECOVERED (once each, not every beat)."""
        self._samples.append(sample)
        offset = estimate(self._samples)
        if offset is None:
            return
        self.clock_offset = offset
        change = self._skew.observe(offset)
        if change is Change.SKEWED:
            log.warning(
                "this replica's clock is %+.3f s (± %.3f s) off PostgreSQL's: %s; replicas"
                " share deadlines by their own clocks: run NTP (chrony, systemd-timesyncd)"
                " on every node", offset.seconds, offset.uncertainty,
                "ahead, it fires escalation steps that early for every replica"
                if offset.seconds > 0 else
                "behind, the steps it should fire first go late, from the others")
        elif change is Change.RECOVERED:
            log.warning("this replica's clock is back within %.3f s of PostgreSQL's"
                        " (%+.3f s ± %.3f s)", self._skew.recovered, offset.seconds,
                        offset.uncertainty)

    async def _hand_late(self) -> None:
        """The deadlines due LATE ago and still armed, handed to the timer once: those a
        replica hung right after its commit holds, known to no other (late.py)."""
        try:
            rows = await self._fetch(
                LATE_DEADLINES, to_us(self._wall() - LATE), LIMIT)
        except StoreUnavailable:
            return  # the next sweep's turn (a database away is logged by the sweep)
        late = self._late.due_to_hand((int(r[0]), int(r[1])) for r in rows)
        if late:
            log.warning("%d deadline(s) due %gs ago or more and taken by no replica are"
                        " tried now (a replica hung, or its announcement failed)",
                        len(late), LATE.total_seconds())
        for deadline_id, due in late:
            for on_deadline in self.deadline_listeners:
                on_deadline(deadline_id, due)

    async def _swept(self, found: Sweep, behind: bool) -> bool:
        """Act on a sweep; whether what a replica gone left is still to be read."""
        if found.orphans:
            log.warning("%d page(s) leased by a replica gone for %gs are sent again",
                        found.orphans, GRACE)
        if found.stalled:
            log.warning("%d page(s) leased by replica(s) %s, silent on PostgreSQL for %gs or"
                        " more (hung, still connected), are sent by the others",
                        found.stalled, ", ".join(map(str, found.hung)), HUNG)
        if found.alive != self.alive:
            self.alive = found.alive
            log.info("replicas alive: %d", len(found.alive))
        if behind:
            try:
                await self._catch_up()  # wakes the dispatcher for the orphans too
            except StoreUnavailable as exc:
                log.warning("cannot read what a replica gone left, next sweep: %s", exc)
                return True
        elif found.orphans or found.stalled or found.overdue:
            for on_outbox in self.outbox_listeners:
                on_outbox()
        return False

    async def _sweep(self) -> Sweep:
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with self._pool.acquire() as conn:
                try:
                    return await sweep(conn, self._wall(),
                                       self._unlocked.expired(time.monotonic()), self.replica,
                                       self._unlocked)
                except UNSOUND:
                    conn.terminate()  # see UNSOUND
                    raise
        except (*BROKEN, *UNSOUND, asyncpg.PostgresError) as exc:
            self._unlocked.forget()
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc

    def first_to_try(self, deadline_id: int) -> bool:
        """Whether this replica tries this deadline at its due time; the others try it a
        little later, should this one not have fired it (see escalation/timer.py)."""
        return self.replica is None or share(deadline_id, self.alive, self.replica)

    async def _prepare_schema(self, conn: Connection) -> None:
        if self._migrate:
            try:
                await migrate(conn)  # no DDL when nothing is pending
            except asyncpg.InsufficientPrivilegeError as exc:
                raise StartupError(
                    f"the store {self.name} has schema migrations pending and its user may not"
                    f" apply them ({exc}): run `ackd migrate` as the schema's owner first"
                ) from exc
            return
        version = await schema_version(conn)
        if version < len(MIGRATIONS):
            raise SchemaBehind(self.name, version, len(MIGRATIONS))

    async def close(self) -> None:
        """Finish every queued write, then close. Nothing accepted is dropped."""
        if self._writers:
            await self._queue.join()
            await self._alone.join()
            for task in self._writers:
                task.cancel()  # all at once, then wait for each
            for task in self._writers:
                await cancel(task)
            self._writers = []
        await self._close_connections()

    async def _close_connections(self) -> None:
        await self._announcer.close()  # before the pool closes: what is pending goes
        await self._versions.close()
        await cancel(self._watch)
        self._watch = None
        await cancel(self._beat)  # before the listener closes: a beat may be running on it
        self._beat = None
        await cancel(self._relisten)
        self._relisten = None
        if self._listener is not None:
            listener, self._listener = self._listener, None  # closed on purpose: not lost
            with contextlib.suppress(*BROKEN):
                await listener.close(timeout=5)
        if self._pool is not None:
            with contextlib.suppress(*BROKEN):
                await asyncio.wait_for(self._pool.close(), 10)
            self._pool = None

    async def _pool_connection(self, conn: asyncpg.Connection) -> None:
        """A new connection of the pool: its server process is this replica's until it ends.
        It learns the codec of bigint[] now, as it opens: asyncpg knows text[] and oid[] on
        every connection and asks the server for any other type a statement's parameters or
        columns hold, once per connection, when one first does (its type introspection: a
        query of the catalog that costs PostgreSQL about 20 ms of planning, and two more round
        trips, in the way of the batch that sent it). The store's statements hold no other."""
        backend = conn.get_server_pid()
        await register_text(conn)  # NUL in text (text.py)
        await conn.fetchval("SELECT NULL::bigint[]")
        self._own_backends.add(backend)
        conn.add_termination_listener(lambda _: self._own_backends.discard(backend))

    def _on_deadline(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if pid in self._own_backends:
            # This replica's own announcement: its timer has the deadline since the commit
            # (armed after it by whoever armed it). Armed again, it would sit in the heap
            # twice, and be taken and counted late twice.
            return
        deadline_id, _, due = str(payload).partition(":")
        try:
            armed = (int(deadline_id), from_us(int(due)))
        except ValueError:
            log.warning("ignored a deadline notification that is not id:due (%r)", payload)
            return
        for listener in self.deadline_listeners:
            listener(*armed)

    def _on_outbox(self, conn: object, pid: int, channel: str, payload: object) -> None:
        for listener in self.outbox_listeners:
            listener()

    def _on_change(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            what = Shared(str(payload))
        except ValueError:
            log.warning("ignored a change notification of nothing known (%r)", payload)
            return
        for listener in self.change_listeners:
            listener(what)

    # -- writes ---------------------------------------------------------------------------

    async def write(self, run: Callable[[Transaction], Awaitable[T]]) -> T:
        """Run `run` inside the next batch's transaction; return once it committed."""
        return await self._submit(self._queue, run)

    async def _write_alone(self, run: Callable[[Transaction], Awaitable[T]]) -> T:
        """Run `run` in a transaction of its own, taken by a writer of its own: a job that
        takes locks every replica's same job waits for (a dispatcher pass's channel locks)
        would otherwise make the webhooks batched with it wait behind another replica's pass
        until that one's batch committed, and hold its locks, the others' passes waiting,
        until its batch-mates' statements were done too. In a pool too small for that writer
        (PASSES_ALONE_FROM), a batch's job like any other."""
        return await self._submit(self._alone if self._passes_alone else self._queue, run)

    async def _submit(
        self, queue: asyncio.Queue[Job[Any]], run: Callable[[Transaction], Awaitable[T]]
    ) -> T:
        if not self._writers or all(task.done() for task in self._writers):
            raise StoreUnavailable("the store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        queue.put_nowait(Job(run, future))  # unbounded: never waits
        return await future

    async def _write_loop(self, queue: asyncio.Queue[Job[Any]], most: int) -> None:
        while True:
            batch: list[Job[Any]] = [await queue.get()]
            while len(batch) < most and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._run_batch(batch)
            except Exception as exc:
                # Whatever went wrong, the writer goes on (were it to end, the callers of this
                # batch would wait for ever and this replica write nothing again): the jobs
                # not answered yet fail with StoreUnavailable, a 503 that Alertmanager retries.
                log.exception("a store write batch of %d job(s) failed unexpectedly",
                              len(batch))
                if not all(job.future.done() for job in batch):
                    self._fail_batch(batch, exc)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _run_batch(self, batch: Sequence[Job[Any]], *, careful: bool = False) -> None:
        """Run the batch's jobs in one transaction and commit it; each caller gets its job's
        result, or its own error, once the commit is durable.

        The jobs run first without savepoints: a SAVEPOINT, and the RELEASE that ends it, are
        a round trip for every job after the first, and a subtransaction each in PostgreSQL.
        When any job fails (its own error, a race lost to another replica, its held writes
        refused), the transaction is rolled back whole and the batch runs again in a fresh
        transaction the careful way (`careful`): each job in a savepoint of its own, rolled
        back to it alone, a lost race run again in it. A job that failed with its own error
        (not a race lost: that one may succeed now) is left out of the run again, as on
        SQLite, and answered its error: so a job runs at most twice unless it lost a race.
        What a failure does is what it did with a savepoint per job, one run later, and a job
        may run more than once before its commit (see Store.write): only the committed run's
        tx runs its after_commit."""
        pool = self._pool
        assert pool is not None
        started = time.perf_counter()
        try:
            async with pool.acquire() as conn:
                try:
                    tx, outcomes = await _run_until_committed(
                        conn, self.replica, batch, careful=careful)
                except (_LockCycle, *BROKEN, asyncpg.PostgresError):
                    raise
                except Exception:
                    # Neither a job's own error (that stays in its savepoint) nor a known
                    # error of the connection or the server: the driver's (UNSOUND) or a bug
                    # outside the jobs. What the connection holds is not known: it is closed,
                    # PostgreSQL rolls the batch back, and the pool opens another.
                    conn.terminate()
                    raise
        except _LockCycle:
            # Another replica's batch locks some of the same rows in the other order (a group
            # posted to every replica at once). Giving the whole batch up releases its locks;
            # alone, each job's retry in its savepoint holds nothing another waits for.
            log.info("a batch of %d jobs met a lock cycle; its jobs run one by one", len(batch))
            for job in batch:
                await self._run_batch([job], careful=True)
            return
        except (*BROKEN, *UNSOUND, asyncpg.PostgresError) as exc:
            # The connection, the server, or the COMMIT itself failed: nothing of the batch
            # is in the database. (UNSOUND: its connection was closed above.)
            self._fail_batch(batch, exc)
            return
        except Exception as exc:
            log.exception("a store write batch of %d job(s) failed unexpectedly", len(batch))
            self._fail_batch(batch, exc)
            return
        if tx is None:  # the batch's one job failed with its own error: nothing to commit
            answer(outcomes)
            return
        self._committed(outcomes, time.perf_counter() - started)
        tx.run_after_commit()
        if tx.announcements:  # once the callers have their answers, sent by the announcer
            self._announcer.add(tx.announcements)

    def _committed(
        self, outcomes: Sequence[Outcome], took: float
    ) -> None:
        """The batch committed: each caller gets its job's result (or its own error)."""
        self.stats.commits += 1
        self.stats.failing = ""
        for observe in self.stats.on_commit:
            observe(took, len(outcomes))
        answer(outcomes)

    async def _announce(self, announcements: Sequence[str]) -> None:
        """Tell the other replicas' timers of the deadlines batches armed, after their
        COMMIT, in one statement (announce.py gathers them). It writes nothing, so its
        commit waits for no WAL flush and it holds the notification lock for microseconds.
        If it fails, the deadlines stay armed here, and were this replica to die, the others
        read them (_catch_up): no batch is failed for it."""
        try:
            await self._fetch("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                              DEADLINES_CHANNEL, list(announcements))
        except StoreUnavailable as exc:
            log.warning("cannot tell the other replicas of %d deadline(s): %s",
                        len(announcements), exc)

    def _fail_batch(self, batch: Sequence[Job[Any]], exc: BaseException) -> None:
        self.stats.failures += 1
        self.stats.last_error = self.stats.failing = str(exc) or type(exc).__name__
        if isinstance(exc, (*BROKEN, *UNSOUND)):
            # The database restarted, failed over, or the network cut: expected in operation,
            # one line; the callers answer 503 and Alertmanager sends again.
            log.warning("store write failed, the connection to PostgreSQL was lost: %d job(s)"
                        " answered 503, to be sent again: %s: %s", len(batch),
                        type(exc).__name__, self.stats.failing)
        else:
            log.error("store write failed, %d job(s) answered 503: %s", len(batch),
                      self.stats.failing)
        for job in batch:
            if not job.future.done():
                job.future.set_exception(StoreUnavailable(self.stats.failing))

    async def writable(self) -> None:
        """Raise StoreUnavailable if writes fail now: the last batch failed and an empty
        transaction still fails."""
        if self.stats.failing:
            await self.write(_nothing)

    # -- reads ----------------------------------------------------------------------------

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with self._pool.acquire() as conn:
                try:
                    return list(await conn.fetch(sql, *params))
                except UNSOUND:
                    conn.terminate()  # see UNSOUND
                    raise
        except (*BROKEN, *UNSOUND, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def incident(self, incident_id: int) -> Incident:
        rows = await self._fetch(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1", incident_id
        )
        if not rows:
            raise NotFound(f"incident {incident_id} does not exist")
        return incident_from_row(tuple(rows[0]))

    async def incidents(self, where: IncidentFilter) -> list[Incident]:
        clauses, params = _filter_sql(where)
        sql = f"SELECT {INCIDENT_COLUMNS} FROM incidents"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY id DESC LIMIT ${len(params) + 1}"
        rows = await self._fetch(sql, *params, where.limit)
        return [incident_from_row(tuple(r)) for r in rows]

    async def alerts(self, incident_id: int) -> list[Alert]:
        rows = await self._fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE incident_id = $1"
            " ORDER BY status = 'resolved', starts_at", incident_id,
        )
        return [alert_from_row(tuple(r)) for r in rows]

    async def timeline(self, incident_id: int) -> list[TimelineEvent]:
        rows = await self._fetch(
            "SELECT at, kind, actor, detail FROM timeline WHERE incident_id = $1 ORDER BY id",
            incident_id,
        )
        return events_from_rows(rows)

    async def deadlines(self) -> list[tuple[int, datetime]]:
        """Every armed deadline (id, due), every replica's: each timer indexes them all."""
        rows = await self._fetch("SELECT id, due FROM deadlines")
        return [(int(r[0]), from_us(r[1])) for r in rows]

    async def due_notifications(
        self, now: datetime, limit: int = 100
    ) -> list[tuple[OutboxRow, Incident | None]]:
        """Notifications due, each with its incident, read in a writer job (see SQLite's)."""

        async def job(tx: Transaction) -> list[tuple[OutboxRow, Incident | None]]:
            return await _with_incidents(tx, await tx.due_outbox(now, limit))

        return await self.write(job)

    async def lease_due_notifications(
        self, now: datetime, limit: int
    ) -> list[tuple[OutboxRow, Incident | None]]:
        """Like due_notifications, but each row returned is leased to this replica."""

        async def job(tx: Transaction) -> list[tuple[OutboxRow, Incident | None]]:
            return await _with_incidents(tx, await tx.lease_due_outbox(now, limit))

        return await self.write(job)

    async def lease_and_decide(
        self, now: datetime, limit: int,
        decide: Callable[
            [Transaction, list[tuple[OutboxRow, IncidentFacts | None]]], Awaitable[T]],
    ) -> T:
        """The lease and `decide` on its rows in one job (see store.base.Store), each with
        its whole incident, read once: a second read, unlocked, could see a later commit."""

        async def job(tx: Transaction) -> T:
            leased = await tx.lease_due_outbox(now, limit)
            found: list[tuple[OutboxRow, IncidentFacts | None]] = [
                *await _with_incidents(tx, leased)]
            return await decide(tx, found)

        return await self._write_alone(job)  # its channel locks (channels.py)

    async def next_outbox_at(self, after: datetime) -> datetime | None:
        """When the earliest row due later than `after` is due; a row in flight is due when
        its lease ends (another replica sends it then, should the one sending it be gone)."""
        rows = await self._fetch(
            "SELECT min(next_attempt_at) FROM outbox WHERE next_attempt_at > $1", to_us(after)
        )
        return None if not rows or rows[0][0] is None else from_us(rows[0][0])

    async def oldest_due_outbox(self, now: datetime) -> datetime | None:
        """See Store.oldest_due_outbox: leased_from is when a taken row first fell due (a
        renewal keeps it)."""
        rows = await self._fetch(
            "SELECT least((SELECT min(coalesce(leased_from, next_attempt_at)) FROM outbox"
            " WHERE next_attempt_at <= $1),"
            " (SELECT min(leased_from) FROM outbox WHERE leased_by IS NOT NULL))",
            to_us(now),
        )
        return None if not rows or rows[0][0] is None else from_us(rows[0][0])

    async def count_open(self) -> list[tuple[str, str, str, int]]:
        """(team, severity, state, count) of every open incident, for the gauge."""
        rows = await self._fetch(
            "SELECT team, severity, state, count(*) FROM incidents"
            " WHERE state != 'resolved' AND group_key NOT LIKE 'drill:%'"
            " GROUP BY team, severity, state"
        )
        return [(r[0], r[1], r[2], int(r[3])) for r in rows]

    async def open_escalations(self) -> list[tuple[int, dict[str, Any]]]:
        """(incident id, escalation state) of every open incident that has one, oldest first.
        Decoded on a thread: with 100,000 open incidents, decoding held the loop for seconds
        (webhooks, timers and the listener's beat with it: store/postgres/replicas.HUNG)."""
        rows = await self._fetch(OPEN_ESCALATIONS)
        return await asyncio.to_thread(escalations_from_rows, rows)

    async def open_firing_alerts(self) -> list[tuple[int, str, dict[str, str]]]:
        """(incident id, group key, labels) of each firing alert of every open incident,
        decoded on a thread (as open_escalations)."""
        return await asyncio.to_thread(firing_alerts_from_rows,
                                       await self._fetch(OPEN_FIRING_ALERTS))

    async def open_contacts(self) -> list[tuple[int, str]]:
        """(incident id, deadline key) of each delayed contact waiting, triggered incidents."""
        return [(int(r[0]), str(r[1])) for r in await self._fetch(OPEN_CONTACTS)]

    async def waiting_messages(self) -> Waiting:
        """The messages still to go that name their recipient, decoded on a thread (an
        outbox of a storm holds thousands of rows)."""
        return await asyncio.to_thread(waiting_from_rows, await self._fetch(WAITING_MESSAGES))

    async def maintenance_windows(self) -> list[Window]:
        """The maintenance windows made through the API, oldest first."""
        rows = await self._fetch(f"SELECT {WINDOW_COLUMNS} FROM maintenance ORDER BY id")
        return windows_from_rows(rows)

    async def heartbeat_arrivals(self) -> dict[str, datetime]:
        """When each heartbeat last arrived (receiver/heartbeats/)."""
        rows = await self._fetch("SELECT name, last_arrival FROM heartbeats")
        return {str(r[0]): from_us(r[1]) for r in rows}

    async def open_incidents_by_group(self, group_keys: Sequence[str]) -> dict[str, int]:
        """The open incident of each of these groups that has one."""
        if not group_keys:
            return {}
        rows = await self._fetch(
            "SELECT group_key, id FROM incidents WHERE state != 'resolved'"
            " AND md5(group_key) IN (SELECT md5(k) FROM unnest($1::text[]) AS k)"
            " AND group_key = ANY($1::text[])", [escape(k) for k in group_keys])
        return {str(r[0]): int(r[1]) for r in rows}

    async def open_versions(self, incident_ids: Sequence[int]) -> dict[int, int]:
        """The row version (xmin) of each of these incidents still open, as committed: one
        statement, no lock, on a reading connection (see grouping.HeldGroups), shared with
        the callers that asked at the same time (versions.py)."""
        if not incident_ids:
            return {}
        return await self._versions.read(incident_ids)

    async def _read_versions(self, incident_ids: list[int]) -> dict[int, int]:
        rows = await self._fetch(VERSIONS, incident_ids)
        return {int(r[0]): int(r[1]) for r in rows}

    async def earlier_incidents(self, incident_id: int, limit: int = 20) -> list[Incident]:
        """Incidents before this one that held any of its alerts (a fingerprint), newest
        first: what a post-mortem lists as recurrence."""
        rows = await self._fetch(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id IN ("
            " SELECT e.incident_id FROM alerts a JOIN alerts e ON e.fingerprint = a.fingerprint"
            " WHERE a.incident_id = $1 AND e.incident_id < $1) ORDER BY id DESC LIMIT $2",
            incident_id, limit,
        )
        return [incident_from_row(tuple(r)) for r in rows]

    async def history(
        self, since: datetime
    ) -> list[tuple[Incident, list[Alert], list[TimelineEvent]]]:
        """Every incident opened since `since`, with its alerts and its timeline less the
        delivery events, oldest first (what reports read)."""
        start = to_us(since)
        incidents = [incident_from_row(tuple(r)) for r in await self._fetch(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE opened_at >= $1 ORDER BY id",
            start)]
        alerts: dict[int, list[Alert]] = {i.id: [] for i in incidents}
        for row in await self._fetch(
            f"SELECT incident_id, {ALERT_COLUMNS} FROM alerts WHERE incident_id IN"
            " (SELECT id FROM incidents WHERE opened_at >= $1)", start):
            alerts.setdefault(int(row[0]), []).append(alert_from_row(tuple(row)[1:]))
        events: dict[int, list[TimelineEvent]] = {i.id: [] for i in incidents}
        for row in await self._fetch(
            "SELECT incident_id, at, kind, actor, detail FROM timeline WHERE incident_id IN"
            " (SELECT id FROM incidents WHERE opened_at >= $1)"
            " AND kind NOT LIKE 'notification%' ORDER BY id", start):
            events.setdefault(int(row[0]), []).extend(events_from_row(tuple(row)[1:]))
        return [(i, alerts[i.id], events[i.id]) for i in incidents]


async def _in_transaction(
    conn: Connection, begin: str, run: Callable[[], Awaitable[bool]]
) -> bool:
    """`begin`, run, COMMIT, and True; ROLLBACK and False when `run` says a job failed (a run
    without savepoints: the caller runs the batch again); ROLLBACK when `run` (or the
    COMMIT) raises. By hand rather than asyncpg's transaction(), so that BEGIN shares a round
    trip with the first job's savepoint when there is one (see _run_careful)."""
    await conn.execute(begin)
    try:
        if not await run():
            await conn.execute("ROLLBACK")  # not swallowed: if it fails, so does the batch
            return False
        await conn.execute("COMMIT")
        return True
    except BaseException:
        if not conn.is_closed() and conn.is_in_transaction():
            with contextlib.suppress(*BROKEN, asyncpg.PostgresError):
                await conn.execute("ROLLBACK")
        raise


async def _run_until_committed(
    conn: Connection, replica: int | None, batch: Sequence[Job[Any]], *, careful: bool,
) -> tuple[PostgresTransaction | None, list[Outcome]]:
    """The batch run without savepoints and, when a job failed, again with a savepoint per
    job, less the job that failed with its own error (see PostgresStore._run_batch); the
    committed run's transaction (None when no job was left to run) and every job's outcome,
    in the batch's order."""
    failed: list[Outcome] = []  # the job that failed with its own error in the first run
    if not careful:
        tx = PostgresTransaction(conn, replica)
        outcomes: list[Outcome] = []
        if await _in_transaction(
                conn, "BEGIN", partial(_run_optimistic, conn, tx, batch, outcomes, failed)):
            return tx, outcomes
    jobs = [job for job in batch if not failed or job is not failed[0][0]]
    if not jobs:
        return None, failed
    # A run again remembers nothing of the one before (memos, held writes, after-commit
    # callbacks, announcements).
    tx = PostgresTransaction(conn, replica, savepoints=True)
    outcomes = []
    await _in_transaction(conn, "BEGIN; SAVEPOINT job",
                          partial(_run_careful, conn, tx, jobs, outcomes))
    if failed:
        ran = {id(outcome[0]): outcome for outcome in outcomes}
        outcomes = [ran.get(id(job)) or failed[0] for job in batch]
    return tx, outcomes


async def _run_optimistic(
    conn: Connection, tx: PostgresTransaction, batch: Sequence[Job[Any]],
    outcomes: list[Outcome], failed: list[Outcome],
) -> bool:
    """Each job one after the other with no savepoint; then the row versions (read_versions).
    A job's held writes are not sent at its end, as _run_job sends them, but with the
    batch's next statement (the next job's first: a group's read carries them when they
    touch nothing it reads, held.py), and the last job's at its end. False as soon as a job
    fails in any way (its own error, a race lost to another replica, its held writes
    refused): the caller rolls the whole transaction back and runs the batch again with
    _run_careful. A job that failed with its own error is added to `failed`, for the caller
    to answer and leave out of the run again, unless an earlier job's writes were still held
    when it failed (`tx.inherited`: the error may be theirs; the run again, each job's writes
    sent in its savepoint, tells them apart); a lost race is not (run again, it may succeed).
    A lock cycle in a batch of several is answered as _run_careful answers it (_LockCycle):
    the cycle is the same."""
    last = len(batch) - 1
    for n, job in enumerate(batch):
        tx.inherited = tx.holding
        try:
            result = await job.run(tx)
            if n == last:
                await tx.send_held()
        except (*BROKEN, *UNSOUND):
            raise
        except Exception as exc:
            if len(batch) > 1 and isinstance(exc, LOCK_ORDER):
                raise _LockCycle from exc
            if not isinstance(exc, RETRYABLE) and not tx.inherited:
                failed.append((job, None, exc))
            return False
        outcomes.append((job, result, None))
    await tx.read_versions()
    return True


async def _run_careful(
    conn: Connection, tx: PostgresTransaction, batch: Sequence[Job[Any]],
    outcomes: list[Outcome],
) -> bool:
    """Each job in a savepoint of its own, the first opened with BEGIN, each next one in the
    round trip that releases the one before (the COMMIT releases the last); then the row
    versions the batch's memos need (read_versions), as the last statement before COMMIT."""
    for n, job in enumerate(batch):
        if n:
            await conn.execute("RELEASE SAVEPOINT job; SAVEPOINT job")
        outcomes.append(await _run_job(conn, tx, job, alone=len(batch) == 1))
    await tx.read_versions()
    return True


class _LockCycle(Exception):
    """A job of a batch of several lost a lock-order race: run the batch's jobs one by one."""


async def _run_job(
    conn: Connection, tx: PostgresTransaction, job: Job[Any], *, alone: bool
) -> Outcome:
    """Run a job in the savepoint open for it: rolled back to it when the job raises (and
    run again, in the same savepoint, when it lost a race with another transaction).
    Errors of the connection propagate and fail the batch."""
    error: BaseException | None = None
    for _ in range(RETRIES):
        mark = tx.mark()
        try:
            result = await job.run(tx)
            await tx.send_held()  # what the job wrote, in its savepoint (held.py)
        except (*BROKEN, *UNSOUND):
            raise
        except Exception as exc:  # a job's own error must not spoil the others in its batch
            if not alone and isinstance(exc, LOCK_ORDER):
                raise _LockCycle from exc
            await conn.execute("ROLLBACK TO SAVEPOINT job")  # the savepoint stays open
            tx.rewind(mark)
            error = exc
            if not isinstance(exc, RETRYABLE):
                break
            continue
        return job, result, None
    return job, None, error


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection given back to the pool needs beyond asyncpg's own rollback of an
    open transaction: nothing. ackd sets no session state on pool connections (no SET,
    LISTEN, cursors or session advisory locks: the listener has a connection of its own,
    migrations take a transaction's lock), so asyncpg's default reset (RESET ALL, UNLISTEN,
    CLOSE ALL, unlocking) was a round trip per batch and per read that undid nothing."""


async def _nothing(tx: Transaction) -> None:
    """A job that writes nothing: its batch's commit proves that writes work again."""


def _filter_sql(where: IncidentFilter) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if where.state is not None:
        clauses.append(f"state = {param(where.state.value)}")
    elif where.open_only:
        clauses.append("state != 'resolved'")
    for column, value in (("team", where.team), ("severity", where.severity)):
        if value is not None:
            clauses.append(f"{column} = {param(value)}")
    if where.before_id is not None:
        clauses.append(f"id < {param(where.before_id)}")
    return clauses, params


async def _with_incidents(
    tx: Transaction, rows: list[OutboxRow]
) -> list[tuple[OutboxRow, Incident | None]]:
    """Each outbox row with its incident (None if it is gone), the incidents read at once,
    as committed and not locked (see peek_incidents)."""
    assert isinstance(tx, PostgresTransaction)
    incidents = await tx.peek_incidents([row.incident_id for row in rows])
    return [(row, incidents.get(row.incident_id)) for row in rows]


if TYPE_CHECKING:  # mypy checks here that the PostgreSQL store implements the interface
    _store: type[Store] = PostgresStore
    _transaction: type[Transaction] = PostgresTransaction
