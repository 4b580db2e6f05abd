"""A replica hung right after its commit (SIGSTOP, a blocked loop, a paused VM: its session
and advisory lock alive) holds deadlines no other replica heard of: it announces them after
the commit (store/postgres/announce.py), and the others read every deadline again only when a
replica goes. The others' sweep finds such deadlines once overdue (store/postgres/late.py)
and fires them within a second of their due time, once. On the stores with real timers, and
end to end with three ackd processes, one SIGSTOPped after its 200 with its announcement held
back. A page it leased before it froze goes from another once its listener has been silent
for HUNG (replicas.py), and not again when it resumes."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from receiver.core.clock import SystemClock
from receiver.escalation.timer import GRACE, Scheduler
from receiver.store.codec import to_us
from receiver.store.postgres.late import AGAIN, LATE, LateDeadlines
from receiver.store.postgres.replicas import HUNG, WATCH, claim
from receiver.store.postgres.store import PostgresStore
from receiver.store.postgres.transaction import PostgresTransaction
from tests.harness import wait_until
from tests.pgcluster import Cluster, fresh_database
from tests.sinks import HttpSink
from tests.test_e2e_replicas import fire, fired_at, recorded, replicas_of
from tests.test_store_replicas import new_incident, until

Fired = list[tuple[int, int, datetime]]  # (replica, deadline id, when its timer took it)


@pytest.fixture
async def timed_replicas(pg_dsn: str) -> AsyncIterator[tuple[list[PostgresStore], Fired]]:
    """Three stores, each with a timer wired as the daemon wires it (every deadline heard
    armed in it, the first try shared by the replicas alive), whose firing takes the due
    deadlines (SKIP LOCKED) and records which replica took which."""
    stores = [PostgresStore(pg_dsn, pool_size=4) for _ in range(3)]
    fired: Fired = []
    timers: list[Scheduler] = []
    for n, store in enumerate(stores):
        await store.open()

        async def fire(ids: list[int], store: PostgresStore = store, n: int = n) -> None:
            now = datetime.now(UTC)
            taken = await store.write(lambda tx: tx.take_deadlines(ids, now))
            fired.extend((n, deadline.id, now) for deadline in taken)

        timer = Scheduler(SystemClock(), fire, first_try=store.first_to_try)
        store.deadline_listeners.append(timer.arm)
        timer.start()
        timers.append(timer)
    yield stores, fired
    for timer in timers:
        await timer.stop()
    for store in stores:
        await store.close()


async def hung_replica(pg_dsn: str, stores: list[PostgresStore]) -> tuple[asyncpg.Connection, int]:
    """A replica's session holding its lock, seen alive by the others, that does nothing."""
    conn = await asyncpg.connect(pg_dsn)
    number = await claim(conn)
    async with asyncio.timeout(5):
        await until(lambda: all(number in store.alive for store in stores))
    return conn, number


