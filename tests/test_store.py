"""The SQLite store on a real file: group commit, per-job isolation, migrations, failures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import asyncpg
import pytest

from receiver.alertmanager.matchers import parse_matcher
from receiver.core.errors import StoreCorrupt, StoreUnavailable
from receiver.core.model import (
    Alert,
    AlertStatus,
    EventKind,
    GrafanaDetails,
    IncidentState,
    KnownAlert,
    MessageReason,
    OpenGroup,
    TimelineEvent,
)
from receiver.delivery.events import delivery_event, suppressed_event
from receiver.delivery.noise import ChannelHistory, Pending
from receiver.delivery.plan import Addressed
from receiver.escalation.plan import DeadlineKind, PageFate
from receiver.maintenance.domain import Window
from receiver.notify.notifier import Delivery, DeliveryStatus
from receiver.oncall.overrides import Change, Leg
from receiver.store import (
    IncidentFilter,
    NewIncident,
    OutboxMessage,
    SqliteStore,
    Transaction,
    codec,
)
from receiver.store.base import Store
from receiver.store.codec import encode_message, to_us
from receiver.store.postgres.store import PostgresStore
from receiver.store.records import ChannelRecord, OutboxRow
from receiver.store.sqlite.schema import MIGRATIONS
from tests.pgcluster import fresh_database

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def new_incident(key: str = "{}:{alertname=\"X\"}") -> NewIncident:
    return NewIncident(
        group_key=key, route_id="{}", team="payments", severity="SEV1", policy="standard",
        group_labels={"alertname": "X"}, opened_at=NOW, external_url="http://am", summary="s",
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each test of the store's interface runs on both stores: the SQLite file, and a fresh
    database of the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        s: Store = SqliteStore(tmp_path / "data" / "ackd.db")
        await s.open()
        yield s
        await s.close()
        return
    async with fresh_database(request.getfixturevalue("pg_cluster")) as dsn:
        s = PostgresStore(dsn)
        await s.open()
        yield s
        await s.close()


async def insert_outbox_payloads(store: Store, incident_id: int, payloads: list[str]) -> None:
    """Outbox rows as earlier releases (or damage) left them, written past the store."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            conn.executemany(
                "INSERT INTO outbox (incident_id, created_at, payload, next_attempt_at)"
                " VALUES (?, 0, ?, 0)", [(incident_id, text) for text in payloads],
            )
        return
    assert isinstance(store, PostgresStore)
    conn = await asyncpg.connect(store._dsn)
    try:
        await conn.executemany(
            "INSERT INTO outbox (incident_id, created_at, payload, next_attempt_at)"
            " VALUES ($1, 0, $2, 0)", [(incident_id, text) for text in payloads],
        )
    finally:
        await conn.close()


async def test_write_then_read_back(store: SqliteStore) -> None:
    alert = Alert("0123456789abcdef", AlertStatus.FIRING, {"alertname": "X"}, {"summary": "s"},
                  NOW - timedelta(minutes=1), None, "http://prom/graph")

    async def job(tx: Transaction) -> int:
        incident_id = await tx.insert_incident(new_incident(), None)
        await tx.write_alerts(incident_id, [alert], NOW)
        await tx.append(incident_id, [TimelineEvent(NOW, EventKind.OPENED, "alertmanager")])
        return incident_id

    incident_id = await store.write(job)
    incident = await store.incident(incident_id)
    assert incident.state is IncidentState.TRIGGERED
    assert incident.opened_at == NOW  # microseconds survive
    assert await store.alerts(incident_id) == [alert]
    assert [e.kind for e in await store.timeline(incident_id)] == [EventKind.OPENED]
    assert [i.id for i in await store.incidents(IncidentFilter(open_only=True))] == [incident_id]
    assert await store.incidents(IncidentFilter(state=IncidentState.RESOLVED)) == []


async def test_firing_alerts_without_grafana_details_bind_neither_null(tmp_path: Path) -> None:
    """A new incident's alerts, firing with no Grafana details, go in by a statement that
    writes their end and Grafana column as NULL itself (nothing bound for them); alerts with
    either go in by the one that binds both, in the same write as the others."""
    store = SqliteStore(tmp_path / "ackd.db")
    await store.open()
    try:
        start = NOW - timedelta(minutes=1)
        firing = [Alert(f"{n:016x}", AlertStatus.FIRING, {"alertname": f"A{n}"}, {"s": "x"},
                        start, None, "http://g") for n in range(3)]
        ended = replace(firing[1], status=AlertStatus.RESOLVED, ends_at=NOW)
        statements: list[str] = []
        assert store._writer is not None
        store._writer.set_trace_callback(statements.append)
        try:
            bare = await store.write(lambda tx: _opened_with(tx, "bare", firing))
            mixed = await store.write(lambda tx: _opened_with(tx, "mixed", [firing[0], ended]))
        finally:
            store._writer.set_trace_callback(None)
        inserts = [s for s in statements if s.startswith("INSERT INTO alerts")]
        assert ["nullif" in s for s in inserts] == [False] * 3 + [True] * 2
        assert await store.alerts(bare) == firing
        assert await store.alerts(mixed) == [firing[0], ended]
    finally:
        await store.close()


async def _opened_with(tx: Transaction, key: str, alerts: list[Alert]) -> int:
    incident_id = await tx.insert_incident(new_incident(key), None)
    await tx.write_alerts(incident_id, alerts, NOW)
    return incident_id


async def test_many_rows_in_one_write_keep_their_order_and_an_episode_named_twice_its_last(
    store: Store,
) -> None:
    """PostgreSQL writes a job's alerts and events in one statement each (arrays): the
    events keep the order given, and an episode reported twice in one write ends as the
    second report says, as two upserts one after the other leave it."""
    start = NOW - timedelta(minutes=1)
    firing = [Alert(f"{n:016x}", AlertStatus.FIRING, {"alertname": f"A{n}"}, {}, start, None)
              for n in range(12)]
    again = replace(firing[3], status=AlertStatus.RESOLVED, ends_at=NOW,
                    annotations={"summary": "over"})
    kinds = [EventKind.OPENED, EventKind.ALERT_ADDED, EventKind.ALERT_RESOLVED] * 5

    async def job(tx: Transaction) -> int:
        incident_id = await tx.insert_incident(new_incident(), None)
        await tx.write_alerts(incident_id, [*firing, again], NOW)
        await tx.append(incident_id, [TimelineEvent(NOW, kind, f"actor{n}")
                                      for n, kind in enumerate(kinds)])
        return incident_id

    incident_id = await store.write(job)
    held = {a.fingerprint: a for a in await store.alerts(incident_id)}
    assert held == {a.fingerprint: a for a in [*firing[:3], again, *firing[4:]]}
    events = await store.timeline(incident_id)
    assert [(e.kind, e.actor) for e in events] == [
        (kind, f"actor{n}") for n, kind in enumerate(kinds)]


async def test_grafana_details_are_kept_with_their_alert(store: SqliteStore) -> None:
    details = GrafanaDetails(silence_url="https://g/silence", dashboard_url="https://g/d",
                             panel_url="https://g/d?viewPanel=2", image_url="https://g/i.png",
                             values={"B": 44.239, "C": None}, value_string="[ value=44.239 ]")
    start = NOW - timedelta(minutes=1)
    grafana = Alert("00000000000000aa", AlertStatus.FIRING, {"alertname": "G"}, {}, start, None,
                    "https://g/rule", details)
    plain = Alert("00000000000000bb", AlertStatus.FIRING, {"alertname": "P"}, {}, start, None)
    resolved = replace(grafana, status=AlertStatus.RESOLVED, ends_at=NOW,
                       grafana=replace(details, values={"B": 1.5}))

    async def job(tx: Transaction) -> int:
        incident_id = await tx.insert_incident(new_incident(), None)
        await tx.write_alerts(incident_id, [grafana, plain], NOW)
        return incident_id

    incident_id = await store.write(job)
    assert await store.alerts(incident_id) == [grafana, plain]
    # A later report of the same episode brings its own values (Grafana's, as resolved).
    await store.write(lambda tx: tx.write_alerts(incident_id, [resolved], NOW))
    assert sorted(await store.alerts(incident_id), key=lambda a: a.fingerprint) == [
        resolved, plain]


async def test_concurrent_jobs_share_commits_and_fail_alone(store: SqliteStore) -> None:
    async def good(tx: Transaction) -> int:
        return await tx.insert_incident(new_incident(f"k{id(tx)}{os.urandom(4).hex()}"), None)

    async def bad(tx: Transaction) -> int:
        await tx.insert_incident(new_incident("poison"), None)
        raise RuntimeError("this job fails after writing")

    jobs = [store.write(good) for _ in range(50)] + [store.write(bad)]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(results[-1], RuntimeError)
    assert all(isinstance(r, int) for r in results[:-1])
    assert store.stats.commits < 51  # group commit: many jobs per transaction
    found = await store.incidents(IncidentFilter(limit=1000))
    assert len(found) == 50
    assert all(i.group_key != "poison" for i in found)  # the failed job left nothing behind


