"""Domain-level reads and writes inside one writer batch (see sqlite.py for the batching)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from receiver.core.errors import NotFound
from receiver.core.model import (
    ALERT_STATUSES,
    Alert,
    Incident,
    IncidentState,
    TimelineEvent,
)
from receiver.escalation.staleness import RESOLVED_BY
from receiver.ingest.grouping import KnownAlert, OpenGroup
from receiver.store.codec import (
    INCIDENT_COLUMNS,
    dumps,
    from_us,
    grafana_column,
    incident_from_row,
    loads,
    opt_from_us,
    to_us,
)


@dataclass(frozen=True, slots=True)
class NewIncident:
    group_key: str
    route_id: str
    team: str
    severity: str
    policy: str
    group_labels: dict[str, str]
    opened_at: datetime
    external_url: str
    summary: str
    truncated_alerts: int = 0


@dataclass(frozen=True, slots=True)
class ArmedDeadline:
    id: int
    incident_id: int
    due: datetime
    kind: str
    key: str


# The due time of a leased outbox row (see migration 5): later than any time a row is due.
LEASED = (1 << 62)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One notification waiting to go out (or to be retried)."""

    id: int
    incident_id: int
    created_at: datetime
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime


class Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        # One cursor for every statement of the batch: a cursor per statement (what
        # Connection.execute makes) costs a third of a cheap statement's time.
        self._cur = conn.cursor()
        self._after_commit: list[Callable[[], None]] = []
        # Incidents as this batch last wrote or read them: a webhook reads its incident again
        # after each step of its change, and only this connection writes.
        self._incidents: dict[int, Incident] = {}

    # -- bookkeeping for the writer -------------------------------------------------------

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the batch is durable (e.g. arm an in-memory timer)."""
        self._after_commit.append(callback)

    def mark(self) -> int:
        return len(self._after_commit)

    def rewind(self, mark: int) -> None:
        """A job failed and its writes were rolled back: forget what it did."""
        del self._after_commit[mark:]
        self._incidents.clear()

    def run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._cur.execute(sql, params).fetchall()

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One statement's rows, for the store modules of other concepts (store/oncall.py)."""
        return await self._all(sql, params)

    # -- incidents and alerts -------------------------------------------------------------

    async def open_group(self, group_key: str) -> OpenGroup | None:
        rows = await self._all(
            "SELECT i.id, a.fingerprint, a.starts_at, a.status, a.ends_at FROM incidents i"
            " LEFT JOIN alerts a ON a.incident_id = i.id"
            " WHERE i.group_key = ? AND i.state != 'resolved'",
            (group_key,),
        )
        if not rows:
            return None
        current: dict[str, KnownAlert] = {}
        for _, fingerprint, starts_at, status, ends_at in rows:
            if fingerprint is None:
                continue
            known = current.get(fingerprint)
            if known is None or to_us(known.starts_at) < starts_at:
                current[fingerprint] = KnownAlert(
                    from_us(starts_at), ALERT_STATUSES[status], opt_from_us(ends_at)
                )
        return OpenGroup(int(rows[0][0]), current)

    async def past_episodes(
        self, group_key: str, fingerprints: Iterable[str]
    ) -> dict[str, list[tuple[datetime, datetime]]]:
        """The episodes of these fingerprints that are over, in any incident of the group,
        as (start, end) by fingerprint (see grouping.PastEpisodes): those Alertmanager
        resolved, and those still firing in an incident a person resolved, which ended for
        us when they resolved it. An incident resolved as stale was judged by nobody: its
        alerts reported firing again are news, not the past."""
        wanted = sorted(set(fingerprints))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = await self._all(
            "SELECT a.fingerprint, a.starts_at, CASE WHEN a.status = 'resolved'"
            " THEN coalesce(a.ends_at, a.starts_at) ELSE i.resolved_at END"
            " FROM alerts a JOIN incidents i ON i.id = a.incident_id"
            f" WHERE i.group_key = ? AND a.fingerprint IN ({marks})"
            " AND (a.status = 'resolved' OR (i.state = 'resolved' AND i.resolved_by IS NOT ?))",
            (group_key, *wanted, RESOLVED_BY),
        )
        past: dict[str, list[tuple[datetime, datetime]]] = {}
        for fp, start, end in rows:
            past.setdefault(fp, []).append((from_us(start), from_us(max(start, end))))
        return past

    async def last_incident_id(self, group_key: str) -> int | None:
        rows = await self._all(
            "SELECT max(id) FROM incidents WHERE group_key = ?", (group_key,)
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    async def insert_incident(self, new: NewIncident, previous_id: int | None) -> int:
        at = to_us(new.opened_at)
        cur = self._cur.execute(
            "INSERT INTO incidents (group_key, route_id, team, severity, policy, group_labels,"
            " state, opened_at, updated_at, previous_id, truncated_alerts, external_url, summary)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new.group_key, new.route_id, new.team, new.severity, new.policy,
                dumps(new.group_labels), IncidentState.TRIGGERED.value, at, at, previous_id,
                new.truncated_alerts, new.external_url, new.summary,
            ),
        )
        assert cur.lastrowid is not None
        incident_id = int(cur.lastrowid)
        self._incidents[incident_id] = Incident(
            id=incident_id, group_key=new.group_key, route_id=new.route_id, team=new.team,
            severity=new.severity, policy=new.policy, group_labels=dict(new.group_labels),
            state=IncidentState.TRIGGERED, opened_at=new.opened_at, updated_at=new.opened_at,
            previous_id=previous_id, truncated_alerts=new.truncated_alerts,
            external_url=new.external_url, summary=new.summary,
        )
        return incident_id

    async def incident(self, incident_id: int) -> Incident:
        found = await self.find_incident(incident_id)
        if found is None:
            raise NotFound(f"incident {incident_id} does not exist")
        return found

    async def find_incident(self, incident_id: int) -> Incident | None:
        known = self._incidents.get(incident_id)
        if known is not None:
            return known
        rows = await self._all(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)
        )
        if not rows:
            return None
        found = self._incidents[incident_id] = incident_from_row(tuple(rows[0]))
        return found

    async def write_alerts(self, incident_id: int, alerts: Sequence[Alert], now: datetime) -> None:
        at = to_us(now)
        # `_value_`, not `.value`, here and in `append`: the enum's property costs ten times the
        # plain attribute, on every alert and event of a storm (and SQLite binds the str
        # subclass itself slower still).
        self._cur.executemany(
            "INSERT INTO alerts (incident_id, fingerprint, starts_at, ends_at, status, labels,"
            " annotations, generator_url, updated_at, grafana)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (incident_id, fingerprint, starts_at) DO UPDATE SET"
            " ends_at = excluded.ends_at, status = excluded.status,"
            " annotations = excluded.annotations, updated_at = excluded.updated_at,"
            " grafana = excluded.grafana",
            [
                (
                    incident_id, a.fingerprint, to_us(a.starts_at),
                    None if a.ends_at is None else to_us(a.ends_at), a.status._value_,
                    dumps(a.labels), dumps(a.annotations), a.generator_url, at,
                    grafana_column(a.grafana),
                )
                for a in alerts
            ],
        )

    async def move_alert_starts(
        self, incident_id: int, moves: Sequence[tuple[str, datetime, datetime]]
    ) -> None:
        """Re-key alerts whose episode start moved back (fingerprint, from, to): the row
        stays one episode, under its earliest start. OR REPLACE: only a row that an older
        ackd left firing beside a later one of the same fingerprint can hold that key, and
        it is the same episode."""
        self._cur.executemany(
            "UPDATE OR REPLACE alerts SET starts_at = ? WHERE incident_id = ? AND fingerprint = ?"
            " AND starts_at = ?",
            [(to_us(to), incident_id, fp, to_us(was)) for fp, was, to in moves],
        )

    async def update_incident(self, incident_id: int, now: datetime, **fields: Any) -> None:
        """Set columns (datetimes converted) and bump updated_at."""
        values = {k: _column_value(v) for k, v in fields.items()}
        values["updated_at"] = to_us(now)
        assignments = ", ".join(f"{column} = ?" for column in values)
        self._cur.execute(
            f"UPDATE incidents SET {assignments} WHERE id = ?", (*values.values(), incident_id)
        )
        known = self._incidents.get(incident_id)
        if known is not None:
            self._incidents[incident_id] = replace(known, updated_at=now, **fields)

    async def append(self, incident_id: int, events: Iterable[TimelineEvent]) -> None:
        rows = []
        at, us = None, 0
        for e in events:
            if e.at is not at:  # a change's events share one instant: convert it once
                at, us = e.at, to_us(e.at)
            rows.append((incident_id, us, e.kind._value_, e.actor, dumps(e.detail)))
        if rows:
            self._cur.executemany(
                "INSERT INTO timeline (incident_id, at, kind, actor, detail)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    # -- escalation state, deadlines, round robin -----------------------------------------

    async def escalation(self, incident_id: int) -> dict[str, Any] | None:
        rows = await self._all("SELECT escalation FROM incidents WHERE id = ?", (incident_id,))
        if not rows or rows[0][0] is None:
            return None
        state: dict[str, Any] = loads(rows[0][0])
        return state

    async def set_escalation(self, incident_id: int, state: dict[str, Any]) -> None:
        self._cur.execute(
            "UPDATE incidents SET escalation = ? WHERE id = ?", (dumps(state), incident_id)
        )

    async def arm(
        self, incident_id: int, deadlines: Iterable[tuple[datetime, str, str]]
    ) -> list[ArmedDeadline]:
        """Insert or move deadlines; the same (kind, key) is one deadline (idempotent)."""
        armed: list[ArmedDeadline] = []
        for due, kind, key in deadlines:
            rows = await self._all(
                "INSERT INTO deadlines (incident_id, due, kind, key) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (incident_id, kind, key) DO UPDATE SET due = excluded.due"
                " RETURNING id",
                (incident_id, to_us(due), kind, key),
            )
            armed.append(ArmedDeadline(int(rows[0][0]), incident_id, due, kind, key))
        return armed

    async def arm_once(
        self, incident_id: int, due: datetime, kind: str, key: str
    ) -> ArmedDeadline | None:
        """Arm a deadline of this kind unless the incident has one already, whatever its key:
        the armed deadline, or None when one was there."""
        rows = await self._all(
            "INSERT INTO deadlines (incident_id, due, kind, key) SELECT ?, ?, ?, ?"
            " WHERE NOT EXISTS (SELECT 1 FROM deadlines WHERE incident_id = ? AND kind = ?)"
            " RETURNING id",
            (incident_id, to_us(due), kind, key, incident_id, kind),
        )
        if not rows:
            return None
        return ArmedDeadline(int(rows[0][0]), incident_id, due, kind, key)

    async def cancel(self, incident_id: int, kinds: Iterable[str]) -> None:
        wanted = list(kinds)
        if wanted:
            marks = ",".join("?" * len(wanted))
            self._cur.execute(
                f"DELETE FROM deadlines WHERE incident_id = ? AND kind IN ({marks})",
                (incident_id, *wanted),
            )

    async def take_deadline(self, deadline_id: int, now: datetime) -> ArmedDeadline | None:
        """Remove and return a deadline that is due; None if it was cancelled, fired already,
        or moved later. The timer heap may hold a stale entry for this id: SQLite reuses the
        ids of deleted rows and `arm` moves a deadline in place, so only the row's own due
        time says whether it may fire."""
        rows = await self._all(
            "DELETE FROM deadlines WHERE id = ? AND due <= ?"
            " RETURNING id, incident_id, due, kind, key",
            (deadline_id, to_us(now)),
        )
        if not rows:
            return None
        row = rows[0]
        return ArmedDeadline(int(row[0]), int(row[1]), from_us(row[2]), row[3], row[4])

    async def round_robin(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        cursors = dict.fromkeys(keys, 0)
        for policy in {policy for policy, _ in cursors}:
            rows = await self._all(
                "SELECT step, cursor FROM round_robin WHERE policy = ?", (policy,)
            )
            for step, cursor in rows:
                if (policy, step) in cursors:
                    cursors[(policy, step)] = int(cursor)
        return cursors

    async def advance_round_robin(self, keys: Iterable[tuple[str, int]]) -> None:
        self._cur.executemany(
            "INSERT INTO round_robin (policy, step, cursor) VALUES (?, ?, 1)"
            " ON CONFLICT (policy, step) DO UPDATE SET cursor = cursor + 1",
            list(keys),
        )

    async def paged_recipients(self, incident_id: int) -> list[str]:
        """Users paged for this incident so far, in the order they were first paged."""
        rows = await self._all(
            "SELECT json_extract(detail, '$.recipient') AS who, min(id) FROM timeline"
            " WHERE incident_id = ? AND kind = 'notification_sent'"
            " AND json_extract(detail, '$.recipient_kind') = 'user'"
            " AND json_extract(detail, '$.reason') IN"
            " ('triggered', 'escalated', 'reminder', 're_escalated')"
            " GROUP BY who ORDER BY min(id)",
            (incident_id,),
        )
        return [str(r[0]) for r in rows if r[0] is not None]

    async def reached(self, incident_id: int, recipient: str, step: int, cycle: int) -> bool:
        """Whether a page of this step reached `recipient`, or one is still waiting to go."""
        sent = await self._all(
            "SELECT 1 FROM timeline WHERE incident_id = ? AND kind = 'notification_sent'"
            " AND json_extract(detail, '$.recipient') = ? AND json_extract(detail, '$.step') = ?"
            " AND json_extract(detail, '$.cycle') = ? LIMIT 1",
            (incident_id, recipient, step, cycle),
        )
        if sent:
            return True
        pending = await self._all(
            "SELECT 1 FROM outbox WHERE incident_id = ?"
            " AND json_extract(payload, '$.recipient') = ? AND json_extract(payload, '$.step') = ?"
            " AND json_extract(payload, '$.cycle') = ? LIMIT 1",
            (incident_id, recipient, step, cycle),
        )
        return bool(pending)

    # -- outbox ---------------------------------------------------------------------------

    async def enqueue(
        self, incident_id: int, payloads: Iterable[dict[str, Any]], now: datetime
    ) -> list[int]:
        ids: list[int] = []
        at = to_us(now)  # created now, and due at once
        for payload in payloads:
            cur = self._cur.execute(
                "INSERT INTO outbox (incident_id, created_at, payload, next_attempt_at)"
                " VALUES (?, ?, ?, ?)",
                (incident_id, at, dumps(payload), at),
            )
            assert cur.lastrowid is not None
            ids.append(int(cur.lastrowid))
        return ids

    async def due_outbox(self, now: datetime, limit: int) -> list[OutboxRow]:
        """Rows due by `now`, oldest first, leases left as they are (rows in flight are not
        due: they are not here)."""
        rows = await self._all(
            "SELECT id, incident_id, created_at, payload, attempts, next_attempt_at FROM outbox"
            " WHERE next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
            (to_us(now), limit),
        )
        return [_outbox_row(r) for r in rows]

    async def lease_due_outbox(self, now: datetime, limit: int) -> list[OutboxRow]:
        """Take the rows due by `now`, oldest first, and lease them: until their result is
        written (finish_outbox, retry_outbox) or release_outbox, no one reads them again."""
        rows = await self._all(
            "UPDATE outbox SET leased_from = next_attempt_at, next_attempt_at = ?"
            " WHERE id IN (SELECT id FROM outbox WHERE next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?)"
            " RETURNING id, incident_id, created_at, payload, attempts, leased_from",
            (LEASED, to_us(now), limit),
        )
        rows.sort(key=lambda r: (r[5], r[0]))  # RETURNING promises no order
        return [_outbox_row(r) for r in rows]

    async def release_outbox(self, outbox_id: int, due: datetime) -> None:
        """End a lease without a result: the row is due again at `due`."""
        self._cur.execute(
            "UPDATE outbox SET next_attempt_at = ?, leased_from = NULL"
            " WHERE id = ? AND leased_from IS NOT NULL",
            (to_us(due), outbox_id),
        )

    async def finish_outbox(self, outbox_id: int) -> None:
        self._cur.execute("DELETE FROM outbox WHERE id = ?", (outbox_id,))

    async def retry_outbox(self, outbox_id: int, attempts: int, next_at: datetime) -> None:
        self._cur.execute(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, leased_from = NULL"
            " WHERE id = ?",
            (attempts, to_us(next_at), outbox_id),
        )


def _outbox_row(r: Sequence[Any]) -> OutboxRow:
    return OutboxRow(int(r[0]), int(r[1]), from_us(r[2]), loads(r[3]), int(r[4]), from_us(r[5]))


def _column_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_us(value)
    if isinstance(value, IncidentState):
        return value.value
    return value
