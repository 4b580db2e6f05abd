"""The timeline's rows on both stores: a run of per-alert events one row, every event read back.

A change writes an event per alert (ten alert_added for a new incident of ten alerts), all of
one instant and actor; the store packs such a run into one row (store/codec.py) and every
read expands it, so that readers see what was appended, in order, and rows written before
(one per event) read as they always did."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.config import build as config_module
from receiver.core.model import Alert, AlertStatus, EventKind, TimelineEvent
from receiver.incidents.service import Incidents
from receiver.store import SqliteStore
from receiver.store.base import Store
from receiver.store.codec import PACKED, to_us
from receiver.store.postgres.store import PostgresStore
from receiver.telemetry.metrics import Metrics
from receiver.testing import FakeClock
from tests.test_store import NOW, new_incident
from tests.test_store import store as store  # both stores, each test on each

ROOT = Path(__file__).resolve().parent.parent


async def stored_rows(store: Store, incident_id: int) -> list[tuple[str, Any]]:
    """The incident's timeline rows as stored, past the store: (kind, detail decoded)."""
    sql = "SELECT kind, detail FROM timeline WHERE incident_id = {} ORDER BY id"
    if isinstance(store, SqliteStore):
        with closing(sqlite3.connect(store.path)) as db:
            rows = db.execute(sql.format("?"), (incident_id,)).fetchall()
    else:
        assert isinstance(store, PostgresStore)
        conn = await asyncpg.connect(store._dsn)
        try:
            rows = await conn.fetch(sql.format("$1"), incident_id)
        finally:
            await conn.close()
    return [(str(r[0]), json.loads(r[1])) for r in rows]


async def insert_rows(
    store: Store, incident_id: int, rows: list[tuple[int, str, str, str]]
) -> None:
    """Timeline rows (at in µs, kind, actor, detail) as earlier releases wrote them."""
    if isinstance(store, SqliteStore):
        with closing(sqlite3.connect(store.path)) as db, db:
            db.executemany("INSERT INTO timeline (incident_id, at, kind, actor, detail)"
                           " VALUES (?, ?, ?, ?, ?)", [(incident_id, *r) for r in rows])
        return
    assert isinstance(store, PostgresStore)
    conn = await asyncpg.connect(store._dsn)
    try:
        await conn.executemany("INSERT INTO timeline (incident_id, at, kind, actor, detail)"
                               " VALUES ($1, $2, $3, $4, $5)", [(incident_id, *r) for r in rows])
    finally:
        await conn.close()


def alert_event(kind: EventKind, n: int, at: Any = NOW, actor: str = "alertmanager",
                **more: str) -> TimelineEvent:
    return TimelineEvent(at, kind, actor, {"fingerprint": f"{n:016x}", "alertname": f"A{n}",
                                           "starts_at": NOW.isoformat(), **more})