async def test_a_job_alone_in_its_batch_fails_without_a_trace(tmp_path: Path) -> None:
    """A job alone in its batch runs without a savepoint; when it fails, the transaction it
    had to itself is rolled back: nothing it wrote stays, nothing counts as a commit, and the
    writer goes on with the next batch."""
    store = SqliteStore(tmp_path / "ackd.db")
    await store.open()
    try:
        kept = await store.write(lambda tx: tx.insert_incident(new_incident("kept"), None))
        alert = Alert("fp1", AlertStatus.FIRING, {"alertname": "X"}, {}, NOW, None, "")

        async def bad(tx: Transaction) -> None:
            await tx.update_incident(kept, NOW + timedelta(hours=1), summary="changed")
            poison = await tx.insert_incident(new_incident("poison"), None)
            await tx.write_alerts(poison, [alert], NOW)
            raise RuntimeError("this job fails after writing")

        statements: list[str] = []
        commits = store.stats.commits
        assert store._writer is not None
        store._writer.set_trace_callback(statements.append)
        try:
            with pytest.raises(RuntimeError):
                await store.write(bad)
        finally:
            store._writer.set_trace_callback(None)
        assert not [s for s in statements if s.startswith(("SAVEPOINT", "COMMIT"))]
        assert "ROLLBACK" in statements
        assert store.stats.commits == commits
        assert [i.group_key for i in await store.incidents(IncidentFilter(limit=10))] == ["kept"]
        assert (await store.incident(kept)).summary == new_incident("kept").summary
        # The next job, alone too, commits as usual, and reads what was committed only.
        again = await store.write(lambda tx: tx.insert_incident(new_incident("poison"), None))
        assert (await store.write(lambda tx: tx.find_incident(kept))) == await store.incident(kept)
        assert await store.alerts(again) == []
        assert store.stats.commits == commits + 2
    finally:
        await store.close()


async def test_one_open_incident_per_group_is_enforced(store: SqliteStore) -> None:
    await store.write(lambda tx: tx.insert_incident(new_incident("g"), None))
    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await store.write(lambda tx: tx.insert_incident(new_incident("g"), None))


async def test_reopen_keeps_data_and_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "ackd.db"
    first = SqliteStore(path)
    await first.open()
    incident_id = await first.write(lambda tx: tx.insert_incident(new_incident(), None))
    await first.close()
    second = SqliteStore(path)
    await second.open()
    assert (await second.incident(incident_id)).id == incident_id
    await second.close()


async def test_an_outbox_id_is_never_given_again_also_after_migration_16(
    tmp_path: Path,
) -> None:
    """A deleted outbox row's id is not the next row's (the dispatcher took such a row for
    the deleted one, still in flight, and never sent it: session 11). A file of migration 15
    keeps its rows, leases and ids through the copy migration 16 makes."""
    path = tmp_path / "ackd.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.create_function("ackd_contact_index", 3, lambda *_: None)  # migration 4's, no rows
    for script in MIGRATIONS[:15]:
        old.executescript(script)
    old.execute("PRAGMA user_version=15")
    old.execute("INSERT INTO incidents (id, group_key, route_id, team, severity, policy,"
                " group_labels, state, opened_at, updated_at) VALUES (1, 'g', 'r', 'ops',"
                " 'SEV1', 'p', '{}', 'triggered', 0, 0)")
    page = OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                         reason=MessageReason.TRIGGERED, step=0)
    for n in (1, 2):
        old.execute("INSERT INTO outbox (id, incident_id, created_at, payload, attempts,"
                    " next_attempt_at, gated) VALUES (?, 1, 0, ?, ?, 0, 1)",
                    (n, encode_message(page), n))
    old.close()
    store = SqliteStore(path)
    await store.open()
    try:
        rows = [row for row, _ in await store.due_notifications(NOW)]
        assert [(r.id, r.attempts, r.gated, r.message) for r in rows] == \
            [(1, 1, True, page), (2, 2, True, page)]
        await store.write(lambda tx: tx.finish_outbox([2]))
        await store.write(lambda tx: tx.enqueue(1, [page, page], NOW))
        assert [row.id for row, _ in await store.due_notifications(NOW)] == [1, 3, 4]
        await store.write(lambda tx: tx.finish_outbox([4]))
        await store.write(lambda tx: tx.enqueue(1, [page], NOW))
        assert [row.id for row, _ in await store.due_notifications(NOW)] == [1, 3, 5]
    finally:
        await store.close()


async def test_a_database_of_an_earlier_schema_is_migrated_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ackd.db"
    first = SqliteStore(path)
    await first.open()
    incident_id = await first.write(lambda tx: tx.insert_incident(new_incident(), None))
    page = OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                         reason=MessageReason.TRIGGERED, step=0)
    await first.write(lambda tx: tx.enqueue(incident_id, [page], NOW))
    await first.close()
    # Take the file back to schema 1, as an ackd of that release left it.
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("DROP INDEX outbox_due")
    old.execute("DROP INDEX outbox_leased")
    old.execute("ALTER TABLE outbox DROP COLUMN leased_by")
    old.execute("DROP INDEX outbox_by_incident")
    old.execute("ALTER TABLE alerts DROP COLUMN grafana")
    old.execute("ALTER TABLE outbox DROP COLUMN leased_from")
    old.execute("DROP TABLE schedule_overrides")
    old.execute("DROP TABLE handoff_notices")
    old.execute("DROP TABLE heartbeats")
    old.execute("DROP TABLE maintenance")
    old.execute("DROP TABLE incident_roles")
    old.execute("DROP TABLE stale_reports")
    old.execute("DROP TABLE calendar_feeds")
    old.execute("DROP TABLE channel_histories")
    old.execute("DROP TABLE held_back")
    old.execute("ALTER TABLE outbox DROP COLUMN gated")
    old.execute("DROP INDEX deadlines_due")
    old.execute("PRAGMA user_version=1")
    old.close()
    second = SqliteStore(path)
    await second.open()
    [(row, incident)] = await second.due_notifications(NOW)
    assert row.message == page
    assert incident is not None
    assert incident.id == incident_id
    await second.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    # The dispatcher's reads, and the check for a page still waiting, go through the indexes.
    due = check.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE next_attempt_at <= 0"
        " ORDER BY next_attempt_at, id LIMIT 1"
    ).fetchall()
    waiting = check.execute(
        "EXPLAIN QUERY PLAN SELECT 1 FROM outbox WHERE incident_id = 1 LIMIT 1"
    ).fetchall()
    check.close()
    assert "INDEX outbox_due" in str(due), due
    assert "INDEX outbox_by_incident" in str(waiting), waiting


# Payloads as earlier releases wrote them (after migration 4 replaced URLs by contacts).
OLD_PAYLOADS = [
    # a page, before pages carried their run
    ('{"recipient": "ana", "recipient_kind": "user", "short": false, "reason": "triggered",'
     ' "step": 0, "cycle": 0, "contact": 1}',
     OutboxMessage(recipient="ana", recipient_kind="user", contact=1,
                   reason=MessageReason.TRIGGERED, step=0)),
    # a reminder page of a later run
    ('{"contact": 0, "cycle": 2, "reason": "re_escalated", "recipient": "ana",'
     ' "recipient_kind": "user", "run": 3, "short": true, "step": 1}',
     OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                   reason=MessageReason.RE_ESCALATED, short=True, step=1, cycle=2, run=3)),
    # a note to a paged person
    ('{"actor": "bo", "contact": 0, "reason": "resolved", "recipient": "ana",'
     ' "recipient_kind": "user", "short": true, "step": null}',
     OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                   reason=MessageReason.RESOLVED, short=True, actor="bo")),
    # a stakeholder channel
    ('{"contact": 2, "reason": "stakeholder_declared", "recipient": "exec",'
     ' "recipient_kind": "channel", "short": false, "step": null}',
     OutboxMessage(recipient="exec", recipient_kind="channel", contact=2,
                   reason=MessageReason.STAKEHOLDER_DECLARED)),
    # a stale note
    ('{"actor": "stale", "contact": 0, "reason": "stale", "recipient": "ana",'
     ' "recipient_kind": "user", "short": false, "stale_after": 10800.0, "step": null}',
     OutboxMessage(recipient="ana", recipient_kind="user", contact=0, reason=MessageReason.STALE,
                   actor="stale", stale_after=10800.0)),
    # migration 4 found no contact for its URL
    ('{"recipient": "ana", "recipient_kind": "user", "short": false, "reason": "triggered",'
     ' "step": 0, "cycle": 0, "run": 0, "contact": null}',
     OutboxMessage(recipient="ana", recipient_kind="user", contact=None,
                   reason=MessageReason.TRIGGERED, step=0, run=0)),
]


async def test_outbox_rows_of_earlier_releases_decode(store: SqliteStore) -> None:
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    await insert_outbox_payloads(store, incident_id, [text for text, _ in OLD_PAYLOADS])
    rows = [row for row, _ in await store.due_notifications(NOW)]
    assert [row.message for row in rows] == [message for _, message in OLD_PAYLOADS]
    assert all(row.unreadable == "" for row in rows)


async def test_an_outbox_row_that_cannot_be_read_says_why(store: SqliteStore) -> None:
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    broken = ['{"recipient": "ana", "recipient_kind": "user", "reason": "no_such_reason"}',
              '{"recipient": "ana", "reason": "triggered"}', "{not json"]
    await insert_outbox_payloads(store, incident_id, broken)
    rows = [row for row, _ in await store.due_notifications(NOW)]
    assert [row.message for row in rows] == [None, None, None]
    assert "`$.reason`" in rows[0].unreadable
    assert "recipient_kind" in rows[1].unreadable
    assert rows[2].unreadable.startswith("its stored payload cannot be read: ")


def page(who: str, run: int = 1, cycle: int = 0, step: int = 0,
         kind: Literal["user", "channel"] = "user") -> OutboxMessage:
    return OutboxMessage(recipient=who, recipient_kind=kind, contact=0,
                         reason=MessageReason.RE_ESCALATED, step=step, cycle=cycle, run=run)


