"""The dispatcher on PostgreSQL, two replicas' dispatchers on one database and a fake clock:
a waiting bundle whose rows two replicas' leases split goes at its time, both parts.

When a bundle's time comes, every replica's dispatcher wakes and leases the due rows FOR
UPDATE SKIP LOCKED, so one may take some of the bundle's rows and another the rest. The
first to lock the channel sends its part; the second finds a page sent an instant ago. Its
pages waited their window too: they go at once (a second message, within the budget), not
one more bundle window later (issue 12 point 4: a page waits at most its window, a
high-urgency one at most max_hold). A transaction of the test's own holds one row locked as
the other replica's lease does, so the split is certain rather than a race.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest

from receiver.core.model import EventKind
from receiver.delivery.channels import channel_key
from receiver.delivery.dispatch import Dispatcher
from receiver.notify.notifier import Delivery, Message
from receiver.store import Transaction
from receiver.store.codec import to_us
from receiver.store.postgres.outbox import LEASE
from receiver.store.postgres.store import PostgresStore
from receiver.telemetry.metrics import Metrics
from receiver.testing import FakeClock, RecordingNotifier
from tests.test_dispatch import (
    FAR_FUTURE,
    SMS,
    WAIT,
    alert,
    eventually,
    make_config,
    new_incident,
    payload,
)


@pytest.fixture
async def replicas(pg_dsn: str) -> AsyncIterator[list[PostgresStore]]:
    stores = [PostgresStore(pg_dsn, pool_size=4) for _ in range(2)]
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()


async def open_and_page(store: PostgresStore, dispatcher: Dispatcher, now: datetime,
                        n: int) -> int:
    """Incident n, opened with one alert and an SMS page queued; `dispatcher` woken for it."""

    async def job(tx: Transaction) -> int:
        incident_id = await tx.insert_incident(new_incident(n, now), None)
        await tx.write_alerts(incident_id, [alert(n, now)], now)
        await tx.enqueue(incident_id, [payload(SMS)], now)
        return incident_id

    incident_id = await store.write(job)
    dispatcher.wake()
    return incident_id


async def test_a_bundle_split_between_two_replicas_leases_goes_at_its_time(
    replicas: list[PostgresStore], pg_dsn: str, fake_clock: FakeClock
) -> None:
    config = make_config(bundle_window=timedelta(seconds=30), max_hold=timedelta(minutes=1))
    notifier = RecordingNotifier()
    first, second = (Dispatcher(store, notifier, fake_clock, Metrics(), lambda: config)
                     for store in replicas)
    store = replicas[0]
    start = fake_clock.now()
    keys = iter(range(10))

    async def page() -> int:
        return await open_and_page(store, first, fake_clock.now(), next(keys))

    async def settled() -> bool:
        due = await store.due_notifications(fake_clock.now())
        return not due and first.in_flight == second.in_flight == 0

    first.start()
    other: asyncpg.Connection | None = None
    try:
        await page()
        await eventually(settled, "the first page")
        await fake_clock.jump(timedelta(seconds=1))
        ids = [await page(), await page()]
        await eventually(settled, "the two pages to wait for their bundle")
        rows = [row for row, _ in await store.due_notifications(start + FAR_FUTURE)]
        assert {row.next_attempt_at - start for row in rows} == {timedelta(seconds=30)}
        assert len(notifier.messages(SMS)) == 1

        # The second replica's lease holds the second page's row as the bundle's time comes:
        # the first replica's pass skips it and sends the first page alone.
        other = await asyncpg.connect(pg_dsn)
        lease = other.transaction()
        await lease.start()
        await other.execute("SELECT id FROM outbox WHERE incident_id = $1 FOR UPDATE",
                            ids[1])
        await fake_clock.jump(timedelta(seconds=29))

        async def first_part() -> bool:
            return len(notifier.messages(SMS)) == 2 and first.in_flight == 0

        await eventually(first_part, "the first replica's part of the bundle")
        [(row, _)] = await store.due_notifications(start + FAR_FUTURE)
        assert row.incident_id == ids[1]
        await lease.rollback()

        # Now the second replica decides about its part, at the same instant.
        second.start()
        second.wake()
        await eventually(settled, "the second replica's part of the bundle")
        assert len(notifier.messages(SMS)) == 3
        assert await store.due_notifications(start + FAR_FUTURE) == []
        for incident_id in ids:
            [event] = [e for e in await store.timeline(incident_id)
                       if e.kind is EventKind.NOTIFICATION_SENT]
            assert event.at - start == timedelta(seconds=30)
        # One budget: the three messages are in the channel's shared history.
        [record] = await store.write(
            lambda tx: tx.lock_channels([channel_key(SMS)], fake_clock.now()))
        assert [to_us(t) for t in record.history.sent] == [
            to_us(start), to_us(start + timedelta(seconds=30)),
            to_us(start + timedelta(seconds=30))]
    finally:
        if other is not None:
            await other.close()
        await first.stop(grace=WAIT)
        await second.stop(grace=WAIT)


class HeldNotifier(RecordingNotifier):
    """Records a send only once it is let through: until `release`, every send waits, as a
    slow channel's does, and the sends queued behind it in the URL's lane wait too."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0
        self._go = asyncio.Event()

    def release(self) -> None:
        self._go.set()

    async def send(self, url: str, message: Message) -> Delivery:
        self.waiting += 1
        try:
            await self._go.wait()
        finally:
            self.waiting -= 1
        return await super().send(url, message)