async def test_a_webhook_opening_an_incident_of_ten_alerts_writes_two_rows_and_reads_ten(
    store: Store,
) -> None:
    """Ingest, through the store: the incident's opening and its ten alerts' events, two rows
    (before: eleven); the reads (the timeline, events_since, history) give the eleven events
    as appended. Its resolution: ten alert_resolved in one row, then the incident's own."""
    config = config_module.load(ROOT / "tests/config/good/minimal.yaml")
    clock = FakeClock(NOW)
    incidents = Incidents(store, clock, Metrics(), config,
                          shared=isinstance(store, PostgresStore))
    start = NOW - timedelta(minutes=3)
    alerts = [Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, start, None)
              for labels in ({"alertname": "Disk", "instance": f"10.0.0.{n}:9100"}
                             for n in range(10))]
    opened = await incidents.ingest_body(json.dumps(build_webhook(alerts)).encode())
    [incident_id] = opened.groups.values()

    def detail(alert: Alert) -> dict[str, str]:
        return {"fingerprint": alert.fingerprint, "alertname": "Disk",
                "starts_at": start.isoformat()}

    added = [TimelineEvent(NOW, EventKind.OPENED, "alertmanager", detail(alerts[0])),
             *(TimelineEvent(NOW, EventKind.ALERT_ADDED, "alertmanager", detail(a))
               for a in alerts)]
    assert await store.timeline(incident_id) == added
    assert await store.write(lambda tx: tx.events_since(incident_id, NOW)) == added
    [(_, _, history)] = await store.history(NOW - timedelta(hours=1))
    assert history == added
    rows = await stored_rows(store, incident_id)
    assert [kind for kind, _ in rows] == ["opened", "alert_added"]
    assert rows[1][1] == {**detail(alerts[0]), PACKED: [detail(a) for a in alerts[1:]]}

    later = NOW + timedelta(minutes=7)
    clock.set(later)
    ended = [Alert(a.fingerprint, AlertStatus.RESOLVED, a.labels, {}, start, later - timedelta(
        seconds=30)) for a in alerts]
    await incidents.ingest_body(json.dumps(build_webhook(ended)).encode())
    resolved = [*(TimelineEvent(later, EventKind.ALERT_RESOLVED, "alertmanager", detail(a))
                  for a in alerts),
                TimelineEvent(later, EventKind.RESOLVED, "alertmanager")]
    assert await store.timeline(incident_id) == [*added, *resolved]
    assert await store.write(lambda tx: tx.events_since(incident_id, later)) == resolved
    rows = await stored_rows(store, incident_id)
    assert [kind for kind, _ in rows] == ["opened", "alert_added", "alert_resolved", "resolved"]


async def test_a_mixed_append_keeps_its_order_and_packs_only_runs_of_one_instant_and_actor(
    store: Store,
) -> None:
    """Per-alert events around another kind, of two kinds, instants and actors: each run of
    one kind, instant and actor is one row; the events read back exactly as appended."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    later = NOW + timedelta(seconds=1)
    events = [
        TimelineEvent(NOW, EventKind.OPENED, "alertmanager", {"fingerprint": "0"}),
        alert_event(EventKind.ALERT_ADDED, 1),
        alert_event(EventKind.ALERT_ADDED, 2),
        alert_event(EventKind.ALERT_ADDED, 3),
        alert_event(EventKind.ALERT_RESOLVED, 4, reported_starts_at=later.isoformat()),
        alert_event(EventKind.ALERT_RESOLVED, 5),
        TimelineEvent(NOW, EventKind.NOTE, "ana", {"text": "looking"}),
        alert_event(EventKind.ALERT_ADDED, 6),
        alert_event(EventKind.ALERT_ADDED, 7),
        alert_event(EventKind.ALERT_ADDED, 8, at=later),
        alert_event(EventKind.ALERT_ADDED, 9, at=later, actor="grafana"),
        alert_event(EventKind.ALERT_MERGED, 10, at=later, previous_starts_at=NOW.isoformat()),
        alert_event(EventKind.ALERT_REFIRED, 11, at=later),
        alert_event(EventKind.ALERT_REFIRED, 12, at=later),
        TimelineEvent(later, EventKind.STEP_FIRED, "ackd", {"step": 0, "recipients": ["ana"]}),
    ]
    await store.write(lambda tx: tx.append(incident_id, events))
    # A second append of the same kind, instant and actor is rows of its own: packing never
    # reaches across appends (nor across jobs of one batch).
    await store.write(lambda tx: tx.append(incident_id, [alert_event(EventKind.ALERT_REFIRED,
                                                                     13, at=later)]))
    appended = [*events, alert_event(EventKind.ALERT_REFIRED, 13, at=later)]
    assert await store.timeline(incident_id) == appended
    assert await store.write(lambda tx: tx.events_since(incident_id, later)) == appended[9:]
    [(_, _, history)] = await store.history(NOW - timedelta(hours=1))
    assert history == appended
    rows = await stored_rows(store, incident_id)
    assert [(kind, len(detail.get(PACKED, ())) + 1) for kind, detail in rows] == [
        ("opened", 1), ("alert_added", 3), ("alert_resolved", 2), ("note", 1),
        ("alert_added", 2), ("alert_added", 1), ("alert_added", 1), ("alert_merged", 1),
        ("alert_refired", 2), ("step_fired", 1), ("alert_refired", 1),
    ]


async def test_rows_written_one_per_event_before_packing_read_as_they_always_did(
    store: Store,
) -> None:
    """A database of an earlier release holds a row per alert event (an object each, of one
    instant and actor): each reads as its event, in order, and events appended now follow."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    old = [TimelineEvent(NOW, EventKind.OPENED, "alertmanager", {"fingerprint": f"{1:016x}"}),
           *(alert_event(EventKind.ALERT_ADDED, n) for n in (1, 2, 3)),
           TimelineEvent(NOW, EventKind.STEP_FIRED, "ackd", {"recipients": ["ana", "bo"]})]
    await insert_rows(store, incident_id, [
        (to_us(e.at), e.kind.value, e.actor, json.dumps(dict(e.detail))) for e in old])
    new = [alert_event(EventKind.ALERT_RESOLVED, n, at=NOW + timedelta(minutes=1))
           for n in (1, 2, 3)]
    await store.write(lambda tx: tx.append(incident_id, new))
    assert await store.timeline(incident_id) == [*old, *new]
    [(_, _, history)] = await store.history(NOW - timedelta(hours=1))
    assert history == [*old, *new]
    assert [kind for kind, _ in await stored_rows(store, incident_id)] == [
        "opened", "alert_added", "alert_added", "alert_added", "step_fired", "alert_resolved"]


