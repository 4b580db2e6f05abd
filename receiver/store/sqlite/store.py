"""The embedded SQLite store: WAL mode, one writer task, group commit.

One aiosqlite connection shared by concurrent tasks that each run their own transaction fails
under load, so every write goes through a single writer task: callers submit a job (an async
function of a Transaction) and await its result; the writer runs all queued jobs in one
transaction and commits once. One failing job cannot spoil the others: the transaction is
rolled back and the others run again without it, each in a savepoint then (see _run_batch).
A job's future resolves only after that commit: a 200 to Alertmanager means the
alerts are on disk. Reads use a second connection, which WAL lets run beside the writer.

The writer's statements run on the event loop, on a plain sqlite3 connection: inside a
transaction that already holds the write lock each one is a few microseconds of CPU against
the page cache, far less than the thread hop aiosqlite pays per statement (two context
switches, a wake-up of the loop, and a wait for the GIL), which made the writer the
bottleneck of ingest. What can block goes to the writer's own thread: BEGIN IMMEDIATE (it
waits up to busy_timeout for another process's write lock) and COMMIT (the fsync, and the WAL
checkpoint that follows it). The connection is only ever used by one thread at a time: the
writer awaits each of those calls before it touches the connection again.

The store says when it is in trouble. Opening runs SQLite's quick_check and refuses a damaged
file (StoreCorrupt) before anything is written to it. While writes fail, `writable()` says so
(for /-/ready); a damaged page found later is remembered until restart, and the jobs of its
batch that had not started yet run in a transaction of their own. Before each
transaction the WAL index file is checked (shm.ShmGuard): SQLite dies of SIGBUS when that file
cannot take writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

from receiver.core.clockskew import Offset
from receiver.core.errors import NotFound, SchemaBehind, StoreCorrupt, StoreUnavailable
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
from receiver.store.records import (
    IncidentFacts,
    IncidentFilter,
    OutboxRow,
    StoreStats,
    Waiting,
)
from receiver.store.sqlite.handoff import WriterThread
from receiver.store.sqlite.outbox import LEASED
from receiver.store.sqlite.schema import MIGRATIONS
from receiver.store.sqlite.shm import ShmGuard
from receiver.store.sqlite.transaction import SqliteTransaction

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 256
# For migration 4: the index of a URL among a recipient's contacts, None if it has none.
ContactIndex = Callable[[str, str, str], int | None]
# The store's files hold who was paged about what: readable by ackd's own user only.
FILE_MODE = 0o600
DIR_MODE = 0o700
_SIDE_FILES = ("", "-wal", "-shm")



class SqliteStore:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 2000,
        contact_index: ContactIndex | None = None,
        check_integrity: bool = True,
        migrate: bool = True,
    ) -> None:
        self.path = path
        self._migrate = migrate
        self._contact_index = contact_index or _no_contact
        self._check_integrity = check_integrity
        self._shm = ShmGuard(path)
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        # One process: a lease lasts until its result is written (LEASED), never lapses.
        self.outbox_lease: timedelta | None = None
        self.outbox_handover: timedelta | None = None
        self.clock_offset: Offset | None = None  # one process: no other clock to be off from
        self._writer: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._io: WriterThread | None = None
        self._queue: asyncio.Queue[Job[Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.stats = StoreStats()

    async def open(self) -> None:
        private_dir(self.path.parent)
        _private_files(self.path)
        self._io = WriterThread("ackd-store-writer")
        try:
            self._writer = await self._off_loop(self._open_writer)
        except BaseException:
            self._io.stop()
            self._io = None
            raise
        self._shm.open()
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in self._pragmas():
            await self._reader.execute(pragma)
        self._task = asyncio.create_task(self._write_loop(), name="ackd-store-writer")

    def _pragmas(self) -> list[str]:
        return [
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={self._synchronous}",
            f"PRAGMA busy_timeout={self._busy_timeout_ms}",
            "PRAGMA foreign_keys=ON",
            # Savepoint journals in memory, not in a temporary file per batch.
            "PRAGMA temp_store=MEMORY",
            # 16 MiB of pages per connection (the default is 2 MiB): a storm touches the
            # incidents, alerts and timeline indexes all over.
            "PRAGMA cache_size=-16384",
        ]

    def _open_writer(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
        # check_same_thread=False: statements run on the loop, COMMIT on self._io.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            if self._check_integrity:
                _check_integrity(conn, self.path)
            for pragma in self._pragmas():
                conn.execute(pragma)
            if self._migrate:
                migrate(conn, self._contact_index)
            else:
                _require_current(conn, self.path)
            _end_leases(conn)
            # On the loop the writer never waits for a lock: see _begin.
            conn.execute("PRAGMA busy_timeout=0")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE: on the loop when the write lock is free, the usual case and a few
        microseconds; when another process holds it, on the writer's thread, waiting up to
        busy_timeout. A hop to the thread costs the batch a wait for the GIL, which the loop
        holds while it serves requests: milliseconds, on every batch."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            await self._off_loop(_begin_waiting, conn, self._busy_timeout_ms)

    async def _off_loop(self, call: Callable[..., T], *args: Any) -> T:
        """Run a call that may block (lock wait, fsync) on the writer's thread."""
        assert self._io is not None
        return await self._io.run(functools.partial(call, *args))

    async def close(self) -> None:
        """Finish every queued write, then close. Nothing accepted is dropped.

        Raises StoreUnavailable, and leaves the connections open, when the WAL index cannot
        take writes: closing checkpoints, which writes it, and SIGBUS would end the process.
        Everything committed is in the WAL; the caller should exit without closing them."""
        if self._task is not None:
            await self._queue.join()
            await cancel(self._task)
            self._task = None
        self._shm.check()
        if self._writer is not None:
            await self._off_loop(self._writer.close)
        if self._reader is not None:
            await self._reader.close()
        self._shm.close()  # only now: see ShmGuard.close
        if self._io is not None:
            self._io.stop()
        self._writer = self._reader = self._io = None

    async def write(self, run: Callable[[Transaction], Awaitable[T]]) -> T:
        """Run `run` inside the next group commit; return once it is durable."""
        if self._task is None or self._task.done():
            raise StoreUnavailable("the store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Job(run, future))  # unbounded: never waits
        return await future

    async def _write_loop(self) -> None:
        while True:
            batch: list[Job[Any]] = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._run_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _run_batch(self, batch: Sequence[Job[Any]]) -> None:
        """Run the batch's jobs in one transaction and commit it; each caller gets its job's
        result, or its own error, once the commit is durable.

        The jobs run without savepoints: a savepoint copies each page a job changes, as it
        first changes it, into its journal, and the jobs of a batch all change the same last
        pages of the timeline, the alerts and their indexes. When a job fails with its own
        error, the transaction is rolled back whole and the batch runs again without that
        job, in a fresh transaction, each job then in a savepoint of its own, so that another
        failure is rolled back alone and costs no third run: a job runs at most twice. So a
        job may run more than once before its commit (see Store.write): what it does outside
        the transaction goes through tx.after_commit, which only the committed run's tx runs.
        """
        conn = self._writer
        assert conn is not None
        started = time.perf_counter()
        jobs = batch
        # id(job): the outcome of a job that failed in a run without savepoints
        failed: dict[int, Outcome] = {}
        savepoints = False
        while jobs:
            tx = SqliteTransaction(conn)  # a run again remembers nothing of the one before
            changes = conn.total_changes
            outcomes: list[Outcome] = []
            failing: Outcome | None = None
            in_jobs = False
            try:
                self._shm.check()
                await self._begin(conn)
                in_jobs = True
                for job in jobs:
                    outcome = await self._run_job(conn, tx, job, savepoint=savepoints)
                    outcomes.append(outcome)
                    if outcome[2] is not None and not savepoints:
                        failing = outcome  # _run_job rolled the transaction back
                        break
                in_jobs = False
                if failing is None:
                    assert self._io is not None
                    await self._io.run(functools.partial(self._commit, conn), hand_over=True)
            except (sqlite3.Error, StoreUnavailable) as exc:
                # After a damaged page, SQLite fails the rest of the transaction too. The jobs
                # of this run that had not started yet never ran: they get a transaction of
                # their own. (Those that ran are rolled back with it and fail, and so does a
                # job of the batch that failed with its own error in a run before.)
                damaged = in_jobs and isinstance(exc, sqlite3.DatabaseError) and _is_damage(exc)
                unstarted = {id(j) for j in jobs[len(outcomes) + 1:]} if damaged else set()
                await self._fail_batch(
                    conn, [j for j in batch if id(j) not in unstarted], exc)
                if unstarted:
                    await self._run_batch([j for j in batch if id(j) in unstarted])
                return
            if failing is not None:
                failed[id(failing[0])] = failing
                jobs = [j for j in jobs if j is not failing[0]]
                savepoints = True
                continue
            self._committed(batch, time.perf_counter() - started, conn.total_changes != changes)
            if failed:  # every job's outcome, in the batch's order
                ran = {id(outcome[0]): outcome for outcome in outcomes}
                outcomes = [ran.get(id(job)) or failed[id(job)] for job in batch]
            answer(outcomes)
            tx.run_after_commit()
            return
        answer([failed[id(job)] for job in batch])  # the batch's one job failed: no commit

    def _commit(self, conn: sqlite3.Connection) -> None:
        """On the writer's thread: the WAL index checked again (the commit is what writes it
        most), then COMMIT. The check is three system calls, as much as the loop's share of a
        webhook's parsing; here it is no longer the loop's. The loop waits for both, its GIL
        released (handed over, see handoff.py): each of the check's calls gives the GIL up and
        takes it back, which behind a busy loop was a wait of up to 5 ms each."""
        assert self._io is not None
        self._shm.check()
        self._io.started()
        conn.execute("COMMIT")

    def _committed(self, batch: Sequence[Job[Any]], seconds: float, wrote: bool) -> None:
        self.stats.commits += 1
        if wrote or any(j.run == self._rewrite_header for j in batch):
            self.stats.failing = ""  # a batch of reads alone says nothing of writes
        for observe in self.stats.on_commit:
            observe(seconds, len(batch))

    @staticmethod
    async def _run_job(
        conn: sqlite3.Connection, tx: SqliteTransaction, job: Job[Any], *, savepoint: bool
    ) -> Outcome:
        """Run a job; on its own error, roll back to its savepoint, or without one the whole
        transaction (the caller runs the others again)."""
        if savepoint:
            conn.execute("SAVEPOINT job")
        mark = tx.mark()
        try:
            result = await job.run(tx)
        except sqlite3.IntegrityError as exc:
            # A constraint this job broke (e.g. a second open incident for one group): its own
            # fault, so it fails alone, like any other error a job raises.
            error: BaseException = exc
        except sqlite3.Error:
            # The connection itself is in trouble: fail the whole batch. A damaged page too:
            # after SQLite found one, the rest of the transaction fails as well.
            raise
        except Exception as exc:  # a job's own error must not spoil the others in its batch
            error = exc
        else:
            if savepoint:
                conn.execute("RELEASE job")
            return job, result, None
        if savepoint:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            tx.rewind(mark)
        elif conn.in_transaction:
            conn.execute("ROLLBACK")
        return job, None, error

    async def _fail_batch(
        self, conn: sqlite3.Connection, batch: Sequence[Job[Any]], exc: Exception
    ) -> None:
        self.stats.failures += 1
        self.stats.last_error = self.stats.failing = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and _is_damage(exc):
            self._found_damage(exc)
        log.error("store write failed, %d job(s) answered 503: %s", len(batch), exc)
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await self._off_loop(conn.execute, "ROLLBACK")
        for job in batch:
            if not job.future.done():
                job.future.set_exception(StoreUnavailable(str(exc)))

    def _found_damage(self, exc: sqlite3.DatabaseError) -> None:
        if not self.stats.corrupt:
            self.stats.corrupt = str(exc)
            log.error("the store %s is damaged (%s): restore it from a backup", self.path, exc)

    async def writable(self) -> None:
        """Raise StoreUnavailable if writes fail now: the file is damaged, the WAL index cannot
        take writes, or the last batch failed and a write of nothing still fails."""
        if self.stats.corrupt:
            raise StoreUnavailable(
                f"the store is damaged ({self.stats.corrupt}): restore it from a backup"
            )
        self._shm.check()
        if self.stats.failing:
            await self.write(self._rewrite_header)

    async def _rewrite_header(self, tx: Transaction) -> None:
        """A write that changes nothing yet goes to the disk: the user_version in the file's
        header page, set to what it is."""
        conn = self._writer
        assert conn is not None
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute(f"PRAGMA user_version={version}")

    # -- reads ---------------------------------------------------------------------------

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._reader is None:
            raise StoreUnavailable("the store is not open")
        self._shm.check()
        try:
            # One call on the reader's thread, from the statement's start to its end. As two
            # calls (execute, then fetchall) the statement stayed open between them, and with
            # it the connection's read snapshot: another read that ran in between saw the
            # store as it was before commits its caller had already been answered for.
            rows = await self._reader.execute_fetchall(sql, params)
            return [tuple(r) for r in rows]
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def ping(self) -> None:
        await self._fetchall("SELECT 1")

    async def incident(self, incident_id: int) -> Incident:
        rows = await self._fetchall(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)
        )
        if not rows:
            raise NotFound(f"incident {incident_id} does not exist")
        return incident_from_row(rows[0])

    async def incidents(self, where: IncidentFilter) -> list[Incident]:
        clauses, params = _filter_sql(where)
        sql = f"SELECT {INCIDENT_COLUMNS} FROM incidents"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = await self._fetchall(sql, [*params, where.limit])
        return [incident_from_row(r) for r in rows]

    async def alerts(self, incident_id: int) -> list[Alert]:
        rows = await self._fetchall(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE incident_id = ?"
            " ORDER BY status = 'resolved', starts_at",
            (incident_id,),
        )
        return [alert_from_row(r) for r in rows]

    async def timeline(self, incident_id: int) -> list[TimelineEvent]:
        rows = await self._fetchall(
            "SELECT at, kind, actor, detail FROM timeline WHERE incident_id = ? ORDER BY id",
            (incident_id,),
        )
        return events_from_rows(rows)

    async def deadlines(self) -> list[tuple[int, datetime]]:
        """Every armed deadline (id, due), for the timer loop to index at start."""
        rows = await self._fetchall("SELECT id, due FROM deadlines")
        return [(int(r[0]), from_us(r[1])) for r in rows]

    async def heartbeat_arrivals(self) -> dict[str, datetime]:
        """When each heartbeat last arrived (receiver/heartbeats/)."""
        rows = await self._fetchall("SELECT name, last_arrival FROM heartbeats")
        return {str(r[0]): from_us(r[1]) for r in rows}

    async def maintenance_windows(self) -> list[Window]:
        """The maintenance windows made through the API, oldest first."""
        rows = await self._fetchall(f"SELECT {WINDOW_COLUMNS} FROM maintenance ORDER BY id")
        return windows_from_rows(rows)

    async def open_incidents_by_group(self, group_keys: Sequence[str]) -> dict[str, int]:
        """The open incident of each of these groups that has one."""
        if not group_keys:
            return {}
        marks = ",".join("?" * len(group_keys))
        rows = await self._fetchall(
            f"SELECT group_key, id FROM incidents WHERE state != 'resolved'"
            f" AND group_key IN ({marks})", list(group_keys))
        return {str(r[0]): int(r[1]) for r in rows}

    async def open_versions(self, incident_ids: Sequence[int]) -> dict[int, int]:
        """Each of these incidents still open, at version 0 (see Transaction's
        after_commit_versioned): nothing but this process writes the file."""
        if not incident_ids:
            return {}
        marks = ",".join("?" * len(incident_ids))
        rows = await self._fetchall(
            f"SELECT id FROM incidents WHERE state != 'resolved' AND id IN ({marks})",
            list(incident_ids))
        return {int(r[0]): 0 for r in rows}

    async def due_notifications(
        self, now: datetime, limit: int = 100
    ) -> list[tuple[OutboxRow, Incident | None]]:
        """Notifications due for a (first or further) attempt, oldest first, each with its
        incident (None if it is gone), read in one writer job.

        Read through the writer, in commit order: a job that finishes a row either committed
        before this read (the row is absent) or commits after its answer was delivered. A read
        on the reader connection could see the row from a snapshot taken just before such a
        commit and answer only after it, and a caller that tracks rows in flight until their
        commit would take that row for a new one and send it twice.
        """

        async def job(tx: Transaction) -> list[tuple[OutboxRow, Incident | None]]:
            return await _with_incidents(tx, await tx.due_outbox(now, limit))

        return await self.write(job)

    async def lease_due_notifications(
        self, now: datetime, limit: int
    ) -> list[tuple[OutboxRow, Incident | None]]:
        """Like due_notifications, but each row returned is leased to the caller: no later
        call returns it until its result is written or it is released."""

        async def job(tx: Transaction) -> list[tuple[OutboxRow, Incident | None]]:
            return await _with_incidents(tx, await tx.lease_due_outbox(now, limit))

        return await self.write(job)

    async def lease_and_decide(
        self, now: datetime, limit: int,
        decide: Callable[
            [Transaction, list[tuple[OutboxRow, IncidentFacts | None]]], Awaitable[T]],
    ) -> T:
        """The lease and `decide` on its rows in one job (see store.base.Store), each row
        with its incident's IncidentBrief: within the writer's transaction a later read of
        the whole incident sees the same row."""

        async def job(tx: Transaction) -> T:
            assert isinstance(tx, SqliteTransaction)
            leased = await tx.lease_due_outbox(now, limit)
            briefs = await tx.incident_briefs([row.incident_id for row in leased])
            found: list[tuple[OutboxRow, IncidentFacts | None]] = [
                (row, briefs.get(row.incident_id)) for row in leased]
            return await decide(tx, found)

        return await self.write(job)

    async def next_outbox_at(self, after: datetime) -> datetime | None:
        """When the earliest notification due later than `after` is due, or None. Rows due by
        `after` are left out (the caller has them in hand already), and so are leased ones."""
        rows = await self._fetchall(
            "SELECT min(next_attempt_at) FROM outbox WHERE next_attempt_at > ?"
            " AND next_attempt_at < ?", (to_us(after), LEASED),
        )
        return None if not rows or rows[0][0] is None else from_us(rows[0][0])

    async def earlier_incidents(self, incident_id: int, limit: int = 20) -> list[Incident]:
        """Incidents before this one that held any of its alerts (a fingerprint), newest
        first: what a post-mortem lists as recurrence."""
        rows = await self._fetchall(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id IN ("
            " SELECT e.incident_id FROM alerts a JOIN alerts e ON e.fingerprint = a.fingerprint"
            " WHERE a.incident_id = ? AND e.incident_id < ?) ORDER BY id DESC LIMIT ?",
            (incident_id, incident_id, limit),
        )
        return [incident_from_row(r) for r in rows]

    async def history(
        self, since: datetime
    ) -> list[tuple[Incident, list[Alert], list[TimelineEvent]]]:
        """Every incident opened since `since`, with its alerts and its timeline less the
        delivery events (reports read steps, acknowledgements and resolutions, not deliveries),
        oldest first."""
        start = to_us(since)
        incidents = [incident_from_row(r) for r in await self._fetchall(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE opened_at >= ? ORDER BY id",
            (start,))]
        alerts: dict[int, list[Alert]] = {i.id: [] for i in incidents}
        for row in await self._fetchall(
            f"SELECT incident_id, {ALERT_COLUMNS} FROM alerts WHERE incident_id IN"
            " (SELECT id FROM incidents WHERE opened_at >= ?)", (start,)):
            alerts.setdefault(int(row[0]), []).append(alert_from_row(row[1:]))
        events: dict[int, list[TimelineEvent]] = {i.id: [] for i in incidents}
        for row in await self._fetchall(
            "SELECT incident_id, at, kind, actor, detail FROM timeline WHERE incident_id IN"
            " (SELECT id FROM incidents WHERE opened_at >= ?)"
            " AND kind NOT LIKE 'notification%' ORDER BY id", (start,)):
            events.setdefault(int(row[0]), []).extend(events_from_row(row[1:]))
        return [(i, alerts[i.id], events[i.id]) for i in incidents]

    async def oldest_due_outbox(self, now: datetime) -> datetime | None:
        """See Store.oldest_due_outbox: a leased row's leased_from is when it fell due. Two
        reads along the due index (the rows due, the leased ones), not a scan."""
        rows = await self._fetchall(
            "SELECT min(t) FROM (SELECT min(next_attempt_at) AS t FROM outbox"
            " WHERE next_attempt_at <= ? UNION ALL"
            " SELECT min(leased_from) FROM outbox WHERE next_attempt_at = ?)",
            (to_us(now), LEASED),
        )
        return None if not rows or rows[0][0] is None else from_us(rows[0][0])

    async def count_open(self) -> list[tuple[str, str, str, int]]:
        """(team, severity, state, count) of every open incident, for the gauge."""
        rows = await self._fetchall(
            "SELECT team, severity, state, count(*) FROM incidents"
            " WHERE state != 'resolved' AND group_key NOT LIKE 'drill:%'"
            " GROUP BY team, severity, state"
        )
        return [(r[0], r[1], r[2], int(r[3])) for r in rows]

    async def open_escalations(self) -> list[tuple[int, dict[str, Any]]]:
        """(incident id, escalation state) of every open incident that has one, oldest first.
        Decoded on a thread: with 100,000 open incidents, decoding held the loop for seconds
        (webhooks, timers and the listener's beat with it: store/postgres/replicas.HUNG)."""
        rows = await self._fetchall(OPEN_ESCALATIONS)
        return await asyncio.to_thread(escalations_from_rows, rows)

    async def open_firing_alerts(self) -> list[tuple[int, str, dict[str, str]]]:
        """(incident id, group key, labels) of each firing alert of every open incident,
        decoded on a thread (as open_escalations)."""
        return await asyncio.to_thread(firing_alerts_from_rows,
                                       await self._fetchall(OPEN_FIRING_ALERTS))

    async def open_contacts(self) -> list[tuple[int, str]]:
        """(incident id, deadline key) of each delayed contact waiting, triggered incidents."""
        return [(int(r[0]), str(r[1])) for r in await self._fetchall(OPEN_CONTACTS)]

    async def waiting_messages(self) -> Waiting:
        """The messages still to go that name their recipient, decoded on a thread (an
        outbox of a storm holds thousands of rows)."""
        return await asyncio.to_thread(waiting_from_rows, await self._fetchall(WAITING_MESSAGES))


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a damaged file at start: a bad page otherwise fails, forever, every write that
    touches it. quick_check reads every page of the file once (see the README for its cost)."""
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        if not _is_damage(exc):
            raise
        problems = [str(exc)]
    if problems != ["ok"]:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StoreCorrupt(
            f"the store {path} is damaged: {problems[0]}{more}; restore it from a backup"
            " (README: Backup and restore)"
        )


_DAMAGE = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _DAMAGE


def _begin_waiting(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute("PRAGMA busy_timeout=0")


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def _require_current(conn: sqlite3.Connection, path: Path) -> None:
    version = schema_version(conn)
    if version < len(MIGRATIONS):
        raise SchemaBehind(str(path), version, len(MIGRATIONS))


def migrate_file(path: Path, contact_index: ContactIndex | None = None) -> tuple[int, int]:
    """`ackd migrate`: apply the pending migrations to the file (created if missing, 0600, in
    a 0700 directory); (before, after). SQLite's own locks keep it apart from a running ackd."""
    private_dir(path.parent)
    _private_files(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=10000")
        return migrate(conn, contact_index or _no_contact)
    finally:
        conn.close()


def migrate(conn: sqlite3.Connection, contact_index: ContactIndex) -> tuple[int, int]:
    """Apply every migration not applied yet, each in its own transaction; (before, after)."""
    version = schema_version(conn)
    conn.create_function("ackd_contact_index", 3, contact_index, deterministic=True)
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        log.info("applying schema migration %d", number)
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")
    if 0 < version < URLS_REMOVED:
        # The outbox held Apprise URLs (credentials) before migration 4: the rows no longer
        # do, but deleted rows' bytes stay in free pages and old WAL frames. Rebuild the file
        # once and empty the WAL.
        log.info("rewriting the store without the notification URLs it held")
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return version, max(version, len(MIGRATIONS))


URLS_REMOVED = 4  # the migration after which the outbox holds no URL


def _end_leases(conn: sqlite3.Connection) -> None:
    """Rows leased by a process that stopped before their result was written are due again
    at the time they had: a lease must not hide a page after a crash."""
    ended = conn.execute(
        "UPDATE outbox SET next_attempt_at = leased_from, leased_from = NULL"
        " WHERE leased_from IS NOT NULL"
    ).rowcount
    if ended:
        log.warning("%d notification(s) were in flight when ackd stopped: due again", ended)


def _no_contact(recipient: str, kind: str, url: str) -> int | None:
    return None


def private_dir(path: Path) -> None:
    """Create `path` (and its parents) readable by this user only. A directory that exists
    is left as it is, with a warning if others can read it: it may be shared on purpose."""
    if path.is_dir():
        if path.stat().st_mode & 0o077:
            log.warning("data directory %s is accessible to other users (mode %o); ackd"
                        " creates it %o", path, path.stat().st_mode & 0o777, DIR_MODE)
        return
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)  # parents: the usual mode
    os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask; make it exact


def _private_files(db: Path) -> None:
    """The database file exists with mode 0600 before SQLite opens it: SQLite creates the
    WAL and shared-memory files with the database's own mode. Files of an older ackd are
    narrowed to that mode too."""
    fd = os.open(db, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(fd)
    for suffix in _SIDE_FILES:
        side = db.with_name(db.name + suffix)
        if side.exists() and side.stat().st_mode & 0o777 != FILE_MODE:
            os.chmod(side, FILE_MODE)


def _filter_sql(where: IncidentFilter) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if where.state is not None:
        clauses.append("state = ?")
        params.append(where.state.value)
    elif where.open_only:
        clauses.append("state != 'resolved'")
    for column, value in (("team", where.team), ("severity", where.severity)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.before_id is not None:
        clauses.append("id < ?")
        params.append(where.before_id)
    return clauses, params


__all__ = ["SqliteStore", "private_dir"]


async def _with_incidents(
    tx: Transaction, rows: list[OutboxRow]
) -> list[tuple[OutboxRow, Incident | None]]:
    """Each outbox row with its incident (None if it is gone), the incidents read at once."""
    incidents = await tx.find_incidents([row.incident_id for row in rows])
    return [(row, incidents.get(row.incident_id)) for row in rows]


if TYPE_CHECKING:  # mypy checks here that the SQLite store implements the interface
    _store: type[Store] = SqliteStore
    _transaction: type[Transaction] = SqliteTransaction
