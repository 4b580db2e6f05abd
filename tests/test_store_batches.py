"""A write batch's jobs share one transaction; a job that fails, fails alone.

The SQLite store runs a batch's jobs without savepoints (each would copy every page its job
changes) and, when one fails with its own error, rolls the transaction back and runs the batch
again without it, each job in a savepoint then. The PostgreSQL store runs them without
savepoints too (a SAVEPOINT and its RELEASE are a round trip a job) and, when any fails (its
own error, a race lost to another replica, its held writes refused), rolls back and runs the
whole batch again each job in a savepoint, as it ran every batch before: the failing job is
told apart there. Whatever the store does inside, what its
callers see is the interface's promise, checked on both stores: the others commit once (their
rows once, their after-commit effects once), the failing job gets the error it raised and
leaves nothing behind, and trouble with the store itself fails the batch with
StoreUnavailable. On a real SQLite file (and a real PostgreSQL database), nothing mocked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.errors import StoreUnavailable
from receiver.core.model import Alert, AlertStatus, EventKind, IncidentState, TimelineEvent
from receiver.ingest import grouping
from receiver.ingest.grouping import AlertOutcome
from receiver.store import IncidentFilter, SqliteStore, Transaction
from receiver.store.base import Store
from receiver.store.postgres.store import RETRIES, PostgresStore
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import write_config
from tests.pgcluster import record_writer_statements
from tests.test_api import LABELS, Api, start_api
from tests.test_cadence import SEVERITIES as CADENCE_SEVERITIES
from tests.test_store import NOW, corrupt_page, filled, new_incident
from tests.test_store import store as store  # both stores, each test on each

UNIQUE = (sqlite3.IntegrityError, asyncpg.UniqueViolationError)
Job = Callable[[Transaction], Awaitable[object]]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "data" / "ackd.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def pg_store(pg_dsn: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(pg_dsn)
    await s.open()
    yield s
    await s.close()


CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@pytest.fixture
def pg_control(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The transaction control statements PostgreSQL writer tasks send, in order (other
    tasks' statements, reads and the replica watch, are not theirs)."""
    sent: list[str] = []
    execute = asyncpg.Connection.execute

    async def recording(conn: asyncpg.Connection, query: str, *args: object,
                        **kwargs: object) -> str:
        task = asyncio.current_task()
        if (task is not None and task.get_name().startswith("ackd-pg-writer")
                and query.startswith(CONTROL)):
            sent.append(query)
        return await execute(conn, query, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncpg.Connection, "execute", recording)
    return sent


class Batch:
    """Jobs written at once (one batch: nothing runs between their `write` calls), each
    counting its runs and noting, after its commit, that it committed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs: list[int] = []
        self.committed: list[int] = []  # each job's after-commit effect, in commit order
        self.sizes: list[int] = []  # the jobs of each commit
        store.stats.on_commit.append(lambda _, jobs: self.sizes.append(jobs))

    def job(self, body: Callable[[Transaction, int], Awaitable[object]]) -> Job:
        n = len(self.runs)
        self.runs.append(0)

        async def run(tx: Transaction) -> object:
            self.runs[n] += 1
            result = await body(tx, n)
            tx.after_commit(lambda: self.committed.append(n))
            return result

        return run

    async def write(self, jobs: list[Job]) -> list[object]:
        return await asyncio.gather(*(self.store.write(j) for j in jobs),
                                    return_exceptions=True)


async def opens(tx: Transaction, n: int) -> int:
    """A job that opens an incident of its own group, with its opening on the timeline."""
    number = await tx.insert_incident(new_incident(f"g{n}"), None)
    await tx.append(number, [TimelineEvent(NOW, EventKind.OPENED, f"job{n}")])
    return number


async def groups_and_events(store: Store) -> dict[str, int]:
    """Each incident's group key with the number of events on its timeline."""
    found = await store.incidents(IncidentFilter(limit=1000))
    return {i.group_key: len(await store.timeline(i.id)) for i in found}