async def test_a_steps_pages_are_told_by_person_and_fate_of_that_run_and_cycle_only(
    store: Store,
) -> None:
    """What escalation.delivery_failed decides on: the events the dispatcher writes (sent,
    failed, suppressed), outbox rows and delayed contacts still to go (pending), each person
    and fate once; a page of another run, cycle or step, to a channel, or an event naming
    nobody (the escalation's own `escalating_early`), does not count."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    sent, failed = Delivery(DeliveryStatus.SUCCESS, 0.1), Delivery(DeliveryStatus.FAILURE, 0.1)
    held = Addressed(OutboxRow(1, incident_id, NOW, page("bo"), 0, NOW), page("bo"), "json://b")
    events = [
        delivery_event(page("ana", run=0), "json://a", 0, sent, 1, NOW),  # run 0
        delivery_event(page("erin"), "json://e", 0, failed, 1, NOW),
        delivery_event(page("erin"), "json://e", 1, failed, 1, NOW),  # her retry
        delivery_event(page("erin", cycle=1), "json://e", 0, sent, 1, NOW),
        delivery_event(page("fay", step=1), "json://f", 0, sent, 1, NOW),
        delivery_event(page("ops", kind="channel"), "json://o", 0, sent, 1, NOW),
        suppressed_event(held, "rate_limited", NOW),
        TimelineEvent(NOW, EventKind.NOTIFICATION_FAILED, "ackd",
                      {"escalating_early": True, "step": 0, "cycle": 0, "run": 1}),
    ]
    await store.write(lambda tx: tx.append(incident_id, events))
    await store.write(lambda tx: tx.enqueue(incident_id, [
        page("cy"), page("cy", run=0), page("gus", cycle=1), page("ops", kind="channel"),
    ], NOW))
    await store.write(lambda tx: tx.arm(incident_id, [
        (NOW, "contact", "1:0:0:ana:1"), (NOW, "contact", "1:0:1:dee:1"),
        (NOW, "contact", "11:0:0:hal:1"), (NOW, "contact", "0:1:0:ivy:1"),
    ]))

    async def fates(run: int, cycle: int, step: int) -> list[tuple[str, PageFate]]:
        return sorted(await store.write(lambda tx: tx.step_pages(incident_id, run, cycle, step)))

    assert await fates(1, 0, 0) == [("ana", PageFate.PENDING), ("bo", PageFate.SUPPRESSED),
                                    ("cy", PageFate.PENDING), ("erin", PageFate.FAILED)]
    assert await fates(0, 0, 0) == [("ana", PageFate.SENT), ("cy", PageFate.PENDING)]
    assert await fates(1, 1, 0) == [("erin", PageFate.SENT), ("gus", PageFate.PENDING)]
    assert await fates(1, 0, 1) == [("dee", PageFate.PENDING), ("fay", PageFate.SENT)]
    assert await fates(2, 0, 0) == []
    # Leased to a send (in flight), a page is still pending; finished, it is not.
    leased = await store.lease_due_notifications(NOW, 100)
    assert len(leased) == 4
    assert ("cy", PageFate.PENDING) in await fates(1, 0, 0)
    await store.write(lambda tx: tx.cancel(incident_id, ["contact"]))
    for row, _ in leased:
        await store.write(lambda tx, row_id=row.id: tx.finish_outbox([row_id]))
    assert await fates(1, 0, 0) == [("bo", PageFate.SUPPRESSED), ("erin", PageFate.FAILED)]


async def test_paged_recipients_are_those_sent_to_then_those_in_flight(store: Store) -> None:
    """A page leased to a send counts as paged (its person may have it already); one still
    queued, a note, a page to a channel do not."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))

    def page(who: str, kind: str = "user",
             reason: MessageReason = MessageReason.TRIGGERED) -> OutboxMessage:
        return OutboxMessage(recipient=who, recipient_kind="user" if kind == "user" else
                             "channel", contact=0, reason=reason, step=0)

    sent = TimelineEvent(NOW, EventKind.NOTIFICATION_SENT, "ackd",
                         {"recipient": "zed", "recipient_kind": "user", "reason": "triggered"})
    await store.write(lambda tx: tx.append(incident_id, [sent]))
    await store.write(lambda tx: tx.enqueue(incident_id, [
        page("bo"), page("ana"), page("zed"), page("ops-chat", kind="channel"),
        page("carl", reason=MessageReason.ACKNOWLEDGED),
    ], NOW))
    later = NOW + timedelta(minutes=5)
    await store.write(lambda tx: tx.enqueue(incident_id, [page("dee")], later))

    async def paged() -> list[str]:
        return await store.write(lambda tx: tx.paged_recipients(incident_id))

    assert await paged() == ["zed"]  # queued is not paged: it would be suppressed
    await store.lease_due_notifications(NOW, 100)
    assert await paged() == ["zed", "bo", "ana"]


async def test_events_since_are_the_incidents_own_from_that_instant(store: Store) -> None:
    one = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    other = await store.write(lambda tx: tx.insert_incident(new_incident("other"), None))
    events = [TimelineEvent(NOW + timedelta(minutes=m), EventKind.NOTE, who, {"text": str(m)})
              for m, who in ((0, "ana"), (5, "bo"), (9, "cy"))]
    await store.write(lambda tx: tx.append(one, events))
    await store.write(lambda tx: tx.append(other, [events[2]]))
    since = await store.write(lambda tx: tx.events_since(one, NOW + timedelta(minutes=5)))
    assert since == events[1:]
    assert await store.write(lambda tx: tx.events_since(other, NOW + timedelta(minutes=10))) == []


async def test_deadlines_are_idempotent_and_taken_once(store: SqliteStore) -> None:
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    due = NOW + timedelta(minutes=5)
    armed = await store.write(lambda tx: tx.arm(incident_id, [(NOW, "step", "0:0")]))
    again = await store.write(lambda tx: tx.arm(incident_id, [(due, "step", "0:0")]))
    assert armed[0].id == again[0].id  # the same logical deadline, moved
    # The timer heap still holds the old entry (due NOW): it must not fire the moved deadline.
    assert await store.write(lambda tx: tx.take_deadlines([armed[0].id], NOW)) == []
    [taken] = await store.write(lambda tx: tx.take_deadlines([armed[0].id], due))
    assert taken.due == due
    assert await store.write(lambda tx: tx.take_deadlines([armed[0].id], due)) == []
    # Several at once: those due, in the order asked; not those later, nor unknown ids.
    more = await store.write(lambda tx: tx.arm(incident_id, [
        (NOW, "step", "1:0"), (NOW, "step", "2:0"), (due, "step", "3:0")]))
    asked = [more[2].id, 999, more[1].id, more[0].id]
    taken_now = await store.write(lambda tx: tx.take_deadlines(asked, NOW))
    assert [d.id for d in taken_now] == [more[1].id, more[0].id]


async def test_deadlines_armed_in_the_job_that_opened_their_incident_are_one_per_kind_and_key(
    store: Store,
) -> None:
    """SQLite inserts the first deadline of a kind for an incident its batch inserted without
    the upsert: arming the same (kind, key) again in that job moves it, under the same id."""
    due = NOW + timedelta(minutes=5)

    async def job(tx: Transaction) -> list[Any]:
        incident_id = await tx.insert_incident(new_incident(), None)
        first = await tx.arm(incident_id, [(NOW, "step", "0:0"), (NOW, "stale", "r")])
        again = await tx.arm(incident_id, [(due, "step", "0:0"), (NOW, "step", "1:0")])
        return [*first, *again]

    step, stale, moved, other = await store.write(job)
    assert (moved.id, moved.due) == (step.id, due)
    assert len({step.id, stale.id, other.id}) == 3
    assert sorted(await store.deadlines()) == sorted(
        [(step.id, due), (stale.id, NOW), (other.id, NOW)])
    taken = await store.write(lambda tx: tx.take_deadlines([step.id, stale.id, other.id], NOW))
    assert [(d.id, d.kind, d.key) for d in taken] == [(stale.id, "stale", "r"),
                                                      (other.id, "step", "1:0")]