@pytest.mark.parametrize("others", [1, 0], ids=["another-replica-takes-it", "alone"])
async def test_a_page_queued_behind_a_slow_send_past_its_lease_goes_once(
    replicas: list[PostgresStore], pg_dsn: str, fake_clock: FakeClock, others: int
) -> None:
    """A replica's sends to one URL go one at a time; a page queued behind a slow one waits
    in the lane while its lease runs. Once the lease lapsed, another replica may take the
    row and send it: the page still goes once in all. The replica that queued it sends it
    only if it still holds the row when its turn comes (it renews the lease then), and its
    own later pass, finding the lapsed row due, does not send it a second time."""
    config = make_config(bundle_window=timedelta(0))
    slow, other = HeldNotifier(), RecordingNotifier()
    first = Dispatcher(replicas[0], slow, fake_clock, Metrics(), lambda: config)
    second = Dispatcher(replicas[1], other, fake_clock, Metrics(), lambda: config)
    store = replicas[0]
    start = fake_clock.now()
    keys = iter(range(10))

    async def page() -> int:
        return await open_and_page(store, first, fake_clock.now(), next(keys))

    async def leased(count: int) -> bool:
        due = await store.due_notifications(fake_clock.now())
        return not due and first.in_flight == count

    async def in_channel() -> bool:
        # In flight is not yet in the channel: the send checks its lease first, which under
        # load took longer than the test took to look (slow.waiting was 0).
        return await leased(1) and slow.waiting == 1

    first.start()
    conn: asyncpg.Connection | None = None
    try:
        ids = [await page()]
        await eventually(in_channel, "the first page's send to start")
        await fake_clock.jump(timedelta(seconds=1))
        ids.append(await page())
        await eventually(lambda: leased(2), "the second page to queue behind it")
        assert slow.waiting == 1  # the second waits for the lane, not in the channel

        # The first page's send is slow, not hung (virtual time jumps past its timeout): its
        # lease must not lapse in this test, so the test moves it on, past the jump.
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute("UPDATE outbox SET next_attempt_at = $1 WHERE incident_id = $2",
                           to_us(start + 3 * LEASE), ids[0])
        await fake_clock.jump(LEASE + timedelta(seconds=5))  # the second's lease lapsed
        if others:
            second.start()
            second.wake()
        first.wake()

        async def second_page_taken() -> bool:
            due = await store.due_notifications(fake_clock.now())
            return not due and second.in_flight == 0

        # Whichever replica's pass takes the lapsed row first: the second sends it at once,
        # or the first leaves it to the send it queued.
        await eventually(second_page_taken, "a replica to take the lapsed lease")
        slow.release()

        async def all_sent() -> bool:
            rows = await store.due_notifications(fake_clock.now() + FAR_FUTURE)
            return not rows and first.in_flight == second.in_flight == 0

        await eventually(all_sent, "every page to be sent and recorded")
        await asyncio.sleep(0.05)  # a second send of the second page would have started
        assert first.in_flight == 0
        titles = [m.title for n in (slow, other) for m in n.messages(SMS)]
        for incident_id in ids:
            assert sum(f"#{incident_id} " in t for t in titles) == 1, (incident_id, titles)
            sent = [e for e in await store.timeline(incident_id)
                    if e.kind is EventKind.NOTIFICATION_SENT]
            assert len(sent) == 1, (incident_id, sent)
    finally:
        if conn is not None:
            await conn.close()
        slow.release()
        await first.stop(grace=WAIT)
        await second.stop(grace=WAIT)


