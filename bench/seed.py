"""Open incidents written straight into a store, fast, for the restart and timer measurements.

Each seeded incident is what ackd itself leaves behind a page that went unanswered: a group
with one firing alert, step 0 fired (its timeline), and the STEP deadline of step 1 armed,
with the escalation state the engine would have written. The schema comes from the store
itself (SqliteStore.open runs the migrations); the rows go in with executemany, in one
transaction, because 100,000 incidents through webhooks would take minutes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from receiver.alertmanager.webhook import fingerprint_of
from receiver.config.model import Config
from receiver.escalation.codec import state_to_dict
from receiver.escalation.plan import EscalationState, EscalationStatus
from receiver.routing.tree import group_key
from receiver.store import SqliteStore
from receiver.store.codec import dumps, to_us

TEAM = "platform"
POLICY = "standard"
STEP_KEY = "0:0:1"  # run 0, cycle 0, step 1: the step the seeded deadlines fire
CHUNK = 10_000


async def seed(
    db: Path, config: Config, count: int, opened: datetime, due: datetime
) -> None:
    """`count` open incidents, ids 1..count, each with a step-1 deadline at `due`."""
    await _migrate(db)
    policy = config.policy_for(POLICY, TEAM)
    state = EscalationState(
        policy, EscalationStatus.ACTIVE, next_step=1, cycle_started_at=opened,
        last_fired_at=opened, last_fired_step=0, last_fired_cycle=0,
    )
    escalation = dumps(state_to_dict(state))
    at, due_us = to_us(opened), to_us(due)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for first in range(1, count + 1, CHUNK):
            ids = range(first, min(first + CHUNK, count + 1))
            _insert(conn, config, ids, at, due_us, escalation)
        conn.execute("COMMIT")
    finally:
        conn.close()


async def _migrate(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    await store.close()


def _insert(
    conn: sqlite3.Connection, config: Config, ids: range, at: int, due: int, escalation: str
) -> None:
    incidents, alerts, events, deadlines = [], [], [], []
    for n in ids:
        labels = {"alertname": f"Seeded{n}", "cluster": f"c{n % 4}", "severity": "critical"}
        group = {"alertname": labels["alertname"], "cluster": labels["cluster"]}
        summary = f"Seeded{n} is failing"
        incidents.append((
            n, group_key(config.route.id, group), config.route.id, TEAM, "SEV1", POLICY,
            dumps(group), "triggered", at, at, 0, "http://alertmanager.bench:9093", summary,
            escalation,
        ))
        alerts.append((
            n, fingerprint_of(labels), at, "firing", dumps(labels), dumps({"summary": summary}),
            "http://prometheus.bench:9090/graph", at,
        ))
        events.extend([
            (n, at, "opened", "alertmanager", dumps({"alertname": labels["alertname"]})),
            (n, at, "alert_added", "alertmanager", dumps({"alertname": labels["alertname"]})),
            (n, at, "step_fired", "ackd", dumps({"step": 0, "number": 1, "cycle": 0, "run": 0,
                                                "reason": "triggered", "recipients": ["ana"]})),
        ])
        deadlines.append((n, due, "step", STEP_KEY))
    conn.executemany(
        "INSERT INTO incidents (id, group_key, route_id, team, severity, policy, group_labels,"
        " state, opened_at, updated_at, truncated_alerts, external_url, summary, escalation)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", incidents)
    conn.executemany(
        "INSERT INTO alerts (incident_id, fingerprint, starts_at, status, labels, annotations,"
        " generator_url, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", alerts)
    conn.executemany(
        "INSERT INTO timeline (incident_id, at, kind, actor, detail) VALUES (?, ?, ?, ?, ?)",
        events)
    conn.executemany(
        "INSERT INTO deadlines (incident_id, due, kind, key) VALUES (?, ?, ?, ?)", deadlines)


def spread(first: int, count: int, start: datetime, per_second: float) -> dict[int, int]:
    """Due times (µs) for incidents first..first+count-1, evenly `1/per_second` apart."""
    step = timedelta(seconds=1 / per_second)
    return {first + i: to_us(start + i * step) for i in range(count)}


def reschedule(db: Path, dues: Mapping[int, int]) -> None:
    """Move these incidents' step-1 deadlines (ackd must be stopped)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "UPDATE deadlines SET due = ? WHERE incident_id = ? AND kind = 'step' AND key = ?",
            [(due, n, STEP_KEY) for n, due in dues.items()],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def wait_fired(db: Path, dues: Mapping[int, int], within: float) -> bool:
    """Poll (read-only, beside the running ackd) until no deadline of `dues` is left, for at
    most `within` seconds; whether they all fired."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if armed(db, dues) == 0:
            return True
        await asyncio.sleep(0.5)
    return False


def armed(db: Path, dues: Mapping[int, int]) -> int:
    """How many deadlines of `dues` are still armed (not fired)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT count(*) FROM deadlines WHERE kind = 'step' AND key = ? AND due <= ?",
            (STEP_KEY, max(dues.values())),
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def lateness(db: Path, dues: Mapping[int, int]) -> list[float]:
    """Seconds from each deadline's due time to the moment its step fired (its timeline
    event's time, taken in the transaction that deleted the deadline)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT incident_id, at FROM timeline WHERE kind = 'step_fired'"
            " AND json_extract(detail, '$.step') = 1"
        ).fetchall()
    finally:
        conn.close()
    return [(at - dues[n]) / 1e6 for n, at in rows if n in dues]


def fired_incidents(db: Path, dues: Mapping[int, int]) -> list[int]:
    """The incident of each step-1 event of `dues` (an incident twice: fired twice)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT incident_id FROM timeline WHERE kind = 'step_fired'"
            " AND json_extract(detail, '$.step') = 1"
        ).fetchall()
    finally:
        conn.close()
    return [int(n) for (n,) in rows if n in dues]