async def test_a_batch_whose_jobs_all_succeed_runs_them_without_savepoints(
    sqlite_store: SqliteStore,
) -> None:
    """One BEGIN, the jobs, one COMMIT: no savepoint copies the pages each job changes."""
    batch = Batch(sqlite_store)
    statements: list[str] = []
    assert sqlite_store._writer is not None
    sqlite_store._writer.set_trace_callback(statements.append)
    try:
        results = await batch.write([batch.job(opens) for _ in range(5)])
    finally:
        sqlite_store._writer.set_trace_callback(None)
    assert all(isinstance(r, int) for r in results), results
    assert batch.sizes == [5]
    assert batch.runs == [1] * 5
    control = [s for s in statements
               if s.split(" ")[0] in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")]
    assert control == ["BEGIN IMMEDIATE", "COMMIT"]


async def test_a_postgres_batch_whose_jobs_all_succeed_sends_no_savepoint(
    pg_store: PostgresStore, pg_control: list[str],
) -> None:
    """BEGIN, the jobs, COMMIT: no SAVEPOINT, and no RELEASE of it, a round trip each job."""
    batch = Batch(pg_store)
    results = await batch.write([batch.job(opens) for _ in range(5)])
    assert all(isinstance(r, int) for r in results), results
    assert batch.sizes == [5]
    assert batch.runs == [1] * 5
    assert sorted(batch.committed) == [0, 1, 2, 3, 4]
    assert pg_control == ["BEGIN", "COMMIT"]
    assert await groups_and_events(pg_store) == {f"g{n}": 1 for n in range(5)}


async def test_a_job_failing_in_the_middle_of_a_batch_fails_alone_and_the_others_commit_once(
    store: Store,
) -> None:
    """The failing job changed a row the others read, and raised: every other job reads the
    row as committed (on SQLite they run again in a new transaction, which remembers nothing
    of the run before), writes its rows once and sees its after-commit effect run once; the
    failing one gets the very error it raised, and nothing it wrote stays."""
    shared = await store.write(lambda tx: tx.insert_incident(new_incident("shared"), None))
    batch = Batch(store)
    error = RuntimeError("this job fails after writing")

    async def reads_then_opens(tx: Transaction, n: int) -> tuple[int, str]:
        summary = (await tx.incident(shared)).summary
        return await opens(tx, n), summary

    async def fails(tx: Transaction, n: int) -> None:
        await tx.update_incident(shared, NOW, summary="changed by a job that failed")
        assert (await tx.incident(shared)).summary == "changed by a job that failed"
        await opens(tx, n)
        raise error

    jobs = [batch.job(reads_then_opens) for _ in range(3)]
    jobs += [batch.job(fails)] + [batch.job(reads_then_opens) for _ in range(3)]
    commits = store.stats.commits
    results = await batch.write(jobs)
    assert results[3] is error
    assert [r[1] for r in results if isinstance(r, tuple)] == ["s"] * 6
    assert batch.sizes == [7]
    assert store.stats.commits == commits + 1
    assert sorted(batch.committed) == [0, 1, 2, 4, 5, 6]  # once each, the failed one never
    assert await groups_and_events(store) == {
        "shared": 0, "g0": 1, "g1": 1, "g2": 1, "g4": 1, "g5": 1, "g6": 1}
    assert (await store.incident(shared)).summary == "s"
    # The jobs before the failing one ran twice (the second time without it, each in a
    # savepoint on PostgreSQL), the failing one and the rest once: the batch ran again once.
    assert batch.runs == [2, 2, 2, 1, 1, 1, 1]


RUN_AGAIN = "BEGIN; SAVEPOINT job"
NEXT = "RELEASE SAVEPOINT job; SAVEPOINT job"


async def test_a_postgres_batch_with_a_failing_job_runs_again_each_job_in_a_savepoint(
    pg_store: PostgresStore, pg_control: list[str],
) -> None:
    """The first run, without savepoints, is rolled back at the failure; the batch runs again
    from its first job without the failing one (answered its error), each job in a
    savepoint, and commits once. The next batch, with no failure, runs without savepoints
    again."""
    batch = Batch(pg_store)
    error = RuntimeError("this job fails")

    async def fails(tx: Transaction, n: int) -> None:
        await opens(tx, n)
        raise error

    results = await batch.write([batch.job(opens), batch.job(opens), batch.job(fails),
                                 batch.job(opens)])
    assert results[2] is error
    assert batch.runs == [2, 2, 1, 1]
    assert sorted(batch.committed) == [0, 1, 3]
    assert pg_control == ["BEGIN", "ROLLBACK", RUN_AGAIN, NEXT, NEXT, "COMMIT"]
    assert await groups_and_events(pg_store) == {"g0": 1, "g1": 1, "g3": 1}
    pg_control.clear()
    later = Batch(pg_store)

    async def opens_another(tx: Transaction, n: int) -> int:
        return await tx.insert_incident(new_incident(f"later{n}"), None)

    assert all(isinstance(r, int) for r in await later.write(
        [later.job(opens_another) for _ in range(3)]))
    assert pg_control == ["BEGIN", "COMMIT"]


async def test_a_postgres_job_whose_held_writes_are_refused_fails_alone(
    pg_store: PostgresStore, pg_control: list[str],
) -> None:
    """A job's timeline events are held and sent at its end (store/postgres/held.py): here
    they name an incident that does not exist, and the foreign key refuses them there, after
    the job's own code returned, with the next job's first statement (a batch without
    savepoints sends a job's held writes with the next statement), so the first run cannot
    tell whose they were: the batch runs again with every job, each in its savepoint, where
    the events go at their job's end. That is the job's failure, as when the events went
    inside its savepoint: it fails alone with the database's error, the others commit once."""
    batch = Batch(pg_store)

    async def appends_to_nothing(tx: Transaction, n: int) -> None:
        await opens(tx, n)
        await tx.append(10**9, [TimelineEvent(NOW, EventKind.NOTE, "ana", {"text": "?"})])

    results = await batch.write([batch.job(opens), batch.job(appends_to_nothing),
                                 batch.job(opens)])
    assert isinstance(results[1], asyncpg.ForeignKeyViolationError), results[1]
    assert all(isinstance(r, int) for r in (results[0], results[2])), results
    assert batch.runs == [2, 2, 2]
    assert sorted(batch.committed) == [0, 2]
    assert pg_control == ["BEGIN", "ROLLBACK", RUN_AGAIN, NEXT,
                          "ROLLBACK TO SAVEPOINT job", NEXT, "COMMIT"]
    assert await groups_and_events(pg_store) == {"g0": 1, "g2": 1}


async def test_a_postgres_jobs_held_writes_go_with_the_next_jobs_read_of_another_group(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without savepoints a job's held writes are not sent at its end: the next job's read of
    its group carries them when they touch nothing that read reads (another group's incident:
    the read sees the snapshot before them), one round trip for both. A read of the group
    whose incident they change goes after them, and sees them."""
    sent = record_writer_statements(monkeypatch)
    opened: list[int] = []

    async def opens_a(tx: Transaction) -> int:
        assert await tx.open_group("a") is None
        opened.append(await tx.insert_incident(new_incident("a"), None))
        await tx.append(opened[0], [TimelineEvent(NOW, EventKind.NOTE, "job0", {})])
        return opened[0]

    async def opens_b_and_resolves_a(tx: Transaction) -> int:
        assert await tx.open_group("b") is None  # carries job0's event
        number = await tx.insert_incident(new_incident("b"), None)
        await tx.update_incident(opened[0], NOW, state=IncidentState.RESOLVED,
                                 resolved_at=NOW)
        return number

    async def reads_a(tx: Transaction) -> object:
        return await tx.open_group("a")  # after a's resolution, which it must see

    results = await asyncio.gather(*(pg_store.write(j) for j in (
        opens_a, opens_b_and_resolves_a, reads_a)))
    assert results[2] is None  # a is resolved: no open incident
    reads = [q for q in sent if "FROM known k LEFT JOIN open o" in q]
    assert len(reads) == 3
    assert reads[0].startswith("WITH open AS")  # nothing held
    assert reads[1].startswith("WITH held_events AS")  # job0's event, carried
    assert reads[2].startswith("WITH open AS")  # a's resolution went before it
    assert any(q.startswith("WITH held_update0 AS") and q.endswith("SELECT") for q in sent)
    assert [e.actor for e in await pg_store.timeline(results[0])] == ["job0"]
    assert (await pg_store.incident(results[0])).state is IncidentState.RESOLVED


async def test_a_race_lost_to_another_replica_in_a_batch_without_savepoints(
    pg_store: PostgresStore, pg_dsn: str, pg_control: list[str],
) -> None:
    """A job of a batch reads its group, finds no open incident, and before it inserts one
    another replica commits the group's incident: the unique index refuses the insert. As
    when the job ran in its savepoint, it runs again and finds the other's incident; its
    batch-mates commit once, each after-commit effect runs once, nothing of the first run
    stays, and one incident is open for the group."""
    other = PostgresStore(pg_dsn, pool_size=2)
    await other.open()
    for task in other._writers:
        task.set_name("the other replica's writer")  # its statements are not recorded
    try:
        batch = Batch(pg_store)
        theirs: list[int] = []

        async def ingests(tx: Transaction, n: int) -> int:
            found = await tx.open_group("raced")
            if found is not None:
                return found.incident_id
            await tx.append(await opens(tx, 100), [])  # written, then rolled back
            if not theirs:  # the other replica opens the group now, and commits
                theirs.append(await other.write(
                    lambda t: t.insert_incident(new_incident("raced"), None)))
            return await tx.insert_incident(new_incident("raced"), None)

        results = await batch.write([batch.job(opens), batch.job(ingests), batch.job(opens)])
        assert results == [results[0], theirs[0], results[2]], results
        assert batch.runs == [2, 2, 1]
        assert sorted(batch.committed) == [0, 1, 2]
        assert batch.sizes == [3]
        assert pg_control == ["BEGIN", "ROLLBACK", RUN_AGAIN, NEXT, NEXT, "COMMIT"]
        assert await groups_and_events(pg_store) == {"g0": 1, "raced": 0, "g2": 1}
        assert await pg_store.open_incidents_by_group(["raced"]) == {"raced": theirs[0]}
    finally:
        await other.close()


async def test_a_deadlock_between_two_replicas_batches_runs_the_losers_jobs_one_by_one(
    pg_dsn: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Two replicas' batches lock two incidents in the other order (a group posted to every
    replica at once): each batch's first job locks one and waits until the other batch's
    first job has locked the other, then each second job asks for the lock the other holds.
    PostgreSQL breaks the cycle by failing one batch's statement with a deadlock; that batch
    is given up whole (its locks released) and its jobs run again one transaction each,
    while the other batch commits as it ran. Every job succeeds, its writes committed once,
    its after-commit effect once: nothing answered lost, nothing written twice."""
    replicas = [PostgresStore(pg_dsn, pool_size=2) for _ in range(2)]  # one writer task each
    for replica in replicas:
        await replica.open()
    try:
        x, y = [await replicas[0].write(lambda tx, k=k: tx.insert_incident(new_incident(k), None))
                for k in ("x", "y")]
        locked = {"a": asyncio.Event(), "b": asyncio.Event()}
        batches = {"a": Batch(replicas[0]), "b": Batch(replicas[1])}

        def locks(name: str, first: int, then: int) -> list[Job]:
            other = "b" if name == "a" else "a"

            async def locks_first(tx: Transaction, n: int) -> str:
                await tx.incident(first)  # read FOR NO KEY UPDATE: locked until the commit
                await tx.append(first, [TimelineEvent(NOW, EventKind.NOTE, f"{name}0", {})])
                if batches[name].runs[n] == 1:  # the first run: the other locks its own
                    locked[name].set()
                    await asyncio.wait_for(locked[other].wait(), 10)
                return f"{name}0"

            async def locks_then(tx: Transaction, n: int) -> str:
                await tx.incident(then)  # held by the other batch: the cycle closes here
                await tx.append(then, [TimelineEvent(NOW, EventKind.NOTE, f"{name}1", {})])
                return f"{name}1"

            batch = batches[name]
            return [batch.job(locks_first), batch.job(locks_then)]

        caplog.set_level(logging.INFO, logger="receiver.store.postgres.store")
        results = await asyncio.gather(
            batches["a"].write(locks("a", x, y)), batches["b"].write(locks("b", y, x)))
        assert results == [["a0", "a1"], ["b0", "b1"]], results
        cycles = [r for r in caplog.records if "met a lock cycle" in r.getMessage()]
        assert len(cycles) == 1, cycles
        runs = sorted((batches[n].runs, batches[n].sizes) for n in ("a", "b"))
        # The winner ran once, as one batch; the loser's batch ran once and was given up,
        # then each of its jobs ran again alone.
        assert runs == [([1, 1], [2]), ([2, 2], [1, 1])], runs
        for name in ("a", "b"):
            assert sorted(batches[name].committed) == [0, 1]
        notes = {incident: sorted(e.actor for e in await replicas[1].timeline(incident))
                 for incident in (x, y)}
        assert notes == {x: ["a0", "b1"], y: ["a1", "b0"]}
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_second_open_incident_of_one_group_fails_that_job_alone(store: Store) -> None:
    """Two jobs of one batch open an incident for the same group: the first commits, the
    second fails with the unique index's error (as when it was rolled back to its savepoint),
    and the jobs around them commit once."""
    batch = Batch(store)

    async def opens_same(tx: Transaction, n: int) -> int:
        return await tx.insert_incident(new_incident("same"), None)

    jobs = [batch.job(opens), batch.job(opens_same), batch.job(opens),
            batch.job(opens_same), batch.job(opens)]
    results = await batch.write(jobs)
    assert isinstance(results[3], UNIQUE), results[3]
    assert all(isinstance(r, int) for r in results[:3] + results[4:]), results
    assert sorted(batch.committed) == [0, 1, 2, 4]
    assert await groups_and_events(store) == {"g0": 1, "same": 0, "g2": 1, "g4": 1}
    found = {i.group_key: i.id for i in await store.incidents(IncidentFilter(limit=10))}
    assert found["same"] == results[1]


async def test_several_failing_jobs_each_fail_alone_with_their_own_error(store: Store) -> None:
    batch = Batch(store)
    errors = {1: RuntimeError("first"), 4: ValueError("second"), 6: KeyError("third")}

    async def fails(tx: Transaction, n: int) -> None:
        await opens(tx, n)
        raise errors[n]

    async def opens_g0_again(tx: Transaction, n: int) -> None:
        await tx.insert_incident(new_incident("g0"), None)

    jobs = [batch.job(fails if n in errors else opens) for n in range(8)]
    jobs.append(batch.job(opens_g0_again))
    commits = store.stats.commits
    results = await batch.write(jobs)
    for n, error in errors.items():
        assert results[n] is error
    assert isinstance(results[8], UNIQUE), results[8]
    assert all(isinstance(results[n], int) for n in (0, 2, 3, 5, 7)), results
    assert store.stats.commits == commits + 1
    assert sorted(batch.committed) == [0, 2, 3, 5, 7]
    assert await groups_and_events(store) == {f"g{n}": 1 for n in (0, 2, 3, 5, 7)}
    # Run again once without the first failing job, savepoints then; on PostgreSQL the
    # unique violation is taken there for a race lost to another replica and run again in
    # its savepoint, RETRIES times in all.
    assert batch.runs == [2, 1, 1, 1, 1, 1, 1, 1,
                          1 if isinstance(store, SqliteStore) else RETRIES]


async def test_a_batch_whose_every_job_fails_leaves_nothing(store: Store) -> None:
    batch = Batch(store)
    errors = [RuntimeError(str(n)) for n in range(3)]

    async def fails(tx: Transaction, n: int) -> None:
        await opens(tx, n)
        raise errors[n]

    results = await batch.write([batch.job(fails) for _ in errors])
    assert results == errors
    assert batch.runs == [1, 1, 1]  # each failure is its job's own: none runs twice
    assert batch.committed == []
    assert await groups_and_events(store) == {}


async def test_a_batchs_one_job_failing_with_its_own_error_runs_once_and_commits_nothing(
    store: Store,
) -> None:
    """Left out of the run again, a batch's one failing job leaves nothing to run: it is
    answered its error with no second transaction and no commit."""
    batch = Batch(store)
    error = RuntimeError("alone")

    async def fails(tx: Transaction, n: int) -> None:
        await opens(tx, n)
        raise error

    commits = store.stats.commits
    assert await batch.write([batch.job(fails)]) == [error]
    assert batch.runs == [1]
    assert store.stats.commits == commits
    assert batch.committed == []
    assert await groups_and_events(store) == {}


async def test_the_store_failing_while_the_batch_runs_again_fails_every_job(
    sqlite_store: SqliteStore,
) -> None:
    """A job fails, and while the batch runs again without it the file cannot grow (a full
    disk, as SQLite's max_page_count makes it): the whole batch fails with StoreUnavailable,
    the failed job too (as when it was rolled back to its savepoint and the batch failed
    later), nothing commits, and the store works again once the disk has room."""
    conn = sqlite_store._writer
    assert conn is not None
    batch = Batch(sqlite_store)

    async def fills_the_disk_then_fails(tx: Transaction, n: int) -> None:
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        conn.execute(f"PRAGMA max_page_count={pages}")
        raise RuntimeError("this job fails")

    async def grows(tx: Transaction, n: int) -> None:
        for k in range(200):
            await tx.insert_incident(replace(new_incident(f"big{k}"), summary="s" * 500), None)

    commits, failures = sqlite_store.stats.commits, sqlite_store.stats.failures
    try:
        results = await batch.write([batch.job(opens), batch.job(fills_the_disk_then_fails),
                                     batch.job(grows)])
    finally:
        conn.execute("PRAGMA max_page_count=4294967294")
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert "full" in str(results[0])
    assert batch.runs == [2, 1, 1]  # the failure came in the batch's second run
    assert sqlite_store.stats.commits == commits
    assert sqlite_store.stats.failures == failures + 1
    assert batch.committed == []
    assert await groups_and_events(sqlite_store) == {}
    assert isinstance(await sqlite_store.write(lambda tx: opens(tx, 9)), int)


async def test_a_damaged_page_after_a_failed_job_keeps_the_unstarted_jobs_apart(
    tmp_path: Path,
) -> None:
    """A job fails and the batch runs again; then a job reads a damaged page. As with a
    savepoint per job: the jobs that ran fail with StoreUnavailable (the failed one too),
    and the one that had not started yet runs in a transaction of its own and commits."""
    db = tmp_path / "ackd.db"
    await filled(db, 200)
    corrupt_page(db)
    store = SqliteStore(db, check_integrity=False)
    await store.open()
    try:
        batch = Batch(store)

        async def fails(tx: Transaction, n: int) -> None:
            raise RuntimeError("this job fails")

        async def reads_every_incident(tx: Transaction, n: int) -> None:
            for number in range(1, 201):
                await tx.find_incident(number)

        results = await batch.write([batch.job(opens), batch.job(fails),
                                     batch.job(reads_every_incident), batch.job(opens)])
        assert [type(r) for r in results[:3]] == [StoreUnavailable] * 3, results
        assert "malformed" in str(results[2])
        assert isinstance(results[3], int), results[3]
        assert batch.committed == [3]
        assert (await store.incident(results[3])).group_key == "g3"
        assert batch.runs == [2, 1, 1, 1]
    finally:
        await store.close()


async def test_webhooks_opening_one_group_in_a_batch_with_a_failing_job(
    tmp_path: Path,
) -> None:
    """Two webhooks of one new group and a job that opens that group's incident too, in one
    batch. As with a savepoint per job: the first webhook opens the incident, the second adds
    its alert to it (it sees the first's incident in the same transaction), and the third
    job fails with the unique index's error. The webhooks ran again on SQLite: still one
    incident, counted once, its first step paged once, and its resends answered from memory."""
    api = await start_api(tmp_path)
    daemon = api.daemon
    try:
        # The start's own writes (the dispatcher's first pass, the handoff plans) done first:
        # one still running when the three are written commits as a batch before theirs.
        await api.settle()
        starts = api.clock.now() - timedelta(seconds=30)
        first = Alert(fingerprint_of(LABELS), AlertStatus.FIRING, LABELS, {}, starts, None)
        other = {**LABELS, "instance": "b"}
        second = Alert(fingerprint_of(other), AlertStatus.FIRING, other, {}, starts, None)
        [key] = grouping.partition(daemon.config.route, [first])
        bodies = [build_webhook([first]), build_webhook([first, second])]
        sizes: list[int] = []
        daemon.store.stats.on_commit.append(lambda _, jobs: sizes.append(jobs))

        async def opens_the_group(tx: Transaction) -> int:
            return await tx.insert_incident(replace(new_incident(key), team="payments"), None)

        one, two, third = await asyncio.gather(
            daemon.incidents.ingest_body(json.dumps(bodies[0]).encode()),
            daemon.incidents.ingest_body(json.dumps(bodies[1]).encode()),
            daemon.store.write(opens_the_group), return_exceptions=True)
        assert sizes[:1] == [3]
        assert isinstance(third, UNIQUE), third
        assert not isinstance(one, BaseException), one
        assert not isinstance(two, BaseException), two
        assert [i.id for i in one.opened] == [one.groups[key]]
        assert two.opened == []
        assert two.groups == one.groups
        assert two.outcomes == {AlertOutcome.DUPLICATE: 1, AlertOutcome.ADDED: 1}
        number = one.groups[key]
        found = await daemon.store.incidents(IncidentFilter(limit=10))
        assert [i.id for i in found] == [number]
        assert len(await daemon.store.alerts(number)) == 2
        sample = daemon.metrics.registry.get_sample_value
        assert sample("ackd_incidents_opened_total",
                      {"team": "payments", "severity": "SEV1"}) == 1.0
        assert sample("ackd_alerts_processed_total", {"outcome": "added"}) == 2.0
        # The timeline once the page is sent: read before, it held the page's record or not,
        # as the dispatcher (woken by the commit) and the reads happened to interleave.
        await api.settle()
        assert api.paged() == ["ana"]  # the first step, once
        kinds = [e.kind for e in await daemon.store.timeline(number)]
        assert sorted(kinds) == sorted([EventKind.OPENED, EventKind.STEP_FIRED,
                                        EventKind.ALERT_ADDED, EventKind.ALERT_ADDED,
                                        EventKind.NOTIFICATION_SENT])
        # Committed once into the memo: the resend is answered without a transaction.
        commits = daemon.store.stats.commits
        again = await daemon.incidents.ingest_body(json.dumps(bodies[1]).encode())
        assert again.outcomes == {AlertOutcome.DUPLICATE: 2}
        assert daemon.store.stats.commits == commits
    finally:
        await daemon.stop()



async def test_a_deadline_fired_again_with_its_batch_logs_its_reminder_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The status cadence runs out in a batch whose other job fails: the deadline's job runs
    again (on SQLite), and its reminder is on the timeline and in the log once, the log line
    written after the commit."""
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9", step_delay="1h",
                        extra=CADENCE_SEVERITIES)
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    clock, notifier = FakeClock(), RecordingNotifier()
    daemon = Daemon(loaded, clock=clock, notifier=notifier)
    await daemon.start()
    try:
        api = Api(daemon, notifier, clock)
        number = await api.fire()  # SEV1: a status update due every 15 minutes
        await api.settle()
        await daemon.responder.scheduler.stop()  # the deadline is fired by this test
        await api.clock.jump(timedelta(minutes=15))
        now = api.clock.now()
        due = [i for i, at in await daemon.store.deadlines() if at <= now]

        async def fails(tx: Transaction) -> None:
            await opens(tx, 0)
            raise RuntimeError("this job fails")

        caplog.set_level(logging.INFO, logger="receiver.incidents.desk")
        fired, failed = await asyncio.gather(
            daemon.responder.fire(due), daemon.store.write(fails), return_exceptions=True)
        assert fired is None
        assert isinstance(failed, RuntimeError)
        overdue = [r for r in caplog.records if "status update overdue" in r.getMessage()]
        assert [r.getMessage() for r in overdue] == [
            f"incident #{number}: status update overdue, reminded nobody"]
        kinds = [e.kind for e in await daemon.store.timeline(number)]
        assert kinds.count(EventKind.STATUS_DUE) == 1
    finally:
        await daemon.stop()