async def test_a_deadline_a_hung_replica_armed_fires_on_another_within_a_second_once(
    timed_replicas: tuple[list[PostgresStore], Fired], pg_dsn: str
) -> None:
    """The hung replica commits a deadline and never announces it (as SIGSTOPped right
    after its COMMIT): another replica's timer takes it within a second of its due time,
    and only one does."""
    stores, fired = timed_replicas
    incident_id = await stores[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    hung, number = await hung_replica(pg_dsn, stores)
    try:
        due = datetime.now(UTC) + timedelta(milliseconds=300)
        tx = PostgresTransaction(hung, number)
        async with hung.transaction():
            [armed] = await tx.arm(incident_id, [(due, "step", "0:1")])
        assert tx.announcements  # what it would announce, were it not hung
        async with asyncio.timeout(10):
            await until(lambda: bool(fired))
        await asyncio.sleep(1.0)  # every timer has tried it by now: one took it
        [(_, deadline_id, at)] = fired
        assert deadline_id == armed.id
        assert LATE <= at - due < timedelta(seconds=1), at - due
        assert await stores[1].deadlines() == []
        assert number in stores[1].alive  # not taken for a replica gone
    finally:
        await hung.close()


async def test_a_late_deadline_is_handed_to_the_timer_once_then_again_after_a_while(
    timed_replicas: tuple[list[PostgresStore], Fired], pg_dsn: str
) -> None:
    """A late deadline locked by a replica hung while taking it (its transaction open) is
    skipped by the others' takes: it is handed to their timers once, not every sweep; once
    the lock goes and nothing took it, it is handed again AGAIN later, and fires once."""
    stores, fired = timed_replicas
    handed: list[tuple[int, int]] = []  # (replica, deadline id) as each sweep hands it
    for n, store in enumerate(stores):
        store.deadline_listeners.append(
            lambda deadline_id, due, n=n: handed.append((n, deadline_id)))
    incident_id = await stores[0].write(lambda tx: tx.insert_incident(new_incident("g"), None))
    hung, number = await hung_replica(pg_dsn, stores)
    try:
        due = datetime.now(UTC)
        async with hung.transaction():
            [armed] = await PostgresTransaction(hung, number).arm(
                incident_id, [(due, "step", "0:1")])
        taking = hung.transaction()
        await taking.start()
        await hung.execute("SELECT id FROM deadlines WHERE id = $1 FOR UPDATE", armed.id)
        await asyncio.sleep((LATE + timedelta(seconds=1)).total_seconds())
        assert sorted(handed) == [(n, armed.id) for n in range(3)]  # once, over 5 sweeps
        assert fired == []  # locked: skipped by every take
        await taking.rollback()  # the taker's transaction ends, having fired nothing
        async with asyncio.timeout(AGAIN + 5):
            await until(lambda: bool(fired))
        await asyncio.sleep(2 * WATCH)
        assert [deadline_id for _, deadline_id, _ in fired] == [armed.id]
        assert len(handed) > 3  # handed again; the first to do so took it
    finally:
        await hung.close()


def test_a_deadline_is_handed_when_first_late_again_after_AGAIN_and_anew_when_moved() -> None:
    late = LateDeadlines()
    due = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)
    assert late.due_to_hand([(1, to_us(due)), (2, to_us(due))], now=100.0) == [
        (1, due), (2, due)]
    assert late.due_to_hand([(1, to_us(due)), (2, to_us(due))], now=100.2) == []
    moved = due + timedelta(seconds=3)
    assert late.due_to_hand([(1, to_us(due)), (2, to_us(moved))], now=100.4) == [(2, moved)]
    assert late.due_to_hand([(1, to_us(due))], now=100.0 + AGAIN) == [(1, due)]
    assert late.due_to_hand([], now=101.0 + AGAIN) == []
    assert late.due_to_hand([(1, to_us(due))], now=101.2 + AGAIN) == [(1, due)]  # late anew


# `ackd serve` with its deadline announcements, and its dispatcher's passes, held back for
# ten minutes: what a replica hung between its commit and both leaves, whenever the SIGSTOP
# lands. (Hung after its dispatcher leased the first page, and before it sent it, it holds
# that page until the others see it hung, replicas.HUNG after the lease, a path of its own:
# test_a_page_a_replica_leased_and_froze_on_goes_from_another_once. With only the
# announcements held back the SIGSTOP sometimes landed there, on a loaded machine.)
HELD_BACK = (
    "import asyncio, runpy, sys\n"
    "from receiver.store.postgres import announce\n"
    "from receiver.store.postgres.store import PostgresStore\n"
    "announce.Announcer.__init__.__defaults__ = (600.0,)\n"
    "async def held(*args, **kwargs): await asyncio.sleep(600)\n"
    "PostgresStore.lease_and_decide = held\n"
    "sys.argv[0] = 'ackd'\n"
    "runpy.run_module('receiver', run_name='__main__', alter_sys=True)\n"
)
STEP = 3.0