async def test_unwritable_store_answers_unavailable_then_recovers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ackd.db", busy_timeout_ms=50)
    await store.open()
    blocker = sqlite3.connect(tmp_path / "ackd.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: "database is locked"
    with pytest.raises(StoreUnavailable, match="locked"):
        await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    blocker.execute("ROLLBACK")
    blocker.close()
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    assert (await store.incident(incident_id)).id == incident_id
    assert store.stats.failures == 1
    await store.close()


async def test_write_after_close_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ackd.db")
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.write(lambda tx: tx.insert_incident(new_incident(), None))


async def test_incidents_a_batch_remembers_are_what_the_store_holds(store: SqliteStore) -> None:
    """Transaction.incident answers from what this batch wrote; it must equal a fresh read."""
    later = NOW + timedelta(minutes=3)

    async def job(tx: Transaction) -> tuple[object, object, object]:
        incident_id = await tx.insert_incident(new_incident(), None)
        inserted = await tx.incident(incident_id)
        await tx.update_incident(incident_id, later, state=IncidentState.ACKNOWLEDGED,
                                 acknowledged_at=later, acknowledged_by="ana",
                                 truncated_alerts=4)
        return incident_id, inserted, await tx.incident(incident_id)

    incident_id, inserted, updated = await store.write(job)
    assert updated == await store.incident(incident_id)
    assert inserted == replace(updated, state=IncidentState.TRIGGERED, updated_at=NOW,
                               acknowledged_at=None, acknowledged_by=None, truncated_alerts=0)


async def test_a_resolution_nobody_held_clears_the_let_go_acknowledgement(store: Store) -> None:
    """Acknowledged, then triggered again (an unack), then resolved: the store holds no
    acknowledger, in the batch that wrote it and in a fresh read (NULLs through PostgreSQL's
    held update too); one resolved while held keeps its holder."""
    later = NOW + timedelta(minutes=3)

    async def job(tx: Transaction) -> tuple[int, int]:
        let_go = await tx.insert_incident(new_incident("{}:{a}"), None)
        held = await tx.insert_incident(new_incident("{}:{b}"), None)
        for number in (let_go, held):
            await tx.update_incident(number, NOW, state=IncidentState.ACKNOWLEDGED,
                                     acknowledged_at=NOW, acknowledged_by="ana")
        await tx.update_incident(let_go, NOW, state=IncidentState.TRIGGERED)
        for number in (let_go, held):
            incident = await tx.incident(number)
            await tx.update_incident(number, later, **incident.resolution("bo", later))
        return let_go, held

    let_go, held = await store.write(job)
    found = await store.incident(let_go)
    assert (found.state, found.resolved_by, found.resolved_at, found.acknowledged_by,
            found.acknowledged_at) == (IncidentState.RESOLVED, "bo", later, None, None)
    assert (found.resolved_unacknowledged, found.acknowledgement_stands) == (True, False)
    found = await store.incident(held)
    assert (found.acknowledged_by, found.acknowledged_at) == ("ana", NOW)
    assert (found.resolved_unacknowledged, found.acknowledgement_stands) == (False, True)


async def test_a_failed_job_leaves_no_remembered_incident(store: SqliteStore) -> None:
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))

    async def failing(tx: Transaction) -> None:
        await tx.incident(incident_id)
        await tx.update_incident(incident_id, NOW, state=IncidentState.RESOLVED)
        raise RuntimeError("the job fails after its update")

    async def reader(tx: Transaction) -> IncidentState:
        return (await tx.incident(incident_id)).state

    results = await asyncio.gather(store.write(failing), store.write(reader),
                                   return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert results[1] is IncidentState.TRIGGERED


async def test_a_row_the_batch_read_is_updated_in_place_and_an_unknown_one_upserted(
    tmp_path: Path,
) -> None:
    """SQLite: a resolution of an alert whose row open_group read in the batch is an UPDATE
    (no labels bound); a report of another episode, or of a row the batch has not read, goes
    through the upsert; and a row believed read but missing is still written."""
    store = SqliteStore(tmp_path / "ackd.db")
    await store.open()
    try:
        start = NOW - timedelta(minutes=5)
        a = Alert("00000000000000aa", AlertStatus.FIRING, {"alertname": "A"}, {"n": "1"},
                  start, None, "http://a")
        b = replace(a, fingerprint="00000000000000bb", labels={"alertname": "B"})
        c = replace(a, fingerprint="00000000000000cc", labels={"alertname": "C"})

        async def opened(tx: Transaction) -> int:
            incident_id = await tx.insert_incident(new_incident("g"), None)
            await tx.write_alerts(incident_id, [a, b], NOW)
            return incident_id

        incident_id = await store.write(opened)
        resolved_a = replace(a, status=AlertStatus.RESOLVED, ends_at=NOW, annotations={"n": "2"})
        later_b = replace(b, starts_at=NOW)  # another episode of b: a row of its own
        statements: list[str] = []
        assert store._writer is not None
        store._writer.set_trace_callback(statements.append)

        async def resolve(tx: Transaction) -> None:
            assert await tx.open_group("g") is not None
            await tx.write_alerts(incident_id, [resolved_a, later_b], NOW)
            # A key the batch believes it read, with no row behind it: written all the same.
            tx._alert_keys[incident_id].add((c.fingerprint, to_us(c.starts_at)))  # type: ignore[attr-defined]
            await tx.write_alerts(incident_id, [c], NOW)

        await store.write(resolve)
        store._writer.set_trace_callback(None)
        writes = [s.split(" (")[0].split(" SET")[0] for s in statements
                  if s.startswith(("INSERT INTO alerts", "UPDATE alerts"))]
        # resolved_a updated; later_b inserted; c tried as an update, then upserted
        assert writes == ["UPDATE alerts", "INSERT INTO alerts", "UPDATE alerts",
                          "INSERT INTO alerts"]
        held = await store.alerts(incident_id)
        assert sorted(held, key=lambda x: (x.fingerprint, x.starts_at)) == [
            resolved_a, b, later_b, c]
    finally:
        await store.close()


async def test_a_moved_start_keeps_one_row_and_the_past_knows_every_closed_episode(
    store: SqliteStore,
) -> None:
    """An episode whose start moved back stays one row under its earliest start; the past of a
    group holds what Alertmanager resolved, and what was still firing when a person resolved
    its incident (over at that moment), but never what is still firing in the open one."""
    fp, labels = "0123456789abcdef", {"alertname": "X"}
    t1, t0 = NOW - timedelta(minutes=1), NOW - timedelta(minutes=3)
    firing = Alert(fp, AlertStatus.FIRING, labels, {}, t1, None)

    async def first(tx: Transaction) -> int:
        closed = await tx.insert_incident(new_incident("g"), None)
        await tx.write_alerts(closed, [replace(firing, fingerprint="fedcba9876543210")], NOW)
        await tx.update_incident(closed, NOW, state=IncidentState.RESOLVED, resolved_at=NOW)
        incident_id = await tx.insert_incident(new_incident("g"), closed)
        await tx.write_alerts(incident_id, [firing], NOW)
        await tx.move_alert_starts(incident_id, [(fp, t1, t0)])
        await tx.write_alerts(incident_id, [replace(firing, starts_at=t0)], NOW)
        return incident_id

    incident_id = await store.write(first)
    assert [a.starts_at for a in await store.alerts(incident_id)] == [t0]

    async def read(tx: Transaction) -> object:
        return (await tx.open_group("g"),
                await tx.past_episodes("g", [fp, "fedcba9876543210"]))

    open_group, past = await store.write(read)
    assert open_group.alerts[fp].starts_at == t0  # type: ignore[attr-defined]
    assert past == {"fedcba9876543210": [(t1, NOW)]}
    resolved = replace(firing, starts_at=t0, status=AlertStatus.RESOLVED, ends_at=NOW)
    await store.write(lambda tx: tx.write_alerts(incident_id, [resolved], NOW))
    _, past = await store.write(read)
    assert past == {"fedcba9876543210": [(t1, NOW)], fp: [(t0, NOW)]}
# -- a damaged file: refused at start, and a damaged page found later fails only its job -------


async def filled(db: Path, count: int) -> None:
    """A closed store holding `count` incidents, long enough to fill many pages."""
    store = SqliteStore(db)
    await store.open()

    async def job(tx: Transaction) -> None:
        for n in range(count):
            await tx.insert_incident(replace(new_incident(f"k{n}"), summary="s" * 500), None)

    await store.write(job)
    await store.close()  # the last connection: the WAL is checkpointed into the file


def corrupt_page(db: Path, table: str = "incidents") -> int:
    """Overwrite the header of a leaf page of `table` in the middle of the file, as a torn write
    or a bad sector would leave it; the page's number."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = [p for (p,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
            (table,),
        )]
    assert len(pages) > 4
    page = pages[len(pages) // 2]
    with db.open("r+b") as file:
        file.seek((page - 1) * size)
        file.write(b"\xff" * 64)
    return page


async def test_a_damaged_file_is_refused_at_start_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "ackd.db"
    await filled(db, 200)
    corrupt_page(db)
    store = SqliteStore(db)
    with pytest.raises(StoreCorrupt, match=f"store {db} is damaged: .*restore it from a backup"):
        await store.open()
    await store.close()


async def test_a_file_that_is_no_database_is_refused_at_start(tmp_path: Path) -> None:
    db = tmp_path / "ackd.db"
    db.write_bytes(b"not a database, but a file someone copied here by mistake" * 100)
    with pytest.raises(StoreCorrupt, match="is damaged: file is not a database"):
        await SqliteStore(db).open()


async def test_a_damaged_page_found_while_serving_is_known_until_restart(tmp_path: Path) -> None:
    db = tmp_path / "ackd.db"
    await filled(db, 200)
    corrupt_page(db)
    store = SqliteStore(db, check_integrity=False)  # damage that appears while ackd runs
    await store.open()
    try:
        async def read_every_incident(tx: Transaction) -> None:
            for number in range(1, 201):
                await tx.find_incident(number)

        async def open_one(tx: Transaction) -> int:
            return await tx.insert_incident(new_incident("new"), None)

        await store.writable()  # nothing known yet
        # One batch: the job that reads the damaged page, then one that does not need it.
        damaged, opened = await asyncio.gather(
            store.write(read_every_incident), store.write(open_one), return_exceptions=True
        )
        assert isinstance(damaged, StoreUnavailable), damaged
        assert "malformed" in str(damaged)
        # SQLite fails the rest of that transaction; the job that had not started yet runs in
        # one of its own and commits.
        assert isinstance(opened, int), opened
        assert (await store.incident(opened)).group_key == "new"
        # But the store no longer says it is fine: the file needs restoring, and /-/ready
        # says so until then.
        with pytest.raises(StoreUnavailable, match="damaged.*restore it from a backup"):
            await store.writable()
    finally:
        await store.close()


async def test_writable_tells_while_writes_fail_and_recovers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ackd.db", busy_timeout_ms=50)
    await store.open()
    blocker = sqlite3.connect(tmp_path / "ackd.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreUnavailable):
        await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    await store.ping()  # reads still work
    with pytest.raises(StoreUnavailable, match="locked"):
        await store.writable()  # a write of nothing fails too
    blocker.execute("ROLLBACK")
    blocker.close()
    await store.writable()  # healed: no other write needed to say so
    assert store.stats.failing == ""
    await store.close()


async def test_a_lease_reads_the_incidents_of_its_rows_in_one_statement(
    tmp_path: Path,
) -> None:
    """A dispatcher pass leases hundreds of rows: one incident read each was a third of its
    time. Each row still comes with its own incident. (SQLite's statements are traced here;
    PostgreSQL's find_incidents is one statement as written.)"""
    store = SqliteStore(tmp_path / "data" / "ackd.db")
    await store.open()
    try:
        await _lease_reads_incidents_at_once(store)
    finally:
        await store.close()


async def _lease_reads_incidents_at_once(store: SqliteStore) -> None:
    payload = {"recipient": "ana", "recipient_kind": "user", "contact": 0, "reason": "triggered"}

    async def fill(tx: Transaction) -> list[int]:
        ids = [await tx.insert_incident(new_incident(f"g{n}"), None) for n in range(5)]
        for incident_id in [*ids, ids[0]]:  # two rows of one incident
            await tx.enqueue(incident_id, [payload], NOW)
        return ids

    ids = await store.write(fill)
    statements: list[str] = []
    assert store._writer is not None
    store._writer.set_trace_callback(statements.append)
    try:
        leased = await store.lease_due_notifications(NOW, 100)
    finally:
        store._writer.set_trace_callback(None)
    assert [(row.incident_id, i.id if i else None) for row, i in leased] == [
        *((n, n) for n in ids), (ids[0], ids[0])]
    assert len([s for s in statements if "FROM incidents" in s]) == 1


async def test_a_lease_decides_by_each_incidents_id_state_and_severity(store: Store) -> None:
    """lease_and_decide hands `decide` each row with its incident's id, state and severity
    as committed (whatever else the store hands: SQLite a brief, PostgreSQL the incident)."""
    payload = {"recipient": "ana", "recipient_kind": "user", "contact": 0, "reason": "triggered"}

    async def fill(tx: Transaction) -> list[int]:
        ids = [await tx.insert_incident(replace(new_incident(f"s{n}"), severity=f"SEV{n}"),
                                        None) for n in (1, 2)]
        for incident_id in ids:
            await tx.enqueue(incident_id, [payload], NOW)
        return ids

    first, second = await store.write(fill)
    await store.write(lambda tx: tx.update_incident(second, NOW, state=IncidentState.RESOLVED))

    async def decide(tx: Transaction, rows: list[Any]) -> list[tuple[int, Any, Any, Any]]:
        return [(row.incident_id, i.id, i.state, i.severity) for row, i in rows]

    assert sorted(await store.lease_and_decide(NOW, 10, decide)) == [
        (first, first, IncidentState.TRIGGERED, "SEV1"),
        (second, second, IncidentState.RESOLVED, "SEV2"),
    ]


async def test_incident_briefs_are_the_id_state_and_severity_as_the_job_sees_them(
    store: Store,
) -> None:
    """A message checked at its turn decides on its incidents' id, state and severity
    (incident_briefs), read as find_incidents reads them: those that exist, as committed or
    as this job changed them; an id of none is left out."""

    async def fill(tx: Transaction) -> list[int]:
        return [await tx.insert_incident(replace(new_incident(f"b{n}"), severity=f"SEV{n}"),
                                         None) for n in (1, 2, 3)]

    first, second, third = await store.write(fill)
    await store.write(lambda tx: tx.update_incident(second, NOW, state=IncidentState.RESOLVED))

    async def read(tx: Transaction) -> list[tuple[int, IncidentState, str]]:
        await tx.update_incident(third, NOW, state=IncidentState.ACKNOWLEDGED)
        found = await tx.incident_briefs([third, first, second, third + 100])
        return sorted((n, i.state, i.severity) for n, i in found.items())

    assert await store.write(read) == [
        (first, IncidentState.TRIGGERED, "SEV1"),
        (second, IncidentState.RESOLVED, "SEV2"),
        (third, IncidentState.ACKNOWLEDGED, "SEV3"),
    ]


async def test_a_pass_on_sqlite_reads_three_columns_of_its_incidents(tmp_path: Path) -> None:
    """Most rows a storm's pass leases wait for a bundle and are never rendered: the lease
    reads their incidents' id, state and severity in one statement, not the whole rows (a
    pass reads those of the rows it sends, with find_incidents)."""
    store = SqliteStore(tmp_path / "data" / "ackd.db")
    await store.open()
    try:
        payload = {"recipient": "ana", "recipient_kind": "user", "contact": 0,
                   "reason": "triggered"}

        async def fill(tx: Transaction) -> None:
            for n in range(3):
                await tx.enqueue(await tx.insert_incident(new_incident(f"t{n}"), None),
                                 [payload], NOW)

        await store.write(fill)
        statements: list[str] = []
        assert store._writer is not None
        store._writer.set_trace_callback(statements.append)
        try:
            found = await store.lease_and_decide(NOW, 10, lambda tx, rows: _list(rows))
        finally:
            store._writer.set_trace_callback(None)
        assert len(found) == 3
        assert all(type(i).__name__ == "IncidentBrief" for _, i in found)
        reads = [s for s in statements if "FROM incidents" in s]
        assert len(reads) == 1
        assert reads[0].startswith("SELECT id, state, severity FROM incidents")
    finally:
        await store.close()


async def _list(rows: list[Any]) -> list[Any]:
    return rows


async def test_a_batch_of_reads_alone_does_not_say_that_writes_work(tmp_path: Path) -> None:
    db = tmp_path / "ackd.db"
    store = SqliteStore(db)
    await store.open()
    first = await store.write(lambda tx: tx.insert_incident(new_incident("first"), None))
    files = [str(db), f"{db}-wal"]
    if not _chattr("+i", files):
        await store.close()
        pytest.skip("cannot make the files immutable here (needs chattr and root)")
    try:
        with pytest.raises(StoreUnavailable):
            await store.write(lambda tx: tx.insert_incident(new_incident("second"), None))
        # The dispatcher's reads go through the writer and commit fine meanwhile.
        assert (await store.write(lambda tx: tx.find_incident(first))) is not None
        with pytest.raises(StoreUnavailable):
            await store.writable()
    finally:
        assert _chattr("-i", files)
    await store.writable()
    await store.close()


def _chattr(flag: str, files: list[str]) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, *files], capture_output=True).returncode == 0