async def test_a_per_alert_detail_holding_the_packing_key_is_refused(store: Store) -> None:
    """It would read back as events that were never appended: the job fails, nothing lands."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    bad = [alert_event(EventKind.ALERT_ADDED, 1), alert_event(EventKind.ALERT_ADDED, 2,
                                                              packed="[]")]
    with pytest.raises(ValueError, match=PACKED):
        await store.write(lambda tx: tx.append(incident_id, bad))
    assert await store.timeline(incident_id) == []


async def test_an_earlier_releases_link_actor_reads_as_the_person(store: Store) -> None:
    """Earlier releases recorded an action through a page's signed link as "NAME (link)",
    a name nobody has: the cadence reminded nobody and the stale notice paged everyone. Such
    rows (stored before an upgrade, or written by a replica not yet replaced) read as the
    person, the event's detail saying how, as the link's actions are recorded now."""
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(), None))
    await past_the_store(
        store, "UPDATE incidents SET state = 'acknowledged', acknowledged_at = {0},"
        " acknowledged_by = 'ana (link)', resolved_by = 'bo (link)' WHERE id = {1}",
        to_us(NOW), incident_id)
    later = NOW + timedelta(minutes=1)
    await insert_rows(store, incident_id, [
        (to_us(NOW), "acknowledged", "ana (link)", "{}"),
        (to_us(later), "resolved", "bo (link)", '{"via": "link"}'),
        (to_us(later), "note", "e2e", '{"text": "(link)"}'),
    ])
    incident = await store.incident(incident_id)
    assert (incident.acknowledged_by, incident.resolved_by) == ("ana", "bo")
    read = [TimelineEvent(NOW, EventKind.ACKNOWLEDGED, "ana", {"via": "link"}),
            TimelineEvent(later, EventKind.RESOLVED, "bo", {"via": "link"}),
            TimelineEvent(later, EventKind.NOTE, "e2e", {"text": "(link)"})]
    assert await store.timeline(incident_id) == read
    since = await store.write(lambda tx: tx.events_since(incident_id, NOW))
    assert since == read
    [(held, _, history)] = await store.history(NOW - timedelta(hours=1))
    assert (held.acknowledged_by, history) == ("ana", read)


async def past_the_store(store: Store, sql: str, *args: Any) -> None:
    """One statement as an earlier release's ackd left its rows: `{0}`, `{1}`... the args."""
    if isinstance(store, SqliteStore):
        with closing(sqlite3.connect(store.path)) as db, db:
            db.execute(sql.format(*("?" * len(args))), args)
        return
    assert isinstance(store, PostgresStore)
    conn = await asyncpg.connect(store._dsn)
    try:
        await conn.execute(sql.format(*(f"${n + 1}" for n in range(len(args)))), *args)
    finally:
        await conn.close()