async def test_a_replica_stopped_after_opening_an_incident_delays_no_step(
    tmp_path: Path, sink: HttpSink, pg_cluster: Cluster
) -> None:
    """Three ackd replicas; the one that takes the webhook announces nothing, leases
    nothing, and is SIGSTOPped after its 200. Its first page goes from another (the outbox's
    OVERDUE), step 2 fires on another within a second of its due time (not when the stopped
    one resumes), step 3 on time; after SIGCONT nothing fires twice."""
    async with fresh_database(pg_cluster) as dsn:
        ackds = replicas_of(tmp_path, dsn, sink, 3, step=STEP)
        stopped = ackds[0]
        assert stopped.argv[1:3] == ["-m", "receiver"]
        stopped.argv[1:3] = ["-c", HELD_BACK]
        try:
            await asyncio.gather(*(a.start_ready() for a in ackds))
            await fire(stopped, "HungAfterCommit")
            assert stopped.proc is not None
            stopped.proc.send_signal(signal.SIGSTOP)
            try:
                pages = await sink.wait_for(3, within=3 * STEP + 10)
                await recorded(dsn)
                [incident] = await ackds[1].incidents()
                fired = fired_at(await ackds[1].incident(incident["id"]))
            finally:
                stopped.proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(STEP)  # the resumed replica's timer finds them taken
            assert [p.path for p in sink.requests] == ["/ana", "/bo", "/cy"]
            [incident] = await ackds[2].incidents()
            timeline = (await ackds[2].incident(incident["id"]))["timeline"]
            steps = [e["detail"]["step"] for e in timeline if e["kind"] == "step_fired"]
            assert sorted(steps) == [0, 1, 2]  # each once
            # Step 2 found late (LATE), within a sweep (WATCH), and a pass; step 3 on time.
            bound = (LATE.total_seconds() + WATCH + 0.5, 1.0)
            for step in (1, 2):
                late = (fired[step] - fired[step - 1]).total_seconds() - STEP
                assert 0 <= round(late, 3) <= bound[step - 1], (step, late)
            assert pages[1].received_at - fired[1].timestamp() <= 1.0
        finally:
            for ackd in ackds:
                ackd.stop()
            for ackd in ackds:
                if "Traceback" in ackd.log():
                    print(ackd.log(), file=sys.stderr)


# `ackd serve` whose sends wait 3 s when their turn comes, before they check their lease: the
# test SIGSTOPs it in that gap, after its dispatcher leased the first page.
HELD_SEND = (
    "import asyncio, runpy, sys\n"
    "from receiver.delivery.dispatch import Dispatcher\n"
    "still_held = Dispatcher._still_held\n"
    "async def held(self, *args): await asyncio.sleep(3.0); return await still_held(self, *args)\n"
    "Dispatcher._still_held = held\n"
    "sys.argv[0] = 'ackd'\n"
    "runpy.run_module('receiver', run_name='__main__', alter_sys=True)\n"
)


async def test_a_page_a_replica_leased_and_froze_on_goes_from_another_once(
    tmp_path: Path, sink: HttpSink, pg_cluster: Cluster
) -> None:
    """Three ackd replicas; the one that takes the webhook leases the first page and is
    SIGSTOPped before sending it. Its listening connection stops beating: the others take
    the page HUNG after its lease (not the 60 s lease later) and send it; resumed, the
    stopped replica finds the page taken and does not send it again."""
    async with fresh_database(pg_cluster) as dsn:
        ackds = replicas_of(tmp_path, dsn, sink, 3, step=60.0)
        stopped = ackds[0]
        stopped.argv[1:3] = ["-c", HELD_SEND]
        conn = await asyncpg.connect(dsn)
        try:
            await asyncio.gather(*(a.start_ready() for a in ackds))
            await fire(stopped, "FrozenWithALease")

            async def leased() -> bool:
                return bool(await conn.fetchval(
                    "SELECT count(*) FROM outbox WHERE leased_by IS NOT NULL"))

            await wait_until(leased, 2.5, "the stopped replica to lease its page", 0.02)
            assert stopped.proc is not None
            stopped.proc.send_signal(signal.SIGSTOP)
            frozen = time.time()
            try:
                [page] = await sink.wait_for(1, within=HUNG + 5)
                await recorded(dsn)
            finally:
                stopped.proc.send_signal(signal.SIGCONT)
            assert page.path == "/ana"
            assert page.received_at - frozen <= HUNG + 2.0, page.received_at - frozen
            async def checked() -> bool:  # the resumed replica's send, its lease checked
                return "another replica took them: not sent here" in stopped.log()

            await wait_until(checked, 10, "the resumed replica to find its page taken")
            assert [p.path for p in sink.requests] == ["/ana"]
            [incident] = await ackds[1].incidents()
            timeline = (await ackds[1].incident(incident["id"]))["timeline"]
            assert [e["kind"] for e in timeline].count("notification_sent") == 1
        finally:
            await conn.close()
            for ackd in ackds:
                ackd.stop()
            for ackd in ackds:
                if "Traceback" in ackd.log():
                    print(ackd.log(), file=sys.stderr)


def test_a_deadline_is_late_only_once_every_live_timer_has_tried_it() -> None:
    """store/postgres/late.py cannot import the timer (a layer above the store)."""
    assert GRACE + timedelta(milliseconds=200) <= LATE
    assert timedelta(seconds=1) > LATE