async def test_run_time_overrides_and_handoff_notices_round_trip(store: Store) -> None:
    later = NOW + timedelta(hours=8)
    swap = Change((Leg("bob", NOW, later, "day", "ana"),
                   Leg("ana", later, later + timedelta(hours=8), "day", "bob")),
                  swap=True, note="dentist")
    made = await store.write(lambda tx: tx.add_overrides("ops", swap, "ana", NOW))
    assert [m.swap_with for m in made] == [made[1].id, made[0].id]
    assert [m.leg for m in made] == list(swap.legs)
    pair = await store.write(lambda tx: tx.override_with_pair("ops", made[1].id))
    assert pair == made
    assert await store.write(lambda tx: tx.current_overrides(later + timedelta(hours=1))) \
        == made[1:]
    await store.write(lambda tx: tx.delete_overrides([m.id for m in made]))
    assert await store.write(lambda tx: tx.current_overrides(NOW)) == []

    planned = await store.write(lambda tx: tx.plan_notice("ops", "day", later, "bob", NOW))
    assert planned is not None
    again = await store.write(lambda tx: tx.plan_notice("ops", "day", later, "carl", NOW))
    assert again is not None
    assert await store.write(lambda tx: tx.unsent_notices()) == [again]  # replaced, one
    assert again.user == "carl"
    assert await store.write(lambda tx: tx.take_notice(again.id, NOW)) is None  # not due
    taken = await store.write(lambda tx: tx.take_notice(again.id, later))
    assert taken is not None
    assert taken.sent_at == later
    assert await store.write(lambda tx: tx.take_notice(again.id, later)) is None
    assert await store.write(lambda tx: tx.unsent_notices()) == []
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    found = await store.write(lambda tx: tx.open_incidents_of(["payments", "web"]))
    assert [i.id for i in found] == [incident_id]


async def test_incident_roles_are_set_handed_over_and_cleared(store: Store) -> None:
    from receiver.incidents.roles import Role, RoleHolder

    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    ana = RoleHolder(Role.COMMANDER, "ana", NOW, "cy")
    bo = RoleHolder(Role.COMMANDER, "bo", NOW + timedelta(minutes=1), "ana")
    scribe = RoleHolder(Role.SCRIBE, "cy", NOW, "cy")
    await store.write(lambda tx: tx.set_role(incident_id, ana))
    await store.write(lambda tx: tx.set_role(incident_id, scribe))
    await store.write(lambda tx: tx.set_role(incident_id, bo))  # a hand-over: one row
    held = await store.write(lambda tx: tx.roles(incident_id))
    assert held == {Role.COMMANDER: bo, Role.SCRIBE: scribe}
    await store.write(lambda tx: tx.clear_role(incident_id, Role.SCRIBE))
    assert await store.write(lambda tx: tx.roles(incident_id)) == {Role.COMMANDER: bo}


