"""Writes a PostgreSQL batch holds back to send with its next statement: every statement is a
round trip to another process, costing CPU in both, and a webhook's job writes its alerts, its
timeline events and its incident's row (state, escalation, updated_at) one after the other.

Held are writes whose caller needs no answer: alerts upserted, timeline events appended,
incident columns set, deadlines cancelled (a resolution's, an acknowledgement's), and outbox
rows finished (deleted) or rescheduled (a retry, a deferral: a dispatcher pass defers a
bundle's rows, a delivery's record finishes them, one statement per row before). They go
out as data-modifying CTEs in front of the next statement that may carry them (one that
touches none of their rows: a deadline armed of a kind not cancelled, a group's read when they
touch no incident of that group, the paged recipients' read when no page's fate is held),
else as a statement of their own before any other
statement (a read must see them), and at the end of the job when it runs in a savepoint (which
must hold them); without savepoints, a job's writes wait for the batch's next statement (the
next job's), the last job's going at its end (store.py's _run_optimistic). The pages a job
enqueues are held too (outbox.py's enqueue), and go out with these in the same round trip. The
sub-statements of one WITH see one
snapshot and none sees another's effects, so what is held keeps one write per row: an alert
named twice keeps its last report, an incident set twice keeps one row of columns, the later
value of each winning, as the statements one after the other would leave them; an outbox row
finished after it was rescheduled is only deleted, and one rescheduled after it was finished
stays deleted. Timeline events keep their order (their ids rise in the order appended)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

# The rows of alerts and events go as one JSON parameter each (an array of objects, taken
# apart by json_to_recordset), not as a parameter per column: asyncpg checks every element of
# an array parameter against collections.abc's Iterable and Sized (Python-level isinstance
# calls), which made the arrays a tenth of the loop's instructions on the ingest path;
# msgspec writes the JSON in one call, and PostgreSQL parses it once.
_ALERTS = (
    "held_alerts AS (INSERT INTO alerts (incident_id, fingerprint, starts_at, ends_at, status,"
    " labels, annotations, generator_url, updated_at, grafana)"
    " SELECT * FROM json_to_recordset({}::json) AS t(i bigint, f text, s bigint, e bigint,"
    " st text, l text, a text, u text, up bigint, g text)"
    " ON CONFLICT (incident_id, fingerprint, starts_at) DO UPDATE SET"
    " ends_at = excluded.ends_at, status = excluded.status,"
    " annotations = excluded.annotations, updated_at = excluded.updated_at,"
    " grafana = excluded.grafana)"
)
_ALERT_KEYS = ("i", "f", "s", "e", "st", "l", "a", "u", "up", "g")
_EVENTS = (
    "held_events AS (INSERT INTO timeline (incident_id, at, kind, actor, detail)"
    " SELECT i, t, k, a, d FROM ROWS FROM (json_to_recordset({}::json)"
    " AS (i bigint, t bigint, k text, a text, d text)) WITH ORDINALITY AS r(i, t, k, a, d, n)"
    " ORDER BY n)"
)
_EVENT_KEYS = ("i", "t", "k", "a", "d")
_JSON = msgspec.json.Encoder()
# The rows' ids and values go through sub-selects, as the held escalation states' do
# (statements.py's _STATES): `= ANY` and `unnest` of a bare parameter are costed at 10 rows in
# a prepared statement's generic plan but at the array's length in a custom one, so on an
# outbox of some size (the usual one or two rows against 10) PostgreSQL planned these at every
# execution; behind a sub-select both plans cost 10 rows, and the generic plan is kept.
_FINISHED = (
    "held_finished AS (DELETE FROM outbox WHERE id = ANY((SELECT {}::bigint[])::bigint[]))"
)
# Deadlines cancelled: an incident's of some kinds, (incident, kind) pairs through sub-selects
# (as above). A statement that writes deadlines of an incident with a cancel held does not
# carry it (deadlines.py sends it first): one WITH must not delete and upsert one row.
_CANCELLED = (
    "held_cancelled AS (DELETE FROM deadlines USING unnest((SELECT {}::bigint[]),"
    " (SELECT {}::text[])) AS c(incident_id, kind)"
    " WHERE deadlines.incident_id = c.incident_id AND deadlines.kind = c.kind)"
)
# As OutboxStatements.retry_outbox: only a lease this replica holds (a lease that lapsed and
# another replica took is that replica's, and so is the row's result); and, for a deferral (no
# attempt counted: defer_outbox), a row no one leases that was never attempted: a row already
# waiting for a bundle whose time a high-urgency page pulled earlier (noise.py's rule 3, its
# `reschedule`) is moved with it, as on SQLite (the pass holds the URL's history locked, and a
# waiting row is not due, so no other replica takes it meanwhile). The attempts go as a
# bigint[] (the column is an integer: assigned, it is cast): asyncpg knows the codecs of
# bigint[] and text[] on every connection, not that of integer[], which it asked each pool
# connection's server for before the first reschedule it sent (its type introspection, about
# 20 ms of PostgreSQL's CPU: a start's eight connections, 170 ms).
_RESCHEDULED = (
    "held_rescheduled AS (UPDATE outbox SET attempts = r.attempts,"
    " next_attempt_at = r.next_attempt_at, leased_from = NULL, leased_by = NULL"
    " FROM unnest((SELECT {}::bigint[]), (SELECT {}::bigint[]), (SELECT {}::bigint[]))"
    " AS r(id, attempts, next_attempt_at) WHERE outbox.id = r.id AND (outbox.leased_by = {}"
    " OR (r.attempts = 0 AND outbox.leased_from IS NULL AND outbox.attempts = 0)))"
)


@dataclass(slots=True)
class Held:
    # (incident, fingerprint, start) -> (ends, status, labels, annotations, url, updated_at,
    # grafana): the row's last report.
    alerts: dict[tuple[int, str, int], tuple[Any, ...]] = field(default_factory=dict)
    # (incident, at, kind, actor, detail), in the order appended: a row each, a run of
    # per-alert events packed into one (store/codec.py's timeline_rows).
    events: list[tuple[int, int, str, str, str]] = field(default_factory=list)
    # incident -> column -> value (as stored: microseconds, the state's value, JSON text).
    updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Deadlines cancelled: incident -> the kinds whose deadlines are deleted.
    cancelled: dict[int, set[str]] = field(default_factory=dict)
    # Outbox rows deleted (their delivery ended), in the order finished.
    finished: dict[int, None] = field(default_factory=dict)
    # Outbox row -> (attempts, next attempt in µs): its lease ended, due again then.
    rescheduled: dict[int, tuple[int, int]] = field(default_factory=dict)
    # The replica whose leases a reschedule ends (store/postgres/replicas.py).
    replica: int | None = None

    def __bool__(self) -> bool:
        return bool(self.alerts or self.events or self.updates or self.cancelled
                    or self.finished or self.rescheduled)

    def clear(self) -> None:
        self.alerts.clear()
        self.events.clear()
        self.updates.clear()
        self.cancelled.clear()
        self.finished.clear()
        self.rescheduled.clear()

    def update(self, incident_id: int, values: dict[str, Any]) -> None:
        self.updates.setdefault(incident_id, {}).update(values)

    def cancel(self, incident_id: int, kinds: list[str]) -> None:
        self.cancelled.setdefault(incident_id, set()).update(kinds)

    def finish(self, outbox_id: int) -> None:
        self.rescheduled.pop(outbox_id, None)
        self.finished[outbox_id] = None

    def reschedule(self, outbox_id: int, attempts: int, next_at: int) -> None:
        if outbox_id not in self.finished:  # one after the other, it would find no row
            self.rescheduled[outbox_id] = (attempts, next_at)

    def ctes(self, first: int) -> tuple[str, list[Any]]:
        """A WITH of what is held, only the kinds of write held (each CTE costs the server
        and the client even when empty), its parameters numbered from `first`; then nothing
        is held. An incident's update names only the columns set, in a stable order: the
        statement's text repeats, and asyncpg prepares each text once per connection."""
        params: list[Any] = []

        def numbered(values: list[Any]) -> list[str]:
            params.extend(values)
            return [f"${first + len(params) - len(values) + k}" for k in range(len(values))]

        parts = []
        if self.alerts:
            alerts = [dict(zip(_ALERT_KEYS, (*k, *v), strict=True))
                      for k, v in self.alerts.items()]
            parts.append(_ALERTS.format(*numbered([_JSON.encode(alerts).decode()])))
        if self.events:
            events = [dict(zip(_EVENT_KEYS, e, strict=True)) for e in self.events]
            parts.append(_EVENTS.format(*numbered([_JSON.encode(events).decode()])))
        for n, (incident_id, values) in enumerate(self.updates.items()):
            columns = sorted(values)
            *sets, where = numbered([*(values[c] for c in columns), incident_id])
            assignments = ", ".join(f"{c} = {v}" for c, v in zip(columns, sets, strict=True))
            parts.append(f"held_update{n} AS (UPDATE incidents SET {assignments}"
                         f" WHERE id = {where})")
        if self.cancelled:
            pairs = [(i, kind) for i, kinds in self.cancelled.items() for kind in sorted(kinds)]
            parts.append(_CANCELLED.format(*numbered(
                [[i for i, _ in pairs], [kind for _, kind in pairs]])))
        if self.finished:
            parts.append(_FINISHED.format(*numbered([list(self.finished)])))
        if self.rescheduled:
            again = list(self.rescheduled.items())
            parts.append(_RESCHEDULED.format(*numbered([
                [k for k, _ in again], [v[0] for _, v in again], [v[1] for _, v in again],
                self.replica,
            ])))
        self.clear()
        return "WITH " + ", ".join(parts) + " ", params