async def test_a_send_whose_turn_comes_after_the_handover_sends_only_what_it_still_holds(
    replicas: list[PostgresStore], pg_dsn: str, fake_clock: FakeClock
) -> None:
    """The others take the leases of a replica they see hung (its listener silent for
    Store.outbox_handover, replicas.HUNG) once they are that old. A replica hung while its
    page waited (SIGSTOP, a paused VM; here: a page queued behind a slow send while the
    clock runs on) checks when its send's turn comes, past the handover time and long before
    the lease lapses, that it still holds the row; the others took it and sent it: not sent
    a second time."""
    config = make_config(bundle_window=timedelta(0))
    slow, other = HeldNotifier(), RecordingNotifier()
    first = Dispatcher(replicas[0], slow, fake_clock, Metrics(), lambda: config)
    second = Dispatcher(replicas[1], other, fake_clock, Metrics(), lambda: config)
    store = replicas[0]
    handover = store.outbox_handover
    assert handover is not None
    assert handover + timedelta(seconds=1) < LEASE
    keys = iter(range(10))

    async def page() -> int:
        return await open_and_page(store, first, fake_clock.now(), next(keys))

    async def leased(count: int) -> bool:
        due = await store.due_notifications(fake_clock.now())
        return not due and first.in_flight == count

    async def in_channel() -> bool:
        # In flight is not yet in the channel: the send checks its lease first, which under
        # load took longer than the test took to look (slow.waiting was 0).
        return await leased(1) and slow.waiting == 1

    first.start()
    conn: asyncpg.Connection | None = None
    try:
        ids = [await page()]
        await eventually(in_channel, "the first page's send to start")
        ids.append(await page())
        await eventually(lambda: leased(2), "the second page to queue behind it")
        assert slow.waiting == 1
        await fake_clock.jump(handover + timedelta(seconds=1))
        # What the others' sweep does to the leases of a replica it sees hung
        # (tests/test_store_replicas.py): given back, due when they were taken.
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute("UPDATE outbox SET next_attempt_at = leased_from, leased_by = NULL"
                           " WHERE incident_id = $1", ids[1])
        second.start()
        second.wake()

        async def sent_by_the_other() -> bool:
            return len(other.messages(SMS)) == 1 and second.in_flight == 0

        await eventually(sent_by_the_other, "the other replica to send the second page")
        slow.release()

        async def all_recorded() -> bool:
            rows = await store.due_notifications(fake_clock.now() + FAR_FUTURE)
            return not rows and first.in_flight == second.in_flight == 0

        await eventually(all_recorded, "every page to be sent and recorded")
        await asyncio.sleep(0.05)  # a second send of the second page would have started
        titles = [m.title for n in (slow, other) for m in n.messages(SMS)]
        for incident_id in ids:
            assert sum(f"#{incident_id} " in t for t in titles) == 1, (incident_id, titles)
            sent = [e for e in await store.timeline(incident_id)
                    if e.kind is EventKind.NOTIFICATION_SENT]
            assert len(sent) == 1, (incident_id, sent)
    finally:
        if conn is not None:
            await conn.close()
        slow.release()
        await first.stop(grace=WAIT)
        await second.stop(grace=WAIT)


async def test_pages_queued_behind_a_slow_send_go_as_one_with_the_rows_still_held(
    replicas: list[PostgresStore], pg_dsn: str, fake_clock: FakeClock
) -> None:
    """Pages queued behind a slow send to one URL go as one message when it ends; on
    PostgreSQL that message renews the leases of every row it joins (the earliest leased
    decides) and carries only those this replica still holds: one the others took past the
    handover is theirs, sent once, by them, and the bundle is the others."""
    config = make_config(bundle_window=timedelta(0))
    slow, other = HeldNotifier(), RecordingNotifier()
    first = Dispatcher(replicas[0], slow, fake_clock, Metrics(), lambda: config)
    second = Dispatcher(replicas[1], other, fake_clock, Metrics(), lambda: config)
    store = replicas[0]
    handover = store.outbox_handover
    assert handover is not None
    keys = iter(range(10))

    async def leased(count: int) -> bool:
        due = await store.due_notifications(fake_clock.now())
        return not due and first.in_flight == count

    async def in_channel() -> bool:
        # In flight is not yet in the channel: the send checks its lease first, which under
        # load took longer than the test took to look (slow.waiting was 0).
        return await leased(1) and slow.waiting == 1

    first.start()
    conn: asyncpg.Connection | None = None
    try:
        ids: list[int] = []
        for count in range(1, 5):  # each its own pass: one message each, queued in the lane
            ids.append(await open_and_page(store, first, fake_clock.now(), next(keys)))
            await eventually(lambda count=count: leased(count), f"page {count} to be leased")
            if count == 1:
                await eventually(in_channel, "the first page's send to start")
        assert slow.waiting == 1
        await fake_clock.jump(handover + timedelta(seconds=1))
        conn = await asyncpg.connect(pg_dsn)  # the others' sweep gives the third page back
        await conn.execute("UPDATE outbox SET next_attempt_at = leased_from, leased_by = NULL"
                           " WHERE incident_id = $1", ids[2])
        second.start()
        second.wake()

        async def sent_by_the_other() -> bool:
            return len(other.messages(SMS)) == 1 and second.in_flight == 0

        await eventually(sent_by_the_other, "the other replica to send the third page")
        slow.release()

        async def all_recorded() -> bool:
            rows = await store.due_notifications(fake_clock.now() + FAR_FUTURE)
            return not rows and first.in_flight == second.in_flight == 0

        await eventually(all_recorded, "every page to be sent and recorded")
        alone, bundle = slow.messages(SMS)
        assert f"#{ids[0]} " in alone.title
        assert bundle.title.startswith("2 incidents need you")
        assert [f"#{i}" in bundle.body for i in ids] == [False, True, False, True]
        [theirs] = other.messages(SMS)
        assert f"#{ids[2]} " in theirs.title
        for n, incident_id in enumerate(ids):
            [sent] = [e for e in await store.timeline(incident_id)
                      if e.kind is EventKind.NOTIFICATION_SENT]
            assert sent.detail.get("bundled") == (2 if n in (1, 3) else None), n
    finally:
        if conn is not None:
            await conn.close()
        slow.release()
        await first.stop(grace=WAIT)
        await second.stop(grace=WAIT)