async def test_stale_reports_keep_the_latest_until_taken(store: Store) -> None:
    """Replicas note when Alertmanager last reported an incident (the later instant stays,
    whichever commits last); the stale check takes it out."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    later = NOW + timedelta(minutes=5)
    other = await store.write(lambda tx: tx.insert_incident(new_incident("other"), None))
    await store.write(lambda tx: tx.note_reports({incident_id: later, other: NOW}))
    await store.write(lambda tx: tx.note_reports({incident_id: NOW}))
    assert await store.write(lambda tx: tx.take_report(other)) == NOW
    assert await store.write(lambda tx: tx.take_report(incident_id)) == later
    assert await store.write(lambda tx: tx.take_report(incident_id)) is None


async def test_channel_histories_are_kept_found_when_due_and_dropped(store: Store) -> None:
    """Noise control's records: written, read back by channel, found without being asked for
    once their held-back summary is due, and forgotten when dropped."""
    later = NOW + timedelta(minutes=10)
    quiet = ChannelRecord("a" * 64, ChannelHistory(sent=(NOW,), last_page=NOW))
    holding = ChannelRecord(
        "b" * 64,
        ChannelHistory(sent=(NOW,), held_back=2, held_back_reasons=(("resolved", 2),),
                       held_back_incidents=(7, 9), held_back_since=NOW,
                       pending_note=Pending(NOW, False, (3, 4))),
        OutboxMessage(recipient="ops", recipient_kind="channel", contact=1,
                      reason=MessageReason.RESOLVED),
        later,
    )

    async def lock(channels: list[str], now: datetime) -> list[ChannelRecord]:
        return await store.write(lambda tx: tx.lock_channels(channels, now))

    assert await lock([quiet.channel], NOW) == []
    await store.write(lambda tx: tx.save_channels([quiet, holding]))
    assert await lock([quiet.channel, "c" * 64], NOW) == [quiet]
    assert await lock([], NOW) == []  # the summary is not due yet
    assert await lock([], later) == [holding]  # due: found without being asked for
    assert sorted(await lock([quiet.channel], later), key=lambda r: r.channel) == [
        quiet, holding]
    assert await store.write(lambda tx: tx.next_summary_at()) == later

    moved = replace(quiet, history=ChannelHistory(sent=(NOW, later), last_note=later))
    await store.write(lambda tx: tx.save_channels([moved]))
    assert await lock([quiet.channel], NOW) == [moved]  # replaced, not added
    await store.write(lambda tx: tx.drop_channels([holding.channel]))
    assert await lock([holding.channel], later) == []
    assert await store.write(lambda tx: tx.next_summary_at()) is None


async def test_a_channel_history_that_cannot_be_read_starts_afresh(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    channel = "d" * 64
    await store.write(lambda tx: tx.save_channels([ChannelRecord(channel, ChannelHistory())]))
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE channel_histories SET history = '{\"sent\": 3}'")
    else:
        assert isinstance(store, PostgresStore)
        conn = await asyncpg.connect(store._dsn)
        try:
            await conn.execute("UPDATE channel_histories SET history = '{\"sent\": 3}'")
        finally:
            await conn.close()
    found = await store.write(lambda tx: tx.lock_channels([channel], NOW))
    assert found == [ChannelRecord(channel, ChannelHistory())]
    assert "cannot be read, starting afresh" in caplog.text


async def test_an_outbox_row_that_passed_the_gate_says_so_when_leased_again(
    store: Store,
) -> None:
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    page = OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                         reason=MessageReason.TRIGGERED, step=0)
    await store.write(lambda tx: tx.enqueue(incident_id, [page, page], NOW))
    [(first, _), (second, _)] = await store.lease_due_notifications(NOW, 10)
    assert (first.gated, second.gated) == (False, False)
    await store.write(lambda tx: tx.passed_gate([first.id]))
    for row in (first, second):
        await store.write(lambda tx, row=row: tx.release_outbox(row.id, NOW))
    again = await store.lease_due_notifications(NOW, 10)
    assert [(row.id, row.gated) for row, _ in again] == [(first.id, True), (second.id, False)]


async def test_the_oldest_due_row_counts_from_when_it_fell_due_taken_or_not(
    store: Store,
) -> None:
    """oldest_due_outbox (ackd_outbox_oldest_due_seconds): a row due and not taken, or taken
    and its result not written, counts from its due time; a row due later, one retried
    (due again later) and one finished do not."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    page = OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                         reason=MessageReason.TRIGGERED, step=0)
    assert await store.oldest_due_outbox(NOW) is None
    await store.write(lambda tx: tx.enqueue(incident_id, [page], NOW))
    await store.write(lambda tx: tx.enqueue(incident_id, [page], NOW + timedelta(seconds=9)))
    assert await store.oldest_due_outbox(NOW - timedelta(seconds=1)) is None
    assert await store.oldest_due_outbox(NOW + timedelta(seconds=20)) == NOW
    later = NOW + timedelta(seconds=10)
    [(a, _), (b, _)] = await store.lease_due_notifications(later, 10)
    assert await store.oldest_due_outbox(later) == NOW  # leased: in flight since NOW
    await store.write(lambda tx: tx.finish_outbox([a.id]))
    assert await store.oldest_due_outbox(later) == NOW + timedelta(seconds=9)
    await store.write(lambda tx: tx.retry_outbox(b.id, 1, later + timedelta(seconds=2)))
    assert await store.oldest_due_outbox(later) is None
    assert await store.oldest_due_outbox(later + timedelta(seconds=3)) == \
        later + timedelta(seconds=2)


