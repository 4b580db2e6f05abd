"""Several replicas on one PostgreSQL database, each a PostgresStore of its own: a group taken
by two at the same moment opens one incident (the unique index decides), a due deadline and
an outbox row go to exactly one, what one commits reaches the others by NOTIFY, and noise
control's history of a channel is gated by one replica at a time."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from receiver.alertmanager.matchers import parse_matcher
from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.errors import StoreUnavailable
from receiver.core.model import (
    STALE_ACTOR,
    Alert,
    AlertStatus,
    EventKind,
    IncidentState,
    MessageReason,
    TimelineEvent,
)
from receiver.core.tasks import cancel
from receiver.delivery.noise import ChannelHistory
from receiver.incidents.service import Incidents
from receiver.ingest.grouping import AlertOutcome
from receiver.maintenance.domain import Window
from receiver.store.base import Transaction
from receiver.store.codec import to_us
from receiver.store.postgres import replicas as replicas_module
from receiver.store.postgres.outbox import LEASE
from receiver.store.postgres.replicas import GRACE, LISTENER_NAME, OVERDUE, WATCH, claim
from receiver.store.postgres.store import PostgresStore
from receiver.store.postgres.transaction import PostgresTransaction
from receiver.store.records import (
    ChannelRecord,
    IncidentFilter,
    NewIncident,
    OutboxMessage,
    Shared,
)
from receiver.telemetry.metrics import Metrics
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import wait_until, write_config
from tests.pgcluster import record_writer_statements, start_cluster
from tests.test_api import Api

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
KEY = "{}:{}"  # the one group of tests/config/good/postgres.yaml's route (no group_by)
PAGE = OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                     reason=MessageReason.TRIGGERED, step=0)


def new_incident(key: str) -> NewIncident:
    return NewIncident(
        group_key=key, route_id="{}", team="payments", severity="SEV1", policy="standard",
        group_labels={"alertname": "X"}, opened_at=NOW, external_url="", summary="s",
    )


async def enqueued(
    tx: Transaction, incident_id: int, messages: list[OutboxMessage], at: datetime
) -> list[int]:
    """Enqueue, and the ids of the rows it made: enqueue answers none (the rows go with the
    batch's next statement, here the read that follows, which sees them)."""
    assert isinstance(tx, PostgresTransaction)
    query = "SELECT id FROM outbox WHERE incident_id = $1 ORDER BY id"
    before = {int(r[0]) for r in await tx._all(query, incident_id)}
    await tx.enqueue(incident_id, messages, at)
    return [int(r[0]) for r in await tx._all(query, incident_id) if int(r[0]) not in before]


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a replica's sweep (every WATCH seconds) to make `condition` true."""
    while True:
        if condition():
            return
        await asyncio.sleep(WATCH / 2)


@pytest.fixture
async def replicas(pg_dsn: str) -> AsyncIterator[list[PostgresStore]]:
    stores = [PostgresStore(pg_dsn, pool_size=4) for _ in range(3)]
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()


# A key of 3 KB of random hex too (incompressible): more than a B-tree entry holds, so the
# unique index holds an MD5 of it (store/postgres/schema.py's migration 14), and still decides.
@pytest.mark.parametrize("key", ["g", "g:" + secrets.token_hex(1500)], ids=["short", "3KB"])
async def test_the_same_group_at_the_same_moment_opens_one_incident(
    replicas: list[PostgresStore], key: str,
) -> None:
    """Every replica reads the group before any inserts: each finds no open incident. The
    unique index lets one insert; the others' jobs run again and find its incident."""
    read = asyncio.Barrier(len(replicas))
    runs = [0] * len(replicas)

    def ingest(n: int):  # type: ignore[no-untyped-def]
        async def job(tx: Transaction) -> int:
            runs[n] += 1
            found = await tx.open_group(key)
            if runs[n] == 1:
                await read.wait()
            if found is not None:
                return found.incident_id
            return await tx.insert_incident(new_incident(key), None)
        return job

    ids = await asyncio.gather(*(s.write(ingest(n)) for n, s in enumerate(replicas)))
    assert len(set(ids)) == 1
    assert sorted(runs) == [1, 2, 2]  # the winner once, each loser once more
    found = await replicas[2].incidents(IncidentFilter(open_only=True))
    assert [incident.id for incident in found] == ids[:1]


async def test_a_webhook_whose_job_runs_again_after_a_lost_race_counts_once(pg_dsn: str) -> None:
    """Another replica opens the webhook's group between this one's read of it and its insert:
    the unique index fails the insert, and the job runs again and adds the alert to the
    other's incident. The webhook's answer and ackd_alerts_processed count the run that
    committed, not both."""
    config = config_module.load(ROOT / "tests/config/good/postgres.yaml")
    stores = [PostgresStore(pg_dsn, pool_size=2) for _ in range(2)]
    for store in stores:
        await store.open()
    watcher = await asyncpg.connect(pg_dsn)
    try:
        metrics = Metrics()
        incidents = Incidents(stores[0], FakeClock(NOW), metrics, config, shared=True)
        inserted, release = asyncio.Event(), asyncio.Event()

        async def open_first(tx: Transaction) -> int:
            number = await tx.insert_incident(new_incident(KEY), None)
            inserted.set()
            await release.wait()  # uncommitted until the webhook's insert waits for it
            return number

        other = asyncio.create_task(stores[1].write(open_first))
        await inserted.wait()
        alert = Alert(fingerprint_of({"alertname": "Disk"}), AlertStatus.FIRING,
                      {"alertname": "Disk"}, {}, NOW - timedelta(minutes=5), None)
        ingest = asyncio.create_task(
            incidents.ingest_body(json.dumps(build_webhook([alert])).encode()))

        async def insert_waits() -> bool:
            return bool(await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"))

        await wait_until(insert_waits, 10, "the webhook's insert to wait for the other's")
        release.set()
        number = await other
        result = await ingest
        assert result.groups == {KEY: number}
        assert result.opened == []
        assert result.outcomes == {AlertOutcome.ADDED: 1}
        processed = metrics.registry.get_sample_value(
            "ackd_alerts_processed_total", {"outcome": "added"})
        assert processed == 1.0
    finally:
        await watcher.close()
        for store in stores:
            await store.close()


async def test_a_webhook_that_opens_a_group_and_one_that_resolves_it_send_what_they_must(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a webhook's batch sends, statement by statement (the daemon's dispatcher and
    timer stopped: their batches are not the webhook's). Opening a group: its read, the
    incident's insert, and the arming of its next step, which carries everything else
    (alerts, events, escalation state, the first step's page): the plan's deadlines are
    written last (escalation/responder.py), where the step's events and page went in a
    statement of their own after them. Resolving it: its read, and the paged recipients'
    read, which carries the job's writes with the deadlines' cancel (held.py), where the
    cancel was a statement of its own (nobody was paged yet: no notes)."""
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9", step_delay="1h",
                        extra=f"storage: {{postgres: {{dsn: '{pg_dsn}', pool_size: 2}}}}\n")
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    clock, notifier = FakeClock(NOW), RecordingNotifier()
    daemon = Daemon(loaded, clock=clock, notifier=notifier)
    await daemon.start()

    def heads() -> list[str]:
        """Each statement as the writes it carries and what it is, in order."""
        marks = {"BEGIN": "BEGIN", "COMMIT": "COMMIT", "FROM known k": "group's read",
                 "INSERT INTO incidents": "incident's insert",
                 "INSERT INTO deadlines": "deadline's arming", "SELECT who": "paged read"}
        return [" ".join([*re.findall(r"(held_\w+) AS \(", q),
                          *[m for k, m in marks.items() if k in q]]) for q in sent]

    try:
        # The start's writes done first: the dispatcher's first pass batches with the
        # handoff notices' writes that start awaits, or, as their commits fall, comes a batch
        # later; stopped then, its job still queued went on in the writer, among the webhook's
        # recorded statements.
        await Api(daemon, notifier, clock).settle()
        await daemon.dispatcher.stop()
        await daemon.responder.scheduler.stop()
        sent = record_writer_statements(monkeypatch, ("fetch", "fetchval", "execute"))
        labels = {"alertname": "Disk", "cluster": "a"}
        alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {},
                      NOW - timedelta(minutes=5), None)
        opened = await daemon.incidents.ingest_body(json.dumps(build_webhook([alert])).encode())
        [incident] = opened.opened
        assert heads() == [
            "BEGIN", "group's read", "incident's insert",
            "held_alerts held_events held_states held_outbox deadline's arming", "COMMIT"]
        sent.clear()
        resolved = replace(alert, status=AlertStatus.RESOLVED, ends_at=NOW)
        await daemon.incidents.ingest_body(json.dumps(build_webhook([resolved])).encode())
        assert heads() == [
            "BEGIN", "group's read", "held_alerts held_events held_update0 held_cancelled"
            " paged read", "COMMIT"]
        assert (await daemon.store.incident(incident.id)).state is IncidentState.RESOLVED
        assert await daemon.store.deadlines() == []
    finally:
        monkeypatch.undo()
        await daemon.stop()


async def _seed_resolved(conn: asyncpg.Connection) -> None:
    """10,000 resolved incidents, analyzed: a table of a deployment that has run a while,
    whose plans are not those of a nearly empty one."""
    await conn.execute(
        "INSERT INTO incidents (group_key, route_id, team, severity, policy, group_labels,"
        " state, opened_at, updated_at) SELECT 'old:' || i, '{}', 'payments', 'SEV1',"
        " 'standard', '{}', 'resolved', i, i FROM generate_series(1, 10000) AS i")
    await conn.execute("ANALYZE incidents")


async def _plans_of_one_text(conn: asyncpg.Connection, counting: _Counting) -> tuple[int, int]:
    """The custom and generic plans PostgreSQL made of the statement `counting` saw sent,
    which must have been one text every time."""
    assert len(set(counting.sent)) == 1, counting.sent
    custom, generic = await conn.fetchrow(
        "SELECT custom_plans, generic_plans FROM pg_prepared_statements"
        " WHERE statement = $1", counting.sent[0])
    return int(custom), int(generic)


async def test_a_replica_opens_its_whole_pool_at_start(pg_dsn: str) -> None:
    """Opening a connection runs the SCRAM handshake on the loop (85 M instructions): the
    pool's connections are all opened when the store opens, not under load."""
    store = PostgresStore(pg_dsn, pool_size=4)
    await store.open()
    try:
        conn = await asyncpg.connect(pg_dsn)
        try:
            backends = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()")
        finally:
            await conn.close()
        assert backends == 5  # the pool's four and the listening connection
    finally:
        await store.close()


async def test_a_replica_keeps_its_pool_connections_open(pg_dsn: str) -> None:
    """asyncpg would close a connection idle for 5 minutes and replace one after 50,000
    queries, each time a new handshake on the loop: the pool is told to do neither. (Read
    from the pool's own settings: waiting out either takes minutes.)"""
    store = PostgresStore(pg_dsn, pool_size=2)
    await store.open()
    try:
        pool = store._pool
        assert pool is not None
        assert pool._max_inactive_connection_lifetime == 0
        assert pool._max_queries > 10**12
    finally:
        await store.close()


async def test_a_due_deadline_is_taken_by_exactly_one_replica(
    replicas: list[PostgresStore],
) -> None:
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    armed = await replicas[0].write(
        lambda tx: tx.arm(incident_id, [(NOW + timedelta(seconds=n), "step", str(n))
                                        for n in range(50)]))
    later = NOW + timedelta(minutes=1)

    async def take_all(store: PostgresStore) -> list[int]:
        """Each replica asks for every deadline, a few at a time, as its timer would."""
        taken = []
        for n in range(0, len(armed), 5):
            ids = [d.id for d in armed[n:n + 5]]
            got = await store.write(lambda tx, ids=ids: tx.take_deadlines(ids, later))
            taken.extend(d.id for d in got)
        return taken

    results = await asyncio.gather(*(take_all(s) for s in replicas))
    everything = [i for taken in results for i in taken]
    assert sorted(everything) == sorted(d.id for d in armed)  # each once, none lost


async def test_replicas_lease_disjoint_outbox_rows_and_a_lapsed_lease_falls_due(
    replicas: list[PostgresStore],
) -> None:
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    ids = await replicas[0].write(lambda tx: enqueued(tx, incident_id, [PAGE] * 60, NOW))

    async def lease(store: PostgresStore, at: datetime) -> list[int]:
        return [row.id for row, _ in await store.lease_due_notifications(at, 10)]

    leases = await asyncio.gather(*(lease(s, NOW) for s in replicas for _ in range(2)))
    leased = [i for batch in leases for i in batch]
    assert sorted(leased) == sorted(ids)  # every row once: no replica took another's
    assert await lease(replicas[1], NOW + LEASE - timedelta(seconds=1)) == []
    # The replica holding these rows died: once the lease has run out, another sends them.
    lapsed = await lease(replicas[2], NOW + LEASE + timedelta(seconds=1))
    assert sorted(lapsed) == sorted(ids)[:10]


async def test_each_replica_holds_the_leases_it_took_and_the_oldest_due_counts_them_all(
    replicas: list[PostgresStore],
) -> None:
    """held_outbox (the dispatcher's self-check) names the rows leased by the asking replica,
    and no longer one whose lapsed lease another took; oldest_due_outbox (the gauge) counts a
    row from when it fell due, taken or not, whichever replica holds it."""
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    assert await replicas[0].oldest_due_outbox(NOW) is None
    a, b, c = await replicas[0].write(lambda tx: enqueued(tx, incident_id, [PAGE] * 3, NOW))
    assert await replicas[1].oldest_due_outbox(NOW) == NOW
    assert await replicas[1].oldest_due_outbox(NOW - timedelta(seconds=1)) is None
    later = NOW + timedelta(seconds=5)
    assert [r.id for r, _ in await replicas[0].lease_due_notifications(later, 2)] == [a, b]
    assert [r.id for r, _ in await replicas[1].lease_due_notifications(later, 2)] == [c]
    assert await replicas[0].write(lambda tx: tx.held_outbox()) == [a, b]
    assert await replicas[1].write(lambda tx: tx.held_outbox()) == [c]
    assert await replicas[2].write(lambda tx: tx.held_outbox()) == []
    assert await replicas[2].oldest_due_outbox(later) == NOW  # in flight since NOW
    lapsed = later + LEASE + timedelta(seconds=1)
    assert [r.id for r, _ in await replicas[2].lease_due_notifications(lapsed, 1)] == [a]
    assert sorted(await replicas[0].write(lambda tx: tx.held_outbox())) == [b]
    assert await replicas[2].write(lambda tx: tx.held_outbox()) == [a]
    assert await replicas[0].oldest_due_outbox(lapsed) == NOW  # taken again: still NOW's
    for row_id in (a, b, c):
        await replicas[0].write(lambda tx, row_id=row_id: tx.finish_outbox([row_id]))
    assert await replicas[0].oldest_due_outbox(lapsed) is None


async def test_a_lapsed_lease_given_back_late_leaves_the_new_holders_lease(
    replicas: list[PostgresStore],
) -> None:
    """A send that ran past LEASE: another replica has leased the row again meanwhile. The
    first replica's late give-back (or its retry) must not free the row from under the second,
    or a third would send it too while the second still is."""
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    [row_id] = await replicas[0].write(lambda tx: enqueued(tx, incident_id, [PAGE], NOW))
    assert [r.id for r, _ in await replicas[0].lease_due_notifications(NOW, 10)] == [row_id]
    relapse = NOW + LEASE + timedelta(seconds=1)
    assert [r.id for r, _ in await replicas[1].lease_due_notifications(relapse, 10)] == [row_id]
    await replicas[0].write(lambda tx: tx.release_outbox(row_id, relapse))
    await replicas[0].write(lambda tx: tx.retry_outbox(row_id, 1, relapse))
    assert await replicas[2].lease_due_notifications(relapse, 10) == []  # still the second's
    await replicas[1].write(lambda tx: tx.release_outbox(row_id, relapse))
    assert [r.id for r, _ in await replicas[2].lease_due_notifications(relapse, 10)] == [row_id]


async def test_a_lease_is_renewed_only_by_the_replica_that_holds_it(
    replicas: list[PostgresStore],
) -> None:
    """A send queued past its lease renews it as its turn comes: while no other replica took
    the row, the lease is its replica's again, for LEASE from then; once another took it, the
    row is that one's, and the first sends nothing of it."""
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    a, b = await replicas[0].write(lambda tx: enqueued(tx, incident_id, [PAGE, PAGE], NOW))
    assert sorted(r.id for r, _ in await replicas[0].lease_due_notifications(NOW, 10)) == [a, b]
    lapsed = NOW + LEASE + timedelta(seconds=1)
    assert await replicas[0].write(lambda tx: tx.renew_outbox([a], lapsed)) == [a]
    assert [r.id for r, _ in await replicas[1].lease_due_notifications(lapsed, 10)] == [b]
    assert await replicas[0].write(lambda tx: tx.renew_outbox([a, b], lapsed)) == [a]
    assert await replicas[1].write(lambda tx: tx.renew_outbox([a, b], lapsed)) == [b]
    assert await replicas[2].lease_due_notifications(lapsed + LEASE - timedelta(seconds=1),
                                                     10) == []


class _Counting:
    """A connection that counts the statements sent through it (each a round trip)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.sent: list[str] = []

    async def execute(self, sql: str, *args: object) -> str:
        self.sent.append(sql)
        return await self.conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        self.sent.append(sql)
        return await self.conn.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: object) -> object:
        self.sent.append(sql)
        return await self.conn.fetchval(sql, *args)


async def test_a_batch_of_due_steps_is_taken_in_one_statement_and_written_in_one(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """The timer hands due deadlines over in batches. The statement that takes them reads
    their incidents and escalation states too, and locks the incidents until the commit; each
    step's writes (its state, its timeline events, its page) are held and go, for every step
    of the batch, in one statement: two round trips for the batch, where each step made two.
    The pages' ids rise in the order they were enqueued."""
    incident_ids = []
    for n in range(5):
        incident_id = await replicas[0].write(
            lambda tx, n=n: tx.insert_incident(new_incident(f"g{n}"), None))
        await replicas[0].write(lambda tx, i=incident_id: tx.set_escalation(i, {"step": 0}))
        incident_ids.append(incident_id)
    armed = [(await replicas[0].write(lambda tx, i=i: tx.arm(i, [(NOW, "step", "0:0:1")])))[0]
             for i in incident_ids]
    asked = [d.id for d in reversed(armed)]
    conn, other = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    try:
        counting = _Counting(conn)
        async with conn.transaction():
            tx = PostgresTransaction(counting, None)  # type: ignore[arg-type]
            taken = await tx.take_deadlines(asked, NOW)
            assert [d.id for d in taken] == asked  # in the order asked
            for deadline in taken:
                incident = await tx.incident(deadline.incident_id)
                assert incident.group_key == f"g{incident_ids.index(incident.id)}"
                assert await tx.escalation(incident.id) == {"step": 0}
                await tx.set_escalation(incident.id, {"step": 1})
                await tx.append(incident.id, [
                    TimelineEvent(NOW, EventKind.STEP_FIRED, "ackd", {"step": 1})])
                await tx.enqueue(incident.id, [PAGE], NOW)
            with pytest.raises(asyncpg.LockNotAvailableError):  # locked until the commit
                await other.execute("SELECT 1 FROM incidents WHERE id = $1"
                                    " FOR NO KEY UPDATE NOWAIT", incident_ids[2])
            await tx.send_held()
        assert len(counting.sent) == 2, counting.sent
        assert await conn.fetchval("SELECT count(*) FROM deadlines") == 0
        outbox = await conn.fetch("SELECT id, incident_id FROM outbox ORDER BY id")
    finally:
        await conn.close()
        await other.close()
    assert [r[1] for r in outbox] == [d.incident_id for d in taken]
    for incident_id in incident_ids:
        assert await replicas[1].write(lambda tx, i=incident_id: tx.escalation(i)) == {"step": 1}
        [fired] = [e for e in await replicas[1].timeline(incident_id)
                   if e.kind is EventKind.STEP_FIRED]
        assert fired.detail == {"step": 1}


async def test_escalation_states_set_alone_and_with_other_columns_go_in_one_statement(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """States set alone go in one UPDATE for all their incidents; a state set on an incident
    whose other columns are set too goes with them, in its UPDATE (one statement must not
    write a row twice: one of the two would be lost)."""
    first, second = [await replicas[0].write(
        lambda tx, n=n: tx.insert_incident(new_incident(f"g{n}"), None)) for n in range(2)]
    conn = await asyncpg.connect(pg_dsn)
    try:
        counting = _Counting(conn)
        async with conn.transaction():
            tx = PostgresTransaction(counting, None)  # type: ignore[arg-type]
            await tx.set_escalation(first, {"step": 3})
            await tx.set_escalation(second, {"step": 4})
            await tx.update_incident(second, NOW, state=IncidentState.ACKNOWLEDGED,
                                     acknowledged_by="ana")
            await tx.send_held()
        assert len(counting.sent) == 1, counting.sent
    finally:
        await conn.close()
    assert await replicas[1].write(lambda tx: tx.escalation(first)) == {"step": 3}
    assert await replicas[1].write(lambda tx: tx.escalation(second)) == {"step": 4}
    acknowledged = await replicas[1].incident(second)
    assert (acknowledged.state, acknowledged.acknowledged_by) == (
        IncidentState.ACKNOWLEDGED, "ana")


async def test_the_statement_carrying_escalation_states_is_planned_once_per_connection(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """The statement that arms a deadline carrying escalation states set alone has one text
    for one state or several, and PostgreSQL plans it for its first five executions on a
    connection, then keeps its generic plan: its cost does not depend on the number of states
    (a bare unnest of a parameter is costed at 10 rows generic and at its length custom, and
    the statement was planned at every execution). On a table of a deployment that has run a
    while: on a small one a scan of the whole table is as cheap as either plan."""
    incident_ids = [await replicas[0].write(
        lambda tx, n=n: tx.insert_incident(new_incident(f"g{n}"), None)) for n in range(16)]
    conn = await asyncpg.connect(pg_dsn)
    try:
        await _seed_resolved(conn)
        counting = _Counting(conn)
        for n in range(8):
            states = incident_ids[2 * n:2 * n + 1 + n % 2]  # one state, then two
            async with conn.transaction():
                tx = PostgresTransaction(counting, None)  # type: ignore[arg-type]
                for incident_id in states:
                    await tx.set_escalation(incident_id, {"step": n})
                await tx.arm(states[0], [(NOW, "step", "0:0:1")])
        custom, generic = await _plans_of_one_text(conn, counting)
    finally:
        await conn.close()
    assert generic > 0, (custom, generic)  # PostgreSQL tries custom plans first (5 in 15)
    for n in range(8):
        for incident_id in incident_ids[2 * n:2 * n + 1 + n % 2]:
            assert await replicas[1].write(
                lambda tx, i=incident_id: tx.escalation(i)) == {"step": n}


async def test_a_dispatcher_passs_read_of_its_incidents_is_planned_once_per_connection(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """The incidents a dispatcher pass reads, one or two, are planned for the first five
    reads on a connection, then read with the generic plan (`= ANY` of a bare parameter was
    costed at 10 ids generic and at the ids given custom, and planned at every read)."""
    incident_ids = [await replicas[0].write(
        lambda tx, n=n: tx.insert_incident(new_incident(f"g{n}"), None)) for n in range(3)]
    conn = await asyncpg.connect(pg_dsn)
    try:
        await _seed_resolved(conn)
        counting = _Counting(conn)
        for n in range(8):
            wanted = incident_ids[n % 2:n % 2 + 1 + n % 2]  # one incident, then two
            tx = PostgresTransaction(counting, None)  # type: ignore[arg-type]
            found = await tx.peek_incidents([*wanted, 10**9])  # and one that does not exist
            assert sorted(found) == wanted
            assert [found[i].group_key for i in wanted] == [
                f"g{incident_ids.index(i)}" for i in wanted]
        custom, generic = await _plans_of_one_text(conn, counting)
    finally:
        await conn.close()
    assert generic > 0, (custom, generic)  # PostgreSQL tries custom plans first (5 in 15)


async def test_a_jobs_finished_and_rescheduled_pages_are_planned_once_per_connection(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """The outbox rows a job finishes and reschedules, one or two of each, go in one statement
    (held.py) that PostgreSQL plans for its first five executions on a connection, then
    runs with its generic plan, on an outbox of some size (`= ANY` and `unnest` of a bare
    parameter were costed at 10 rows generic and at the rows given custom, and planned at
    every execution); each row finished or rescheduled as asked, a lease of another replica
    left alone."""
    replica, other = replicas[0].replica, replicas[1].replica  # alive: their sweeps keep
    # the leases
    conn = await asyncpg.connect(pg_dsn)
    try:
        await _seed_resolved(conn)
        rows = await conn.fetch(
            "INSERT INTO outbox (incident_id, created_at, payload, next_attempt_at,"
            " leased_from, leased_by) SELECT id, 1, '{}', 1, 1, $1 FROM incidents"
            " ORDER BY id LIMIT 10000 RETURNING id", replica)
        await conn.execute("ANALYZE outbox")
        ids = [int(r[0]) for r in rows]
        theirs = ids[-1]
        await conn.execute("UPDATE outbox SET leased_by = $1 WHERE id = $2", other, theirs)
        counting = _Counting(conn)
        finished: list[int] = []
        rescheduled: dict[int, int] = {}
        for n in range(8):
            async with conn.transaction():
                tx = PostgresTransaction(counting, replica)  # type: ignore[arg-type]
                for outbox_id in ids[4 * n:4 * n + 1 + n % 2]:  # one row, then two
                    await tx.finish_outbox([outbox_id])
                    finished.append(outbox_id)
                for outbox_id in ids[4 * n + 2:4 * n + 3 + n % 2]:
                    await tx.retry_outbox(outbox_id, n + 1, NOW)
                    rescheduled[outbox_id] = n + 1
                await tx.retry_outbox(theirs, 99, NOW)  # another replica's lease: stays
                await tx.send_held()
        custom, generic = await _plans_of_one_text(conn, counting)
        left = {int(r[0]): (r[1], r[2], r[3]) for r in await conn.fetch(
            "SELECT id, attempts, next_attempt_at, leased_by FROM outbox"
            " WHERE id = ANY($1::bigint[])", [*finished, *rescheduled, theirs])}
    finally:
        await conn.close()
    assert generic > 0, (custom, generic)  # PostgreSQL tries custom plans first (5 in 8)
    assert left == {
        **{i: (attempts, to_us(NOW), None) for i, attempts in rescheduled.items()},
        theirs: (0, 1, other),
    }


async def test_a_replicas_statements_ask_the_server_for_no_type_once_it_opened(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asyncpg knows text[] and oid[] on every new connection and asks the server for any
    other type a statement's parameters or columns hold, once per connection, when one first
    does: a query of the catalog that costs PostgreSQL about 20 ms of planning, and two more
    round trips, in the way of a batch. Each pool connection learns bigint[] as it opens, and
    every kind of write a job holds (held.py), with the reads that carry them, needs no other
    type: the attempts of a page rescheduled went as an integer[]."""
    asked: list[object] = []
    introspect = asyncpg.Connection._introspect_types

    async def recording(conn: asyncpg.Connection, types: object, *rest: object) -> object:
        asked.append(types)
        return await introspect(conn, types, *rest)

    monkeypatch.setattr(asyncpg.Connection, "_introspect_types", recording)
    store = PostgresStore(pg_dsn, pool_size=4)  # more than its start itself uses
    await store.open()
    asked.clear()
    alert = Alert(fingerprint="f", status=AlertStatus.FIRING, labels={"a": "b"},
                  annotations={}, starts_at=NOW, ends_at=None, generator_url="")
    due = datetime.now(UTC) + timedelta(hours=1)  # not late: the sweep leaves it

    async def opens(tx: Transaction) -> int:
        assert await tx.open_group("g") is None
        incident_id = await tx.insert_incident(new_incident("g"), None)
        await tx.write_alerts(incident_id, [alert], NOW)
        await tx.append(incident_id, [TimelineEvent(NOW, EventKind.OPENED, "am", {})])
        await tx.set_escalation(incident_id, {"step": 0})
        await tx.enqueue(incident_id, [PAGE, PAGE], NOW)
        await tx.arm(incident_id, [(due, "escalate", "")])
        return incident_id

    async def delivers(tx: Transaction, incident_id: int) -> list[int]:
        leased = [row.id for row in await tx.lease_due_outbox(NOW, 10)]
        await tx.finish_outbox([leased[0]])
        await tx.retry_outbox(leased[1], 2, NOW)
        await tx.update_incident(incident_id, NOW, summary="t")
        await tx.cancel(incident_id, ["escalate"])
        await tx.paged_recipients(incident_id)
        assert await tx.open_group("g") is not None
        return leased

    try:
        for _ in range(2):  # each pool connection, whichever the writers take
            incident_id = await store.write(opens)
            leased = await store.write(lambda tx, i=incident_id: delivers(tx, i))
            await store.write(lambda tx, i=incident_id: tx.update_incident(
                i, NOW, state=IncidentState.RESOLVED, resolved_at=NOW))
        rows = await store._fetch("SELECT attempts FROM outbox WHERE id = $1", leased[1])
        assert store._pool is not None
        every = [await store._pool.acquire() for _ in range(4)]
        for conn in every:
            await conn.fetch("SELECT id FROM incidents WHERE id = ANY($1::bigint[])", [1])
            await store._pool.release(conn)
    finally:
        await store.close()
    assert asked == []
    assert rows[0][0] == 2


async def test_a_batchs_row_versions_are_known_without_reading_them_again(
    replicas: list[PostgresStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The versions a batch's commit reports for its incidents (what webhook memos hold) are
    the rows' xmin as committed: for an incident the batch inserted or wrote, its transaction
    id; for one it only read, the xmin it read (locked, unchanged); for one it resolved, none.
    A batch without savepoints knows them without a statement; one run again in savepoints
    (a job failed) reads them, as its rows carry the savepoints' ids."""
    store = replicas[0]
    ids = {key: await store.write(lambda tx, k=key: tx.insert_incident(new_incident(k), None))
           for key in ("read", "written", "resolved")}
    reads: list[list[int]] = []
    versions_of = PostgresTransaction._versions_of

    async def counted(tx: PostgresTransaction, incident_ids: list[int]) -> dict[int, int]:
        reads.append(list(incident_ids))
        return await versions_of(tx, incident_ids)

    monkeypatch.setattr(PostgresTransaction, "_versions_of", counted)

    async def batch(failing: bool) -> dict[str, int]:
        reported: dict[str, int] = {}

        def versioned(tx: Transaction, key: str, incident_id: int) -> None:
            tx.after_commit_versioned(incident_id, lambda v: reported.__setitem__(key, v))

        async def opens(tx: Transaction) -> None:
            found = await tx.open_group(f"new{len(reads)}{failing}")
            assert found is None
            versioned(tx, "new", await tx.insert_incident(
                new_incident(f"new{len(reads)}{failing}"), None))

        async def reads_only(tx: Transaction) -> None:
            found = await tx.open_group("read")
            assert found is not None
            versioned(tx, "read", found.incident_id)

        async def writes(tx: Transaction) -> None:
            found = await tx.open_group("written")
            assert found is not None
            await tx.update_incident(found.incident_id, NOW, summary=f"w{failing}")
            versioned(tx, "written", found.incident_id)

        async def resolves(tx: Transaction) -> None:
            found = await tx.open_group("resolved")
            assert found is not None
            await tx.update_incident(found.incident_id, NOW, state=IncidentState.RESOLVED,
                                     resolved_at=NOW)
            versioned(tx, "resolved", found.incident_id)

        async def fails(tx: Transaction) -> None:
            raise RuntimeError("this job fails")

        jobs = [opens, reads_only, writes, resolves] + ([fails] if failing else [])
        results = await asyncio.gather(*(store.write(j) for j in jobs), return_exceptions=True)
        assert results == [None] * 4 + ([results[4]] if failing else []), results
        return reported

    reported = await batch(failing=False)
    assert reads == []
    rows = await replicas[1]._fetch(
        "SELECT group_key, xmin::text::bigint, state FROM incidents ORDER BY id")
    committed = {r[0]: int(r[1]) for r in rows if r[2] != "resolved"}
    assert reported == {"new": committed["new0False"], "read": committed["read"],
                        "written": committed["written"]}
    assert committed["read"] != committed["written"] == committed["new0False"]
    # Run again in savepoints: the rows carry the savepoints' ids, read before COMMIT.
    await store.write(lambda tx: tx.update_incident(ids["read"], NOW, summary="again"))
    ids["resolved"] = await store.write(
        lambda tx: tx.insert_incident(new_incident("resolved"), None))
    reported = await batch(failing=True)
    assert len(reads) == 1
    rows = await replicas[1]._fetch(
        "SELECT group_key, xmin::text::bigint FROM incidents WHERE state != 'resolved'")
    committed = {r[0]: int(r[1]) for r in rows}
    assert reported == {"new": committed["new0True"], "read": committed["read"],
                        "written": committed["written"]}


async def test_the_pages_of_a_job_that_failed_are_not_sent_by_the_next_in_its_batch(
    replicas: list[PostgresStore],
) -> None:
    """Enqueued rows wait for the batch's next statement; a job that raises is rolled back
    to its savepoint, and its rows must go with it, not with the next job's statements."""
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))

    async def fails(tx: Transaction) -> None:
        await tx.enqueue(incident_id, [PAGE], NOW)
        raise ValueError("the job's own error")

    async def reads(tx: Transaction) -> int:
        assert isinstance(tx, PostgresTransaction)
        return int(await tx._conn.fetchval(
            "SELECT count(*) FROM outbox WHERE incident_id = $1", incident_id))

    failed, seen = await asyncio.gather(replicas[0].write(fails), replicas[0].write(reads),
                                        return_exceptions=True)
    assert isinstance(failed, ValueError)
    assert seen == 0
    assert await replicas[1].lease_due_notifications(NOW, 10) == []


async def test_the_fates_of_a_jobs_outbox_rows_go_in_one_statement(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """A pass defers a bundle's rows and a delivery's record finishes them, each row by
    itself: those writes are held (store/postgres/held.py) and go together, here with the
    job's timeline events, in one statement. They keep the order of effects one statement
    per row would have had: a row rescheduled and then finished is deleted, one finished and
    then rescheduled stays deleted; and a reschedule still ends only this replica's lease."""
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    ids = await replicas[0].write(lambda tx: enqueued(tx, incident_id, [PAGE] * 6, NOW))
    conn = await asyncpg.connect(pg_dsn)
    try:
        number = await claim(conn)
        counting = _Counting(conn)
        async with conn.transaction():
            tx = PostgresTransaction(counting, number)  # type: ignore[arg-type]
            assert sorted(r.id for r in await tx.lease_due_outbox(NOW, 10)) == ids
        [theirs] = await replicas[0].write(lambda tx: enqueued(tx, incident_id, [PAGE], NOW))
        [(row, _)] = await replicas[1].lease_due_notifications(NOW, 10)  # another's lease
        assert row.id == theirs
        counting.sent.clear()
        later = NOW + timedelta(minutes=5)
        async with conn.transaction():
            tx = PostgresTransaction(counting, number)  # type: ignore[arg-type]
            for row_id in ids[:3]:
                await tx.retry_outbox(row_id, 0, later)  # deferred
            await tx.append(incident_id, [TimelineEvent(NOW, EventKind.NOTIFICATION_SENT,
                                                        "ackd", {"recipient": "ana"})])
            await tx.finish_outbox([ids[2]])  # rescheduled, then finished
            await tx.finish_outbox([ids[3]])
            await tx.finish_outbox([ids[4]])
            await tx.retry_outbox(ids[4], 1, later)  # finished, then rescheduled
            await tx.retry_outbox(theirs, 1, later)  # another replica's lease now
            await tx.send_held()
        assert len(counting.sent) == 1, counting.sent
        rows = await conn.fetch(
            "SELECT id, attempts, next_attempt_at, leased_by FROM outbox ORDER BY id")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        (ids[0], 0, to_us(later), None),
        (ids[1], 0, to_us(later), None),
        (ids[5], 0, to_us(NOW + LEASE), number),  # still leased, untouched
        (theirs, 0, to_us(NOW + LEASE), replicas[1].replica),
    ]
    [event] = [e for e in await replicas[0].timeline(incident_id)
               if e.kind is EventKind.NOTIFICATION_SENT]
    assert event.detail == {"recipient": "ana"}


async def test_a_resolutions_cancel_and_its_paged_read_go_in_one_statement(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """A resolution cancels its incident's deadlines and reads who was paged: the cancel is
    held (store/postgres/held.py) and goes, with the job's other writes, in the read's round
    trip, where it went in one of its own. What the read answers is as the statements one
    after the other would answer it: a page recorded sent in the same job is seen (the held
    writes then go first). A cancel held and an arm of the same incident both happen, in
    their order."""
    ids = [await replicas[0].write(lambda tx, k=k: tx.insert_incident(new_incident(k), None))
           for k in ("a", "b")]
    due = datetime.now(UTC) + timedelta(hours=1)  # not late: the replicas' sweep leaves it
    await replicas[0].write(lambda tx: tx.arm(ids[0], [(due, "escalate", ""), (due, "stale", "")]))
    await replicas[0].write(lambda tx: tx.arm(ids[1], [(due, "escalate", "")]))
    sent = TimelineEvent(NOW, EventKind.NOTIFICATION_SENT, "ackd",
                         {"recipient": "ana", "recipient_kind": "user", "reason": "triggered"})
    await replicas[0].write(lambda tx: tx.append(ids[0], [sent]))
    conn = await asyncpg.connect(pg_dsn)
    try:
        counting = _Counting(conn)
        async with conn.transaction():
            tx = PostgresTransaction(counting, None)  # type: ignore[arg-type]
            await tx.append(ids[0], [TimelineEvent(NOW, EventKind.RESOLVED, "am", {})])
            await tx.cancel(ids[0], ["escalate"])
            await tx.cancel(ids[1], ["escalate"])
            assert await tx.paged_recipients(ids[0]) == ["ana"]
            assert len(counting.sent) == 1, counting.sent
            await tx.cancel(ids[0], ["stale"])
            await tx.arm(ids[0], [(due, "stale", "")])  # after the cancel: armed again
            await tx.append(ids[1], [replace(sent, detail={**sent.detail, "recipient": "bo"})])
            assert await tx.paged_recipients(ids[1]) == ["bo"]  # the held page recorded
        rows = await conn.fetch("SELECT incident_id, kind FROM deadlines ORDER BY incident_id")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [(ids[0], "stale")]


async def test_the_leases_of_a_replica_gone_are_given_back_after_the_grace(
    replicas: list[PostgresStore], pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica's lease names it, and its session's advisory lock says it is alive: when
    that session ends (the process was SIGKILLed: its socket closed) and its number stays
    unlocked for GRACE, the others' sweep gives its leases back, not LEASE later, and wakes
    their dispatchers to send them; not before GRACE (a database restart ends every session
    of replicas that live on: see the next test)."""
    monkeypatch.setattr(replicas_module, "GRACE", 1.0)
    now = datetime.now(UTC)  # the sweep looks for rows overdue by the wall clock
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    ids = await replicas[0].write(lambda tx: enqueued(tx, incident_id, [PAGE] * 3, now))
    doomed = await asyncpg.connect(pg_dsn)
    number = await claim(doomed)
    async with doomed.transaction():
        held = await PostgresTransaction(doomed, number).lease_due_outbox(now, 10)
    assert sorted(row.id for row in held) == ids
    async with asyncio.timeout(5):
        await until(lambda: len(replicas[1].alive) == 4)  # three stores and the doomed one
    assert number in replicas[1].alive
    await asyncio.sleep(2 * WATCH)
    assert await replicas[1].lease_due_notifications(now, 10) == []  # its holder lives

    doomed.terminate()  # the socket closes, as when the process is killed
    gone = time.monotonic()
    async with asyncio.timeout(5):
        await until(lambda: number not in replicas[1].alive)  # seen gone at once
    assert await replicas[1].lease_due_notifications(now, 10) == []  # its leases wait
    async def none_leased() -> bool:
        return not await replicas[1]._fetch("SELECT 1 FROM outbox WHERE leased_by IS NOT NULL")

    await wait_until(none_leased, 5, "the leases given back", interval=WATCH / 4)
    given_back = time.monotonic()
    assert 1.0 <= given_back - gone < 1.0 + 1.0, given_back - gone
    taken = [row.id for row, _ in await replicas[1].lease_due_notifications(now, 10)]
    assert sorted(taken) == ids
    assert len(replicas[1].alive) == 3


async def hung_listener(pg_dsn: str) -> tuple[asyncpg.Connection, int]:
    """A replica's listening connection as store.py opens it (named, holding its number)."""
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(f"SET application_name = '{LISTENER_NAME}'")
    return conn, await claim(conn)


async def test_the_leases_of_a_replica_hung_while_connected_go_to_the_others(
    replicas: list[PostgresStore], pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica hung while connected (SIGSTOP, a paused VM) keeps its lock, so it looks
    alive; but its listening connection stops beating. Once that has been idle for HUNG,
    the others give back the leases it took HUNG ago or more (not LEASE later), and wake
    their dispatchers; a lease it renewed (on another connection, as its pool does) is kept
    until HUNG after the renewal. A replica whose listener beats keeps its leases however
    long they run."""
    monkeypatch.setattr(replicas_module, "HUNG", 1.0)
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    hung, number = await hung_listener(pg_dsn)
    beating, beats = await hung_listener(pg_dsn)
    renewer = await asyncpg.connect(pg_dsn)

    async def lease(conn: asyncpg.Connection, replica: int, count: int) -> list[int]:
        now = datetime.now(UTC)
        await replicas[0].write(lambda tx: enqueued(tx, incident_id, [PAGE] * count, now))
        async with conn.transaction():
            rows = await PostgresTransaction(conn, replica).lease_due_outbox(now, count)
        return sorted(row.id for row in rows)

    async def beat() -> None:
        while True:
            await beating.execute("SELECT 1")
            await asyncio.sleep(WATCH)

    beater: asyncio.Task[None] | None = None
    try:
        # The live replica's lease taken before its beats start: a connection runs one
        # statement at a time, and a beat sent while the lease's transaction ran (its enqueue
        # slower than WATCH under load) failed the beats' task (asyncpg: another operation is
        # in progress), which left that listener silent, hung, and its lease given back.
        kept = await lease(beating, beats, 1)
        beater = asyncio.create_task(beat())
        leased_at = time.monotonic()
        taken = await lease(hung, number, 2)
        await asyncio.sleep(0.5)
        renewed_at = time.monotonic()
        assert await PostgresTransaction(renewer, number).renew_outbox(
            taken[1:], datetime.now(UTC)) == taken[1:]
        async with asyncio.timeout(5):
            await until(lambda: number in replicas[1].alive and beats in replicas[1].alive)

        async def holder(row_id: int) -> int | None:
            value = await renewer.fetchval("SELECT leased_by FROM outbox WHERE id = $1", row_id)
            return None if value is None else int(value)

        async def given_back(row_id: int) -> float:
            async def free() -> bool:
                return await holder(row_id) is None

            await wait_until(free, 10, f"row {row_id} given back", interval=WATCH / 4)
            return time.monotonic()

        first = await given_back(taken[0])
        second = await given_back(taken[1])
        assert 1.0 <= first - leased_at < 1.0 + 1.5, first - leased_at
        assert 1.0 <= second - renewed_at < 1.0 + 1.5, second - renewed_at
        assert number in replicas[1].alive  # hung, not gone
        assert await holder(kept[0]) == beats  # a live replica's lease stays its own
        found = [row.id for row, _ in
                 await replicas[1].lease_due_notifications(datetime.now(UTC), 10)]
        assert sorted(found) == taken
    finally:
        await cancel(beater)
        for conn in (hung, beating, renewer):
            await conn.close()


async def test_a_replica_listening_again_keeps_its_number_and_its_leases(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """A replica's listening connection ends (a database restart, a failover, a network blip:
    here pg_terminate_backend) while it holds leases: the others see its number unlocked
    until it listens again (RELISTEN), takes the same number, and keeps its leases: nobody
    gives them back, and its own record of the delivery still finds them its own."""
    now = datetime.now(UTC)
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    ids = await replicas[0].write(lambda tx: enqueued(tx, incident_id, [PAGE] * 2, now))
    leased = await replicas[0].lease_due_notifications(now, 10)
    assert sorted(row.id for row, _ in leased) == ids
    number = replicas[0].replica
    assert number is not None
    async with asyncio.timeout(5):
        await until(lambda: all(len(store.alive) == 3 for store in replicas))
    listener = replicas[0]._listener
    assert listener is not None
    listen = replicas[0]._listen

    async def listen_late() -> None:  # the database takes a second to accept it again
        await asyncio.sleep(1.0)
        await listen()

    replicas[0]._listen = listen_late  # type: ignore[method-assign]
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
        async with asyncio.timeout(5):
            await until(lambda: number not in replicas[1].alive)
            await until(lambda: number in replicas[1].alive)  # listening again, same number
        assert replicas[0].replica == number
        await asyncio.sleep(GRACE + 4 * WATCH)
        holders = await conn.fetch("SELECT DISTINCT leased_by FROM outbox")
        assert [r[0] for r in holders] == [number]
        assert await replicas[1].lease_due_notifications(datetime.now(UTC), 10) == []
    finally:
        await conn.close()


async def test_the_replicas_alive_share_the_deadlines_each_first_to_one(
    replicas: list[PostgresStore],
) -> None:
    async with asyncio.timeout(5):
        await until(lambda: all(len(store.alive) == 3 for store in replicas))
    for deadline_id in range(1, 100):
        assert sum(store.first_to_try(deadline_id) for store in replicas) == 1


async def test_a_commit_tells_the_other_replicas_of_its_deadlines_not_its_outbox_rows(
    replicas: list[PostgresStore],
) -> None:
    """Deadlines armed are announced once their batch committed (not a rolled-back job's);
    outbox rows are not announced: the replica that enqueued them sends them, and a commit
    that notifies waits for the others' (store.py). The replica that armed them does not
    hear its own announcement: whoever armed them armed its timer after the commit."""
    heard: list[tuple[int, datetime]] = []
    own: list[int] = []
    woken, told = asyncio.Event(), asyncio.Event()
    replicas[1].deadline_listeners.append(lambda i, due: (heard.append((i, due)), told.set()))
    replicas[0].deadline_listeners.append(lambda i, due: own.append(i))
    replicas[1].outbox_listeners.append(woken.set)
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))

    async def rolled_back(tx: Transaction) -> None:
        await tx.arm(incident_id, [(NOW, "step", "never")])
        raise RuntimeError("this job fails after arming")

    async def arm_then_fail(tx: Transaction) -> None:
        await tx.arm(incident_id, [(NOW, "step", "also never")])
        raise RuntimeError("a job of the same batch fails after arming")

    with pytest.raises(RuntimeError):
        await replicas[0].write(rolled_back)
    due = datetime.now(UTC) + timedelta(minutes=1)  # not overdue (late.py) meanwhile
    armed, failed = await asyncio.gather(
        replicas[0].write(lambda tx: tx.arm(incident_id, [(due, "step", "0:0")])),
        replicas[0].write(arm_then_fail), return_exceptions=True)
    assert isinstance(failed, RuntimeError)
    assert not isinstance(armed, BaseException)
    later = datetime.now(UTC) + timedelta(minutes=1)  # not overdue (see the sweep) meanwhile
    await replicas[0].write(lambda tx: tx.enqueue(incident_id, [PAGE], later))
    async with asyncio.timeout(5):
        await told.wait()
    await asyncio.sleep(0.2)
    assert heard == [(armed[0].id, due)]  # not the rolled-back ones
    assert own == []
    assert not woken.is_set()


async def test_what_a_replica_killed_before_it_announced_left_reaches_the_others(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """A replica that dies after its COMMIT and before it announced the deadlines it armed
    (store.py announces them in a statement after the commit), with pages it enqueued and
    had not leased yet (it announces none): when the others' sweep finds it gone, they read
    the armed deadlines again and look at the outbox, within a second (the pages would wake
    them anyway once overdue: see the next test)."""
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    heard: list[tuple[int, datetime]] = []
    woken, told = asyncio.Event(), asyncio.Event()
    # When the replica learnt each (its listeners' calls), not when this test got to look.
    learnt: dict[str, float] = {}

    def on_deadline(i: int, due: datetime) -> None:
        heard.append((i, due))
        learnt.setdefault("deadline", time.monotonic())
        told.set()

    def on_outbox() -> None:
        learnt.setdefault("outbox", time.monotonic())
        woken.set()

    replicas[1].deadline_listeners.append(on_deadline)
    replicas[1].outbox_listeners.append(on_outbox)
    doomed = await asyncpg.connect(pg_dsn)
    number = await claim(doomed)
    async with asyncio.timeout(5):
        await until(lambda: number in replicas[1].alive)
    due = datetime.now(UTC) + timedelta(minutes=10)  # not overdue (late.py)
    tx = PostgresTransaction(doomed, number)
    async with doomed.transaction():
        armed = await tx.arm(incident_id, [(due, "step", "0:1")])
        ids = await enqueued(tx, incident_id, [PAGE] * 2, datetime.now(UTC))
    assert tx.announcements  # what it would have announced, had it lived
    await asyncio.sleep(2 * WATCH)
    assert heard == []
    woken.clear()  # from here: what the replica's death brings
    learnt.clear()

    doomed.terminate()  # killed: the socket closes, the announcement never goes
    gone = time.monotonic()
    async with asyncio.timeout(5):
        await woken.wait()
        await told.wait()
    assert learnt.keys() == {"deadline", "outbox"}
    assert max(learnt.values()) - gone < 1.0, {k: t - gone for k, t in learnt.items()}
    assert (armed[0].id, due) in heard
    taken = await replicas[1].lease_due_notifications(datetime.now(UTC), 10)
    assert sorted(row.id for row, _ in taken) == ids


async def test_a_page_its_replica_leaves_unleased_wakes_the_others_dispatchers(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """Pages are not announced: the replica that enqueued them sends them. One that does not
    take them while alive (hung, its session and lock still there) leaves them due and
    unleased; once overdue (OVERDUE), the others' sweep wakes their dispatchers, which take
    them: within a second of their due time."""
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    hung = await asyncpg.connect(pg_dsn)
    try:
        number = await claim(hung)
        woken = asyncio.Event()
        woken_at: list[datetime] = []  # when the sweep woke it, not when this test looked
        replicas[1].outbox_listeners.append(
            lambda: (woken_at.append(datetime.now(UTC)), woken.set()))
        due = datetime.now(UTC)
        async with hung.transaction():
            ids = await enqueued(PostgresTransaction(hung, number), incident_id, [PAGE], due)
        async with asyncio.timeout(5):
            await woken.wait()
        assert woken_at[0] - due < timedelta(seconds=1)
        assert woken_at[0] - due >= OVERDUE
        taken = await replicas[1].lease_due_notifications(datetime.now(UTC), 10)
        assert [row.id for row, _ in taken] == ids
        assert number in replicas[1].alive  # not taken for a replica gone
    finally:
        await hung.close()


async def test_a_webhook_memo_answers_only_what_no_other_replica_changed(pg_dsn: str) -> None:
    """Two replicas' webhook memos on one database. A resend is answered from the memo, with
    no transaction, while the incident's row is as this replica committed it. Another
    replica's commit that makes the memo's answer wrong (the incident resolved as stale:
    the same alerts now open a new incident) is seen, and the full path answers; a change
    that leaves the answer as it was (an acknowledgement) costs one full path, after which
    the memo answers again."""
    config = config_module.load(ROOT / "tests/config/good/postgres.yaml")
    clock = FakeClock(NOW)
    stores = [PostgresStore(pg_dsn, pool_size=4) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        one, other = (Incidents(s, clock, Metrics(), config, shared=True) for s in stores)
        alert = Alert(fingerprint_of({"alertname": "Disk"}), AlertStatus.FIRING,
                      {"alertname": "Disk"}, {}, NOW - timedelta(minutes=5), None)
        body = json.dumps(build_webhook([alert])).encode()
        (number,) = [i.id for i in (await one.ingest_body(body)).opened]
        assert (await other.ingest_body(body)).groups == {KEY: number}  # other's memo too

        async def resend(incidents: Incidents, store: PostgresStore) -> tuple[int, bool]:
            """The incident the resend reached, and whether it took a transaction."""
            commits = store.stats.commits
            result = await incidents.ingest_body(body)
            assert not result.opened
            return result.groups[KEY], store.stats.commits > commits

        assert await resend(one, stores[0]) == (number, False)
        assert await resend(one, stores[0]) == (number, False)
        await stores[1].write(lambda tx: tx.update_incident(
            number, NOW, state=IncidentState.ACKNOWLEDGED, acknowledged_at=NOW))
        assert await resend(one, stores[0]) == (number, True)  # changed: checked in full
        assert await resend(one, stores[0]) == (number, False)  # remembered again
        await stores[1].write(lambda tx: tx.update_incident(
            number, NOW, state=IncidentState.RESOLVED, resolved_at=NOW,
            resolved_by=STALE_ACTOR))
        reopened = await one.ingest_body(body)
        assert [i.previous_id for i in reopened.opened] == [number]
        (newer,) = [i.id for i in reopened.opened]
        # The other replica's memo held the stale incident too: its resend finds the new one.
        assert await resend(other, stores[1]) == (newer, True)
        assert await resend(other, stores[1]) == (newer, False)
    finally:
        for store in stores:
            await store.close()


async def test_memo_version_reads_asked_together_share_one_statement(
    replicas: list[PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resends that ask for their incidents' versions at once share one read; but a read in
    flight when a caller asks is not that caller's: it may have begun before another
    replica's commit the caller must see. The caller waits for the next read."""
    store = replicas[0]
    first = await store.write(lambda tx: tx.insert_incident(new_incident("v1"), None))
    second = await store.write(lambda tx: tx.insert_incident(new_incident("v2"), None))
    before = await store.open_versions([first, second])
    reads: list[list[int]] = []
    release, read = asyncio.Event(), asyncio.Event()
    fetch = store._read_versions

    async def held_back(ids: list[int]) -> dict[int, int]:
        reads.append(ids)
        found = await fetch(ids)  # read now, answered once released
        read.set()
        await release.wait()
        return found

    monkeypatch.setattr(store._versions, "_fetch", held_back)
    early = asyncio.create_task(store.open_versions([first]))
    async with asyncio.timeout(5):
        await read.wait()
    # Read already; now another replica acknowledges the first incident.
    await replicas[1].write(lambda tx: tx.update_incident(
        first, NOW, state=IncidentState.ACKNOWLEDGED, acknowledged_at=NOW))
    late = [asyncio.create_task(store.open_versions(ids)) for ids in ([first], [second])]
    await asyncio.sleep(0.05)
    assert reads == [[first]]  # the late callers did not start reads of their own
    release.set()
    async with asyncio.timeout(5):
        assert await early == {first: before[first]}
        changed, unchanged = await asyncio.gather(*late)
    assert reads == [[first], [first, second]]  # both late callers in one read
    assert changed[first] != before[first]  # they saw the acknowledgement
    assert unchanged == {second: before[second]}


async def test_a_database_that_goes_away_is_a_503_and_replicas_hear_each_other_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While PostgreSQL is down, reads and writes raise StoreUnavailable (503, /-/ready too);
    once it is back, writes work again, and the connection that listens for the other
    replicas is opened again and catches up on the deadlines armed meanwhile. All of it is
    expected in operation: one line each, no traceback (asyncpg's pool logged one for every
    attempt to open a lost connection again)."""
    caplog.set_level(logging.INFO)
    cluster = start_cluster()
    stores = [PostgresStore(cluster.dsn(), pool_size=2) for _ in range(2)]
    try:
        for store in stores:
            await store.open()
        heard: dict[int, asyncio.Event] = {}
        stores[1].deadline_listeners.append(
            lambda i, due: heard.setdefault(i, asyncio.Event()).set())
        reread: set[Shared] = set()
        all_reread = asyncio.Event()

        def changed(what: Shared) -> None:
            reread.add(what)
            if reread == set(Shared):
                all_reread.set()

        stores[1].change_listeners.append(changed)
        incident_id = await stores[0].write(
            lambda tx: tx.insert_incident(new_incident("g"), None))
        cluster.halt()
        with pytest.raises(StoreUnavailable):
            await stores[0].ping()
        with pytest.raises(StoreUnavailable):
            await stores[0].write(lambda tx: tx.arm(incident_id, [(NOW, "step", "0:0")]))
        with pytest.raises(StoreUnavailable):
            await stores[0].writable()
        cluster.resume()
        async with asyncio.timeout(20):
            while True:  # the pool replaces the connections it lost, one failure each
                try:
                    await stores[0].writable()
                    armed = await stores[0].write(
                        lambda tx: tx.arm(incident_id, [(NOW, "step", "0:1")]))
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.2)
            await heard.setdefault(armed[0].id, asyncio.Event()).wait()
            # Changes missed while not listening: every kind of run-time state is read again.
            await all_reread.wait()
        await stores[0].ping()
    finally:
        for store in stores:
            await store.close()
        cluster.stop()
    noisy = [f"{r.name}: {r.getMessage()}" for r in caplog.records
             if r.exc_info or "unexpected" in r.getMessage()]
    assert noisy == []
    lost = [r for r in caplog.records if "was lost" in r.getMessage()]
    assert lost
    assert all(r.levelno == logging.WARNING for r in lost)


async def test_asyncpgs_internal_client_error_in_a_batch_is_a_503_and_the_writer_goes_on(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncpg's own InternalClientError (its protocol in a state it did not expect, seen
    with the database restarted while a batch ran; here at the COMMIT of a batch whose jobs
    ran without savepoints), neither a job's error nor one of the connection's known ones:
    the batch's jobs answer StoreUnavailable (a 503 that Alertmanager retries), nothing of the
    batch is kept, the connection it happened on is closed, and the next batch commits: the
    writer task lives on. Before, it ended, its callers waited for ever and the replica could
    not write again. Logged as a lost connection, one WARNING line: not an "unexpected"
    ERROR with asyncpg's traceback."""
    store = PostgresStore(pg_dsn, pool_size=2)  # one writer task
    await store.open()
    try:
        broken: list[asyncpg.Connection] = []
        execute = asyncpg.Connection.execute

        async def failing(conn: asyncpg.Connection, query: str, *args: object,
                          **kwargs: object) -> str:
            if query == "COMMIT" and not broken:
                broken.append(conn)
                raise asyncpg.InternalClientError(
                    "cannot switch to state 12; another operation (2) is in progress")
            return await execute(conn, query, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(asyncpg.Connection, "execute", failing)
        # Two jobs queued at once make one batch, and one COMMIT.
        first, second = await asyncio.wait_for(asyncio.gather(
            store.write(lambda tx: tx.insert_incident(new_incident("u1"), None)),
            store.write(lambda tx: tx.insert_incident(new_incident("u2"), None)),
            return_exceptions=True), 10)
        assert broken, "the batch never committed"
        assert isinstance(first, StoreUnavailable), first
        assert isinstance(second, StoreUnavailable), second
        assert broken[0].is_closed()
        assert store.stats.failing
        incident_id = await asyncio.wait_for(
            store.write(lambda tx: tx.insert_incident(new_incident("u3"), None)), 10)
        assert not store.stats.failing
        await store.writable()
        open_ = await store.incidents(IncidentFilter(open_only=True))
        assert [i.group_key for i in open_] == ["u3"]
        assert open_[0].id == incident_id
        failed = [r for r in caplog.records if "store write" in r.getMessage()]
        assert [(r.levelno, bool(r.exc_info)) for r in failed] == [(logging.WARNING, False)]
        assert "InternalClientError: cannot switch to state 12" in failed[0].getMessage()
    finally:
        await store.close()


async def test_heartbeat_arrivals_from_replicas_keep_the_latest(
    replicas: list[PostgresStore],
) -> None:
    """Two replicas record one heartbeat's arrival: the later instant stays, whichever
    commits last; and the open incident of a heartbeat's group is found by its key."""
    later, earlier = NOW + timedelta(seconds=5), NOW

    async def arrived(at: datetime) -> None:
        await replicas[0 if at == later else 1].write(
            lambda tx: tx.heartbeats_arrived(["watchdog"], at))

    await arrived(later)
    await arrived(earlier)
    assert await replicas[2].heartbeat_arrivals() == {"watchdog": later}
    number = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("hb"), None))
    assert await replicas[1].open_incidents_by_group(["hb", "other"]) == {"hb": number}
    assert await replicas[2].write(lambda tx: tx.open_incident_ids(["hb"])) == {"hb": number}


async def test_maintenance_windows_on_postgres(replicas: list[PostgresStore]) -> None:
    """A window one replica stores, another reads back whole; deleting it is once."""
    window = Window(NOW, NOW + timedelta(hours=1), "payments",
                    (parse_matcher('cluster="eu1"'),), "upgrade", "ana", created_at=NOW)
    number = await replicas[0].write(lambda tx: tx.add_window(window))
    [found] = await replicas[1].maintenance_windows()
    assert found == replace(window, id=number)
    assert [str(m) for m in found.matchers] == ['cluster="eu1"']
    assert await replicas[2].write(lambda tx: tx.delete_window(number))
    assert not await replicas[0].write(lambda tx: tx.delete_window(number))
    assert await replicas[1].maintenance_windows() == []


async def test_a_commit_that_changes_run_time_state_tells_the_other_replicas(
    replicas: list[PostgresStore],
) -> None:
    """Maintenance windows and on-call overrides: what another replica holds in memory is
    read again when told; a rolled-back change tells nobody."""
    from receiver.oncall.overrides import Change, Leg

    heard: asyncio.Queue[Shared] = asyncio.Queue()
    replicas[1].change_listeners.append(heard.put_nowait)
    window = Window(NOW, NOW + timedelta(hours=1), "payments", (), "", "ana", created_at=NOW)

    async def rolled_back(tx: Transaction) -> None:
        await tx.add_window(window)
        raise RuntimeError("this job fails after adding")

    with pytest.raises(RuntimeError):
        await replicas[0].write(rolled_back)
    number = await replicas[0].write(lambda tx: tx.add_window(window))
    leg = Leg("bo", NOW, NOW + timedelta(hours=1), "primary", None)
    made = await replicas[2].write(
        lambda tx: tx.add_overrides("payments", Change((leg,), False, ""), "ana", NOW))
    await replicas[0].write(lambda tx: tx.delete_overrides([o.id for o in made]))
    await replicas[0].write(lambda tx: tx.delete_window(number))
    assert not await replicas[0].write(lambda tx: tx.delete_window(number))  # nothing changed
    async with asyncio.timeout(5):
        got = [await heard.get() for _ in range(4)]
    assert got == [Shared.MAINTENANCE, Shared.ONCALL, Shared.ONCALL, Shared.MAINTENANCE]
    await asyncio.sleep(0.2)
    assert heard.empty()  # the rolled-back add and the delete of nothing told nobody


async def test_replicas_gating_one_channel_take_turns(replicas: list[PostgresStore]) -> None:
    """Noise control's histories: a replica that locks a channel (even one with no history
    yet, its first message) holds it until it commits; another replica's lock of the same
    channel waits, then reads what the first wrote: one budget, however many replicas. A
    third replica's other channel does not wait."""
    channel, other = "e" * 64, "f" * 64
    spent = ChannelRecord(channel, ChannelHistory(sent=(NOW,), last_page=NOW))
    locked, go = asyncio.Event(), asyncio.Event()
    seen: list[object] = []

    async def first(tx: Transaction) -> None:
        seen.append(("first read", await tx.lock_channels([channel], NOW)))
        locked.set()
        await go.wait()
        await tx.save_channels([spent])
        seen.append("first wrote")

    async def second(tx: Transaction) -> None:
        seen.append(("second read", await tx.lock_channels([channel], NOW)))

    holder = asyncio.create_task(replicas[0].write(first))
    await locked.wait()
    waiting = asyncio.create_task(replicas[1].write(second))
    async with asyncio.timeout(5):  # another channel is not held up
        assert await replicas[2].write(lambda tx: tx.lock_channels([other], NOW)) == []
    await asyncio.sleep(0.3)
    assert not waiting.done()
    go.set()
    await holder
    await waiting
    assert seen == [("first read", []), "first wrote", ("second read", [spent])]


async def test_a_passs_channels_are_locked_with_the_due_summaries_and_its_end_carries_its_writes(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """A dispatcher pass locks its channels with those whose held-back summary is due, found
    in the same statement, then reads their histories: two round trips, where the due
    summaries were a third. When the next summary is due is read in the round trip that
    carries the pass's held writes (its deferrals), not after it."""
    asked, due, later = "a" * 64, "b" * 64, NOW + timedelta(minutes=5)
    await replicas[0].write(lambda tx: tx.save_channels([
        ChannelRecord(asked, ChannelHistory(sent=(NOW,))),
        ChannelRecord(due, ChannelHistory(sent=(NOW,)), None, NOW),
        ChannelRecord("c" * 64, ChannelHistory(sent=(NOW,)), None, later)]))
    incident_id = await replicas[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    [row_id] = await replicas[0].write(lambda tx: enqueued(tx, incident_id, [PAGE], NOW))
    conn = await asyncpg.connect(pg_dsn)
    try:
        number = await claim(conn)
        counting = _Counting(conn)
        async with conn.transaction():
            tx = PostgresTransaction(counting, number)  # type: ignore[arg-type]
            await tx.lease_due_outbox(NOW, 10)
            counting.sent.clear()
            records = await tx.lock_channels([asked], NOW)
            assert sorted(r.channel for r in records) == [asked, due]
            assert len(counting.sent) == 2, counting.sent
            await tx.retry_outbox(row_id, 0, later)  # a deferral, held
            assert await tx.next_summary_at() == NOW
            assert len(counting.sent) == 3, counting.sent
        assert await conn.fetchval(
            "SELECT next_attempt_at FROM outbox WHERE id = $1", row_id) == to_us(later)
    finally:
        await conn.close()


async def test_batches_that_lock_rows_in_opposite_orders_both_commit(pg_dsn: str) -> None:
    """Two replicas' batches, each of two jobs, lock two incidents in opposite orders: a
    deadlock that PostgreSQL breaks by failing one job. Run again inside its batch, that job
    would meet the same cycle (the batch's first job still holds its lock), and after its
    retries answer an error (a 500 for a webhook). The batch is given up instead, its locks
    released, and its jobs run each in a transaction of its own: every job commits."""
    stores = [PostgresStore(pg_dsn, pool_size=2) for _ in range(2)]  # one writer each
    for store in stores:
        await store.open()
    try:
        first = await stores[0].write(lambda tx: tx.insert_incident(new_incident("d1"), None))
        second = await stores[0].write(lambda tx: tx.insert_incident(new_incident("d2"), None))
        locked = [asyncio.Event(), asyncio.Event()]

        def lock(incident_id: int, mine: asyncio.Event | None, theirs: asyncio.Event | None):  # type: ignore[no-untyped-def]
            async def job(tx: Transaction) -> int:
                if theirs is not None:
                    await theirs.wait()  # the other batch holds its first row
                await tx.escalation(incident_id)  # FOR NO KEY UPDATE
                if mine is not None:
                    mine.set()
                return incident_id
            return job

        batches = [  # each batch: its first job locks one row, its second the other's
            (lock(first, locked[0], None), lock(second, None, locked[1])),
            (lock(second, locked[1], None), lock(first, None, locked[0])),
        ]
        writes = [store.write(job) for store, jobs in zip(stores, batches, strict=True)
                  for job in jobs]
        async with asyncio.timeout(15):
            done = await asyncio.gather(*writes)
        assert done == [first, second, second, first]
    finally:
        for store in stores:
            await store.close()


async def _rows_read(conn: asyncpg.Connection, table: str) -> int:
    """Rows of `table` this connection's open transaction has read so far, by scans and by
    index fetches (pg_stat_xact_user_tables)."""
    return int(await conn.fetchval(
        "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
        " WHERE relname = $1", table))


async def test_the_sweep_the_lease_and_the_take_read_their_rows_once_in_a_plan_made_empty(
    replicas: list[PostgresStore], pg_dsn: str
) -> None:
    """The sweep (every replica, every WATCH), a dispatcher's lease and a timer's take lock
    their rows in a sub-select. A replica's connection keeps a statement's generic plan until
    the next ANALYZE of its tables, and a plan made while the outbox was empty (at rest, or
    vacuumed so) joined that sub-select in a loop over the outbox, once per row: the rows
    read grew with the square of the rows held (the benchmark's 300 rows: 24 ms a sweep; 3,000:
    1.9 s). Selected once, ARRAY(...), they are read a few times, however the plan goes."""
    rows = 200
    later = datetime.now(UTC) + timedelta(minutes=1)  # everything below is due by then
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("VACUUM ANALYZE outbox")
        await conn.execute("VACUUM ANALYZE deadlines")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        number = await claim(conn)
        gone = number + 1  # holds leases and no lock: a replica gone

        async def sweep_lease_take() -> dict[str, int]:
            read = {}
            async with conn.transaction():
                await replicas_module.sweep(conn, later, [gone], number)
                read["sweep"] = await _rows_read(conn, "outbox")
            async with conn.transaction():
                await PostgresTransaction(conn, number).lease_due_outbox(later, 10)
                read["lease"] = await _rows_read(conn, "outbox")
            async with conn.transaction():
                await PostgresTransaction(conn, number).take_deadlines([1, 2], later)
                read["take"] = await _rows_read(conn, "deadlines")
            return read

        await sweep_lease_take()  # planned with both tables empty
        incident_id = await replicas[0].write(
            lambda tx: tx.insert_incident(new_incident("g"), None))
        due = later - timedelta(seconds=30)  # not late yet: the replicas' watch leaves them
        await replicas[0].write(lambda tx: tx.arm(
            incident_id, [(due, "step", str(n)) for n in range(rows)]))
        await conn.execute(
            "INSERT INTO outbox (incident_id, created_at, payload, next_attempt_at,"
            " leased_from, leased_by) SELECT $1, 0, '{}', $2, CASE WHEN n % 2 = 0 THEN 0 END,"
            " CASE WHEN n % 2 = 0 THEN $3::bigint END FROM generate_series(1, $4) AS n",
            incident_id, to_us(NOW), gone, rows)
        read = await sweep_lease_take()
    finally:
        await conn.close()
    assert all(n <= 10 * rows for n in read.values()), read  # before: 40,000 to 71,000


async def test_a_write_queued_with_a_pass_waiting_for_a_channel_does_not_wait_with_it(
    replicas: list[PostgresStore],
) -> None:
    """A dispatcher pass locks its channels until it commits, and every replica's pass to the
    same URL waits for it (test_replicas_gating_one_channel_take_turns). The pass runs in a
    transaction of its own: a webhook's job queued at the same moment, which would have
    joined its batch, commits while the pass still waits; the pass then reads what the
    holder wrote."""
    channel = "e" * 64
    spent = ChannelRecord(channel, ChannelHistory(sent=(NOW,), last_page=NOW))
    locked, go = asyncio.Event(), asyncio.Event()

    async def holder(tx: Transaction) -> None:
        await tx.lock_channels([channel], NOW)
        locked.set()
        await go.wait()
        await tx.save_channels([spent])

    async def decide(tx: Transaction, rows: object) -> list[ChannelRecord]:
        return await tx.lock_channels([channel], NOW)

    held = asyncio.create_task(replicas[0].write(holder))
    await locked.wait()
    # Queued in the same turn of the loop: one writer would take both into one batch.
    waiting = asyncio.create_task(replicas[1].lease_and_decide(NOW, 10, decide))
    webhook = asyncio.create_task(replicas[1].write(
        lambda tx: tx.insert_incident(new_incident("g"), None)))
    try:
        async with asyncio.timeout(5):
            assert await webhook > 0
        assert not waiting.done()
    finally:
        go.set()
        await held
    assert await waiting == [spent]


async def test_a_small_pool_keeps_a_connection_for_reads_while_a_pass_waits(
    pg_dsn: str,
) -> None:
    """In a pool of 2, a pass waiting for another replica's channel lock and a batch of
    webhooks must not hold both connections: the passes go with the webhooks' batches there
    (PASSES_ALONE_FROM), and a read (the API, /-/ready, the timer's load) still gets one."""
    holding, small = PostgresStore(pg_dsn, pool_size=4), PostgresStore(pg_dsn, pool_size=2)
    for store in (holding, small):
        await store.open()
    channel = "f" * 64
    locked, writing, go = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def holder(tx: Transaction) -> None:
        await tx.lock_channels([channel], NOW)
        locked.set()
        await go.wait()

    async def decide(tx: Transaction, rows: object) -> list[ChannelRecord]:
        return await tx.lock_channels([channel], NOW)

    async def slow_webhook(tx: Transaction) -> int:
        number = await tx.insert_incident(new_incident("small"), None)
        writing.set()
        await go.wait()
        return number

    held = asyncio.create_task(holding.write(holder))
    await locked.wait()
    waiting = asyncio.create_task(small.lease_and_decide(NOW, 10, decide))
    await asyncio.sleep(0.2)  # the pass has its connection and waits for the lock
    webhook = asyncio.create_task(small.write(slow_webhook))
    try:
        async with asyncio.timeout(5):
            # Batched with the pass, the webhook waits its turn; on a writer of its own, it
            # holds the pool's other connection while it runs.
            await asyncio.wait([asyncio.ensure_future(writing.wait()), waiting],
                               timeout=0.5)
            assert await small.incidents(IncidentFilter(limit=1)) == []
    finally:
        go.set()
        await held
        await waiting
        await webhook
        for store in (holding, small):
            await store.close()