async def test_deferred_rows_wait_for_their_time_unattempted_and_finished_ones_leave(
    store: Store,
) -> None:
    """A pass defers the pages of a bundle to its time in one write (defer_outbox): each
    lease ends, each row is due again then with no attempt counted; finish_outbox takes
    several rows out at once and leaves the others."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    page = OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                         reason=MessageReason.TRIGGERED, step=0)
    await store.write(lambda tx: tx.enqueue(incident_id, [page] * 5, NOW))
    [(a, _), (b, _), (c, _), (d, _), (e, _)] = await store.lease_due_notifications(NOW, 10)
    await store.write(lambda tx: tx.retry_outbox(a.id, 2, NOW))  # a retry's attempts...
    [(a, _)] = await store.lease_due_notifications(NOW, 10)
    later = NOW + timedelta(seconds=30)
    await store.write(lambda tx: tx.defer_outbox([a.id, b.id, c.id], later))
    await store.write(lambda tx: tx.finish_outbox([d.id, e.id]))
    await store.write(lambda tx: tx.finish_outbox([]))
    await store.write(lambda tx: tx.defer_outbox([], later))
    assert await store.due_notifications(later - timedelta(microseconds=1)) == []
    due = [row for row, _ in await store.due_notifications(later)]
    assert [(r.id, r.attempts, r.next_attempt_at) for r in due] == [
        (a.id, 0, later), (b.id, 0, later), (c.id, 0, later)]  # ...no longer counted


async def test_a_bundle_pulled_earlier_moves_the_rows_already_waiting_for_it(
    store: Store,
) -> None:
    """A high-urgency page joins a pending bundle and caps its time (noise.py's rule 3): the
    pass defers the page and the rows already waiting for the bundle (not leased: a pass
    before deferred them) to the earlier time in one write, so they all go out together."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    page = OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                         reason=MessageReason.TRIGGERED, step=0)
    await store.write(lambda tx: tx.enqueue(incident_id, [page] * 2, NOW))
    [(a, _), (b, _)] = await store.lease_due_notifications(NOW, 10)
    bundle = NOW + timedelta(seconds=30)
    await store.write(lambda tx: tx.defer_outbox([a.id, b.id], bundle))  # waiting, unleased
    urgent_at = NOW + timedelta(seconds=1)
    await store.write(lambda tx: tx.enqueue(incident_id, [page], urgent_at))
    [(c, _)] = await store.lease_due_notifications(urgent_at, 10)
    capped = urgent_at + timedelta(seconds=5)
    await store.write(lambda tx: tx.defer_outbox([a.id, b.id, c.id], capped))
    assert await store.due_notifications(capped - timedelta(microseconds=1)) == []
    due = [row for row, _ in await store.due_notifications(capped)]
    assert [(r.id, r.attempts, r.next_attempt_at) for r in due] == [
        (a.id, 0, capped), (b.id, 0, capped), (c.id, 0, capped)]


async def test_a_lease_converts_each_distinct_time_of_its_rows_once(store: Store) -> None:
    """A fresh row falls due as it is made, and the rows deferred to one bundle at its one
    time: a lease converts each distinct stored time once (a conversion is about 4,000
    instructions; a storm leases every page twice), so the rows share one datetime a
    distinct time, and each row keeps its own times."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    page = OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                         reason=MessageReason.TRIGGERED, step=0)
    await store.write(lambda tx: tx.enqueue(incident_id, [page] * 3, NOW))
    earlier = NOW - timedelta(seconds=1)
    await store.write(lambda tx: tx.enqueue(incident_id, [page], earlier))
    leased = [row for row, _ in await store.lease_due_notifications(NOW, 10)]
    assert [(r.created_at, r.next_attempt_at) for r in leased] == [
        (earlier, earlier), (NOW, NOW), (NOW, NOW), (NOW, NOW)]
    assert len({id(t) for r in leased for t in (r.created_at, r.next_attempt_at)}) == 2
    later = NOW + timedelta(seconds=30)
    await store.write(lambda tx: tx.defer_outbox([r.id for r in leased], later))
    again = [row for row, _ in await store.lease_due_notifications(later, 10)]
    assert [(r.created_at, r.next_attempt_at) for r in again] == [
        (NOW, later), (NOW, later), (NOW, later), (earlier, later)]
    assert len({id(t) for r in again for t in (r.created_at, r.next_attempt_at)}) == 3


async def test_one_event_to_each_of_several_incidents_is_encoded_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """append_each: one event to each of several incidents, in their order, in one write (a
    bundle's record); an event given for several is converted and encoded once, and each
    incident's timeline reads it back as its own, beside what was appended one by one."""
    encoded: list[object] = []

    def dumps(value: Any) -> str:
        encoded.append(value)
        return codec._ENCODER.encode(value).decode()

    monkeypatch.setattr(codec, "dumps", dumps)

    async def fill(tx: Transaction) -> list[int]:
        return [await tx.insert_incident(new_incident(f"e{n}"), None) for n in range(3)]

    first, second, third = await store.write(fill)
    sent = TimelineEvent(NOW, EventKind.NOTIFICATION_SENT, "ackd", {"recipient": "ana"})
    alone = TimelineEvent(NOW, EventKind.NOTIFICATION_SUPPRESSED, "ackd", {"why": "x"})
    added = TimelineEvent(NOW, EventKind.ALERT_ADDED, "ackd", {"fingerprint": "f"})
    encoded.clear()
    await store.write(lambda tx: tx.append_each(
        [(first, sent), (second, sent), (third, alone), (third, sent), (first, added)]))
    await store.write(lambda tx: tx.append_each([]))
    assert encoded.count(sent.detail) == 1
    timelines = [await store.timeline(n) for n in (first, second, third)]
    assert [[e for e in t if e.kind is not EventKind.OPENED] for t in timelines] == [
        [sent, added], [sent], [alone, sent]]


async def test_renewing_leases_keeps_only_the_rows_still_leased(store: Store) -> None:
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    page = OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                         reason=MessageReason.TRIGGERED, step=0)
    await store.write(lambda tx: tx.enqueue(incident_id, [page, page, page], NOW))
    [(a, _), (b, _), (c, _)] = await store.lease_due_notifications(NOW, 10)
    await store.write(lambda tx: tx.finish_outbox([b.id]))  # its result was written
    await store.write(lambda tx: tx.release_outbox(c.id, NOW))  # given back
    later = NOW + timedelta(seconds=30)
    assert await store.write(lambda tx: tx.renew_outbox([a.id, b.id, c.id], later)) == [a.id]
    assert await store.write(lambda tx: tx.renew_outbox([], later)) == []
    lease = store.outbox_lease
    if lease is None:  # one process: a lease never lapses
        assert isinstance(store, SqliteStore)
        far = later + timedelta(days=365)
        assert [r.id for r, _ in await store.due_notifications(far)] == [c.id]
    else:  # renewed from `later`, not from the lease
        assert [r.id for r, _ in await store.due_notifications(later + lease)] == [c.id, a.id]
        assert [r.id for r, _ in await store.due_notifications(NOW + lease)] == [c.id]


async def test_incidents_held_back_from_a_channel_are_listed_in_the_order_first_held(
    store: Store,
) -> None:
    a, b = "a" * 64, "b" * 64
    later = NOW + timedelta(seconds=1)
    await store.write(lambda tx: tx.hold_back(a, [9, 3], NOW))
    await store.write(lambda tx: tx.hold_back(a, [3, 5], later))  # 3 keeps its place
    await store.write(lambda tx: tx.hold_back(b, [1], NOW))

    async def held(*channels: str) -> dict[str, list[int]]:
        return await store.write(lambda tx: tx.held_back(channels))

    assert await held(a, b, "c" * 64) == {a: [3, 9, 5], b: [1], "c" * 64: []}
    await store.write(lambda tx: tx.forget_held_back([a]))
    assert await held(a, b) == {a: [], b: [1]}
    await store.write(lambda tx: tx.save_channels([ChannelRecord(b, ChannelHistory())]))
    await store.write(lambda tx: tx.drop_channels([b]))
    assert await held(b) == {b: []}  # dropping a channel drops what it held back


async def test_a_groups_open_incident_comes_with_its_row_state_episodes_and_last_id(
    store: Store,
) -> None:
    """What the ingest path reads first (PostgreSQL: one statement, remembered by the batch):
    the open incident's latest episode of each fingerprint, the incident and its escalation
    state as stored, and, for a group with none open, the group's last incident (not another
    group's later one)."""
    fp1, fp2 = "0123456789abcdef", "fedcba9876543210"
    t0, t1 = NOW - timedelta(minutes=9), NOW - timedelta(minutes=2)

    async def setup(tx: Transaction) -> tuple[int, int]:
        old = await tx.insert_incident(new_incident("g"), None)
        await tx.update_incident(old, NOW, state=IncidentState.RESOLVED, resolved_at=NOW)
        open_id = await tx.insert_incident(new_incident("g"), old)
        await tx.write_alerts(open_id, [
            Alert(fp1, AlertStatus.RESOLVED, {"n": "1"}, {}, t0, t0 + timedelta(minutes=1)),
            Alert(fp1, AlertStatus.FIRING, {"n": "1"}, {}, t1, None),
            Alert(fp2, AlertStatus.FIRING, {"n": "2"}, {}, t0, None),
        ], NOW)
        await tx.set_escalation(open_id, {"step": 1})
        closed = await tx.insert_incident(new_incident("h"), None)
        await tx.update_incident(closed, NOW, state=IncidentState.RESOLVED, resolved_at=NOW)
        await tx.insert_incident(new_incident("later"), None)  # a higher id, another group
        return open_id, closed

    open_id, closed = await store.write(setup)

    async def read(tx: Transaction) -> tuple[object, ...]:
        found = await tx.open_group("g")
        assert found is not None
        return (found, await tx.incident(found.incident_id), await tx.escalation(open_id),
                await tx.open_group("h"), await tx.last_incident_id("h"),
                await tx.open_group("none"), await tx.last_incident_id("none"))

    statements: list[str] = []
    if isinstance(store, SqliteStore):
        assert store._writer is not None
        store._writer.set_trace_callback(statements.append)
    try:
        found, incident, state, h, last_h, none, last_none = await store.write(read)
    finally:
        if isinstance(store, SqliteStore):
            assert store._writer is not None
            store._writer.set_trace_callback(None)
    # SQLite reads a row whole (sqlite3 describes its 19 columns at each run, a row or none)
    # only for the open incident: a group with none open, a storm's new group, reads its last
    # incident's id and state alone.
    assert len([s for s in statements if "escalation FROM incidents" in s]) == (
        1 if isinstance(store, SqliteStore) else 0)
    assert found == OpenGroup(open_id, {
        fp1: KnownAlert(t1, AlertStatus.FIRING, None),
        fp2: KnownAlert(t0, AlertStatus.FIRING, None),
    })
    assert incident == await store.incident(open_id)
    assert state == {"step": 1}
    assert (h, last_h, none, last_none) == (None, closed, None, None)


async def test_a_failed_job_leaves_no_remembered_escalation(store: Store) -> None:
    """The escalation state a batch read with an incident, then changed in a job that failed,
    is read again as the store holds it, by the batch's next job as by a later batch."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident("g"), None))
    await store.write(lambda tx: tx.set_escalation(incident_id, {"step": 1}))
    in_batch, later = await _escalation_after_a_failed_write(store, incident_id, "g",
                                                             {"step": 2})
    assert in_batch == {"step": 1}
    assert later == {"step": 1}


async def _escalation_after_a_failed_write(
    store: Store, incident_id: int, group_key: str, state: dict[str, object]
) -> tuple[object, object]:
    """A job reads the open group, writes `state` and fails; the escalation state read by the
    next job of its batch, and by a later batch."""

    async def failing(tx: Transaction) -> None:
        await tx.open_group(group_key)
        await tx.set_escalation(incident_id, state)
        raise RuntimeError("the job fails after its write")

    async def reader(tx: Transaction) -> object:
        return await tx.escalation(incident_id)

    results = await asyncio.gather(store.write(failing), store.write(reader),
                                   return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    return results[1], await store.write(reader)


async def test_paged_recipients_list_those_sent_to_before_those_in_flight_whatever_the_ids(
    store: Store,
) -> None:
    """Sent first, then in flight, each in the order paged: a page recorded sent late (its
    timeline id above every outbox row's) still comes before the pages in flight."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    await store.write(lambda tx: tx.enqueue(incident_id, [
        OutboxMessage(recipient=who, recipient_kind="user", contact=0,
                      reason=MessageReason.TRIGGERED, step=0) for who in ("bo", "ana")
    ], NOW))
    await store.lease_due_notifications(NOW, 100)
    filler = [TimelineEvent(NOW, EventKind.NOTE, "ana", {"text": str(n)}) for n in range(5)]
    sent = [TimelineEvent(NOW, EventKind.NOTIFICATION_SENT, "ackd",
                          {"recipient": who, "recipient_kind": "user", "reason": "triggered"})
            for who in ("yan", "ana", "yan")]
    await store.write(lambda tx: tx.append(incident_id, [*filler, *sent]))
    assert await store.write(lambda tx: tx.paged_recipients(incident_id)) == ["yan", "ana", "bo"]


async def test_a_jobs_writes_land_as_written_whatever_statements_come_between(
    store: Store,
) -> None:
    """PostgreSQL holds a job's alert, timeline and incident writes back and sends them with
    its next statement, as CTEs that share one snapshot: the later of two writes to a row
    wins, column by column; events keep their order around a deadline armed, a page enqueued
    and a read; and a read within the job sees what the job wrote before it."""
    fp = "0123456789abcdef"
    start, later = NOW - timedelta(minutes=1), NOW + timedelta(minutes=1)
    last = NOW + timedelta(minutes=2)
    firing = Alert(fp, AlertStatus.FIRING, {"alertname": "X"}, {"summary": "s"}, start, None)
    over = replace(firing, status=AlertStatus.RESOLVED, ends_at=later, annotations={})

    def event(actor: str) -> TimelineEvent:
        return TimelineEvent(NOW, EventKind.NOTE, actor, {"text": actor})

    async def job(tx: Transaction) -> tuple[int, list[str]]:
        incident_id = await tx.insert_incident(new_incident("g"), None)
        await tx.write_alerts(incident_id, [firing], NOW)
        await tx.append(incident_id, [event("a0")])
        await tx.update_incident(incident_id, NOW, truncated_alerts=3)
        await tx.set_escalation(incident_id, {"step": 0})
        await tx.arm(incident_id, [(NOW + timedelta(minutes=5), "step", "k")])
        await tx.append(incident_id, [event("a1"), event("a2")])
        await tx.write_alerts(incident_id, [over], later)
        await tx.update_incident(incident_id, later, state=IncidentState.ACKNOWLEDGED,
                                 acknowledged_at=later, acknowledged_by="ana")
        await tx.set_escalation(incident_id, {"step": 1})
        seen = [e.actor for e in await tx.events_since(incident_id, NOW)]
        await tx.enqueue(incident_id, [OutboxMessage(recipient="ana", recipient_kind="user",
                                                     contact=0, reason=MessageReason.TRIGGERED)],
                         later)
        await tx.append(incident_id, [event("a3")])
        await tx.update_incident(incident_id, last, truncated_alerts=5)
        return incident_id, seen

    incident_id, seen = await store.write(job)
    assert seen == ["a0", "a1", "a2"]
    incident = await store.incident(incident_id)
    assert (incident.state, incident.acknowledged_at, incident.acknowledged_by,
            incident.truncated_alerts, incident.updated_at) == (
        IncidentState.ACKNOWLEDGED, later, "ana", 5, last)
    assert await store.alerts(incident_id) == [over]
    assert [e.actor for e in await store.timeline(incident_id)] == ["a0", "a1", "a2", "a3"]
    assert await store.write(lambda tx: tx.escalation(incident_id)) == {"step": 1}
    assert [due for _, due in await store.deadlines()] == [NOW + timedelta(minutes=5)]


async def test_a_failed_jobs_writes_never_land_with_the_next_jobs_statement(
    store: Store,
) -> None:
    """What a job wrote before it failed is gone, even when the next job of its batch sends a
    statement that carries held writes (PostgreSQL)."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident("g"), None))
    alert = Alert("0123456789abcdef", AlertStatus.FIRING, {"alertname": "X"}, {}, NOW, None)

    async def failing(tx: Transaction) -> None:
        await tx.write_alerts(incident_id, [alert], NOW)
        await tx.append(incident_id, [TimelineEvent(NOW, EventKind.NOTE, "ana", {})])
        await tx.update_incident(incident_id, NOW, state=IncidentState.RESOLVED,
                                 resolved_at=NOW)
        await tx.set_escalation(incident_id, {"step": 9})
        raise RuntimeError("the job fails after its writes")

    async def enqueuing(tx: Transaction) -> None:
        await tx.enqueue(incident_id, [OutboxMessage(recipient="ana", recipient_kind="user",
                                                     contact=0, reason=MessageReason.TRIGGERED)],
                         NOW)

    results = await asyncio.gather(store.write(failing), store.write(enqueuing),
                                   return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert results[1] is None
    assert await store.alerts(incident_id) == []
    assert await store.timeline(incident_id) == []
    assert (await store.incident(incident_id)).state is IncidentState.TRIGGERED
    assert await store.write(lambda tx: tx.escalation(incident_id)) is None


async def test_the_escalation_state_a_batch_reads_is_the_one_it_last_wrote(store: Store) -> None:
    """The batch remembers the state it read with the open group's row, or wrote; a job that
    fails forgets what it wrote with its savepoint."""
    first, second = {"version": 1, "run": 0}, {"version": 1, "run": 1}
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))

    async def job(tx: Transaction) -> list[object]:
        seen: list[object] = [await tx.escalation(incident_id)]
        await tx.set_escalation(incident_id, first)
        open_group = await tx.open_group(new_incident().group_key)
        assert open_group is not None
        assert open_group.incident_id == incident_id
        seen.append(await tx.escalation(incident_id))
        await tx.set_escalation(incident_id, second)
        seen.append(await tx.escalation(incident_id))
        return seen

    assert await store.write(job) == [None, first, second]
    in_batch, later = await _escalation_after_a_failed_write(
        store, incident_id, new_incident().group_key, first)
    assert in_batch == second
    assert later == second


async def test_the_open_group_and_its_incident_are_read_as_the_batch_left_them(
    store: Store,
) -> None:
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    alert = Alert("fp1", AlertStatus.FIRING, {"alertname": "X"}, {}, NOW, None, "")
    await store.write(lambda tx: tx.write_alerts(incident_id, [alert], NOW))
    later = NOW + timedelta(minutes=1)

    async def job(tx: Transaction) -> tuple[object, object]:
        await tx.update_incident(incident_id, later, state=IncidentState.ACKNOWLEDGED,
                                 acknowledged_by="ana")
        open_group = await tx.open_group(new_incident().group_key)
        return open_group, await tx.incident(incident_id)

    open_group, incident = await store.write(job)
    assert open_group is not None
    assert open_group.incident_id == incident_id
    assert list(open_group.alerts) == ["fp1"]
    assert open_group.alerts["fp1"].starts_at == NOW
    assert incident == await store.incident(incident_id)
    assert incident.state is IncidentState.ACKNOWLEDGED
    assert incident.updated_at == later


async def test_cancelling_every_kind_removes_the_incidents_deadlines_and_no_other(
    store: Store,
) -> None:
    first = await store.write(lambda tx: tx.insert_incident(new_incident("a"), None))
    other = await store.write(lambda tx: tx.insert_incident(new_incident("b"), None))
    kinds = ["step", "stale", "cadence", "follow"]
    armed = {}
    for incident_id in (first, other):
        armed[incident_id] = await store.write(lambda tx, i=incident_id: tx.arm(
            i, [(NOW, kind, "k") for kind in kinds]))
    some = await store.write(lambda tx: tx.arm(first, [(NOW, "contact", "k")]))
    await store.write(lambda tx: tx.cancel(first, ["contact"]))
    assert await store.write(lambda tx: tx.take_deadlines([some[0].id], NOW)) == []
    every = [kind.value for kind in DeadlineKind]
    await store.write(lambda tx: tx.cancel(first, every))
    assert {i for i, _ in await store.deadlines()} == {d.id for d in armed[other]}
async def test_deadlines_armed_then_cancelled_in_the_job_that_opened_their_incident_are_gone(
    store: Store,
) -> None:
    """PostgreSQL skips cancelling deadlines of an incident its batch inserted unless that
    kind was armed since: every kind armed (by arm or arm_once) is still cancelled."""
    due = NOW + timedelta(minutes=5)

    async def job(tx: Transaction) -> list[int]:
        ids = [await tx.insert_incident(new_incident(f"g{n}"), None) for n in range(3)]
        await tx.arm(ids[0], [(due, "step", "k"), (due, "cadence", "c")])
        await tx.cancel(ids[0], ["step"])
        await tx.arm_once(ids[1], due, "stale", "rule")
        await tx.cancel(ids[1], ["cadence", "stale"])
        await tx.cancel(ids[2], ["cadence"])
        await tx.arm(ids[2], [(due, "cadence", "c")])
        return ids

    ids = await store.write(job)
    armed = [deadline_id for deadline_id, _ in await store.deadlines()]
    left = await store.write(lambda tx: tx.take_deadlines(armed, due))
    assert sorted((d.incident_id, d.kind) for d in left) == [(ids[0], "cadence"),
                                                            (ids[2], "cadence")]


async def test_a_stored_window_whose_matchers_this_release_refuses_is_left_out_with_a_warning(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A window stored by a release on Python's `re` may hold a pattern RE2 refuses (here a
    backreference): reading the windows back at start must not fail, or the daemon would not
    start after an upgrade; the window mutes nothing and says so."""
    kept = Window(NOW, NOW + timedelta(hours=1), "payments",
                  (parse_matcher('cluster="eu1"'),), "upgrade", "ana", created_at=NOW)
    old = replace(kept, comment="from an older release")
    kept_id = await store.write(lambda tx: tx.add_window(kept))
    old_id = await store.write(lambda tx: tx.add_window(old))
    text = '["alertname=~\\"(a)\\\\1\\""]'  # alertname=~"(a)\1", as an older release stored it
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE maintenance SET matchers = ? WHERE id = ?", (text, old_id))
    else:
        assert isinstance(store, PostgresStore)
        conn = await asyncpg.connect(store._dsn)
        try:
            await conn.execute("UPDATE maintenance SET matchers = $1 WHERE id = $2", text, old_id)
        finally:
            await conn.close()
    assert await store.maintenance_windows() == [replace(kept, id=kept_id)]
    assert f"maintenance window {old_id} is left out" in caplog.text


async def test_the_reads_of_every_open_incident_decode_off_the_event_loop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload reads every open incident's escalation state and firing alerts: with 100,000
    of them, decoding held the event loop 6 to 7 s (webhooks and timers waited, and on
    PostgreSQL the listener's beat that tells the others this replica is not hung). Both are
    decoded on a thread (the loop's longest stall over those reads: 1.1 to 2.5 s)."""
    module = sys.modules[type(store).__module__]
    threads: list[int] = []
    for name in ("escalations_from_rows", "firing_alerts_from_rows"):
        decode = getattr(module, name)

        def recording(rows: Any, decode: Any = decode) -> Any:
            threads.append(threading.get_ident())
            return decode(rows)

        monkeypatch.setattr(module, name, recording)
    assert await store.open_escalations() == []
    assert await store.open_firing_alerts() == []
    assert len(threads) == 2
    assert threading.get_ident() not in threads
