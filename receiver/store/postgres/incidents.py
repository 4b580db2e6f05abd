"""Incidents and their alerts, inside one batch on PostgreSQL: the SQL the ingest path needs.

Two replicas may take the same group at the same moment. The open group's incident row is
read FOR NO KEY UPDATE, so the second waits for the first's commit and then sees what it
wrote; two that both find no open incident both insert, and the unique index
incidents_open_group refuses the second, whose job the store runs again (it then finds the
first's incident). A group is found by md5(group_key) = md5($1::text), which the indexes
hold (a key may be too long for a B-tree entry: schema.py's migration 14), and by
group_key = $1."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from receiver.core.errors import NotFound
from receiver.core.frozen import replace
from receiver.core.model import (
    ALERT_STATUSES,
    STALE_ACTOR,
    Alert,
    Incident,
    IncidentState,
    KnownAlert,
    OpenGroup,
)
from receiver.store.codec import (
    INCIDENT_COLUMNS,
    INCIDENT_STATES,
    dumps,
    from_us,
    grafana_column,
    incident_from_row,
    opt_from_us,
    to_us,
)
from receiver.store.postgres.statements import Statements
from receiver.store.postgres.text import escape
from receiver.store.records import IncidentBrief, NewIncident

# Each open incident's row version: xmin, the transaction (or savepoint) that wrote the row
# last. Every UPDATE writes a new row version with the writer's own xmin, so the value
# changes with each committed write to the incident and repeats none while any memo could
# still hold it (xids wrap after 2^32 transactions; freezing keeps the value, see the docs'
# "xmin" under system columns).
VERSIONS = (
    "SELECT id, xmin::text::bigint FROM incidents"
    " WHERE id = ANY($1::bigint[]) AND state != 'resolved'"
)


# The incidents a dispatcher pass decides on (peek_incidents), by id, as committed. The ids
# go through a sub-select for the reason held escalation states do (statements.py's
# _STATES): the generic plan costs `= ANY` of a bare parameter at 10 ids, a custom plan at
# the ids at hand (usually one or two: 47 against 8-13), so PostgreSQL planned the read at
# every call (180 plans for 190 calls in bench/pgcost.py); behind the sub-select both plans
# cost 10 ids (the same index scan of the primary key), and the generic plan is kept.
PEEK = (
    f"SELECT {INCIDENT_COLUMNS} FROM incidents"
    " WHERE id = ANY((SELECT $1::bigint[])::bigint[])"
)

# The id, state and severity of incidents by id, locked as find_incidents locks them (in id
# order), their ids through a sub-select as PEEK's.
BRIEFS = (
    "SELECT id, state, severity FROM incidents"
    " WHERE id = ANY((SELECT $1::bigint[])::bigint[]) ORDER BY id FOR NO KEY UPDATE"
)


# A group's open incident (locked: another replica's batch waits for this one's commit, then
# sees it), its escalation state and the episodes it holds (as arrays), and the group's last
# incident: one round trip for what the ingest path asks first. The locking read is a CTE of
# its own so that it locks the incident's row only, not its alerts'; `known` is an aggregate,
# so there is one row whether or not the group has an open incident.
#
# With them, what the batch's commit reports as the incident's row version (transaction.py's
# read_versions) without reading it again: the row's xmin as locked here, and the batch's
# own transaction id (its low 32 bits, as xmin shows it), which every row the batch writes
# will carry. Asked for only with an open incident: locking its row gives the transaction an
# id anyway (a row lock records its holder's id), where asking without one would give an id
# (and a commit record to flush) to a batch that may write nothing (a resend of a group
# resolved already); an incident inserted brings the id back itself (insert_incident).
OPEN_GROUP = (
    f"WITH open AS (SELECT {INCIDENT_COLUMNS}, escalation, xmin::text::bigint FROM incidents"
    " WHERE md5(group_key) = md5($1::text) AND group_key = $1 AND state != 'resolved'"
    " FOR NO KEY UPDATE),"
    " known AS (SELECT array_agg(a.fingerprint) AS fps, array_agg(a.starts_at) AS starts,"
    " array_agg(a.status) AS statuses, array_agg(a.ends_at) AS ends"
    " FROM alerts a JOIN open o ON a.incident_id = o.id)"
    " SELECT (SELECT max(id) FROM incidents WHERE md5(group_key) = md5($1::text)"
    " AND group_key = $1), k.fps, k.starts,"
    " k.statuses, k.ends, CASE WHEN o.id IS NULL THEN NULL ELSE txid_current() & 4294967295 END,"
    " o.* FROM known k LEFT JOIN open o ON true"
)


class IncidentStatements(Statements):
    async def open_group(self, group_key: str) -> OpenGroup | None:
        """The group's open incident and the episodes it holds, in one statement that also
        reads (and the batch remembers) the incident's row and escalation state, and the
        group's last incident: what the ingest path asks next, answered without a round
        trip (incident(), escalation(), last_incident_id())."""
        if self._held_apart_from(group_key):
            row = (await self._carry_into_with(OPEN_GROUP, group_key))[0]
        else:
            row = (await self._all(OPEN_GROUP, group_key))[0]
        if row[6] is None:  # no open incident: the group's last one is what a new one follows
            self._last_ids[group_key] = None if row[0] is None else int(row[0])
            return None
        incident = incident_from_row(tuple(row[6:24]))
        self._incidents[incident.id] = incident
        self._escalations[incident.id] = row[24]
        self._xmins[incident.id] = int(row[25])
        self._xid = int(row[5])
        current: dict[str, KnownAlert] = {}
        for fingerprint, starts_at, status, ends_at in zip(
            row[1] or (), row[2] or (), row[3] or (), row[4] or (), strict=True
        ):
            known = current.get(fingerprint)
            if known is None or to_us(known.starts_at) < starts_at:
                current[fingerprint] = KnownAlert(
                    from_us(starts_at), ALERT_STATUSES[status], opt_from_us(ends_at)
                )
        return OpenGroup(incident.id, current)

    def _held_apart_from(self, group_key: str) -> bool:
        """Whether the writes held touch nothing OPEN_GROUP reads of this group (its
        incidents' rows and the open one's alerts), so that they can go in its statement:
        its reads see the snapshot from before the statement's own writes. Held alerts,
        columns and escalation states name incidents of other groups (known to the batch:
        it wrote or read them); timeline events and outbox rows are not read there."""
        for incident_id in (*(key[0] for key in self._held.alerts), *self._held.updates):
            known = self._incidents.get(incident_id)
            if known is None or known.group_key == group_key:
                return False
        return True

    async def past_episodes(
        self, group_key: str, fingerprints: Iterable[str]
    ) -> dict[str, list[tuple[datetime, datetime]]]:
        """As the SQLite store's (see there): the episodes of these fingerprints that are
        over, in any incident of the group, by fingerprint."""
        wanted = sorted(set(fingerprints))
        if not wanted:
            return {}
        rows = await self._all(
            "SELECT a.fingerprint, a.starts_at, CASE WHEN a.status = 'resolved'"
            " THEN coalesce(a.ends_at, a.starts_at) ELSE i.resolved_at END"
            " FROM alerts a JOIN incidents i ON i.id = a.incident_id"
            " WHERE md5(i.group_key) = md5($1::text) AND i.group_key = $1"
            " AND a.fingerprint = ANY($2::text[])"
            " AND (a.status = 'resolved'"
            "  OR (i.state = 'resolved' AND i.resolved_by IS DISTINCT FROM $3))",
            group_key, wanted, STALE_ACTOR,
        )
        past: dict[str, list[tuple[datetime, datetime]]] = {}
        for fp, start, end in rows:
            past.setdefault(fp, []).append((from_us(start), from_us(max(start, end))))
        return past

    async def last_incident_id(self, group_key: str) -> int | None:
        if group_key in self._last_ids:  # open_group found none open, and read this with it
            return self._last_ids.pop(group_key)
        found = await self._conn.fetchval(
            "SELECT max(id) FROM incidents WHERE md5(group_key) = md5($1::text)"
            " AND group_key = $1", group_key
        )
        return None if found is None else int(found)

    async def insert_incident(self, new: NewIncident, previous_id: int | None) -> int:
        at = to_us(new.opened_at)
        # Its xmin is the batch's transaction id (see OPEN_GROUP).
        row = (await self._conn.fetch(
            "INSERT INTO incidents (group_key, route_id, team, severity, policy, group_labels,"
            " state, opened_at, updated_at, previous_id, truncated_alerts, external_url, summary)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            " RETURNING id, xmin::text::bigint",
            new.group_key, new.route_id, new.team, new.severity, new.policy,
            dumps(new.group_labels), IncidentState.TRIGGERED.value, at, at, previous_id,
            new.truncated_alerts, new.external_url, new.summary,
        ))[0]
        incident_id, self._xid = int(row[0]), int(row[1])
        self._incidents[incident_id] = Incident(
            id=incident_id, group_key=new.group_key, route_id=new.route_id, team=new.team,
            severity=new.severity, policy=new.policy, group_labels=dict(new.group_labels),
            state=IncidentState.TRIGGERED, opened_at=new.opened_at, updated_at=new.opened_at,
            previous_id=previous_id, truncated_alerts=new.truncated_alerts,
            external_url=new.external_url, summary=new.summary,
        )
        self._escalations[incident_id] = None
        self._new_deadlines[incident_id] = set()
        self._written.add(incident_id)
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
        # Its escalation state too: the next thing most callers ask (a fired step, an ack).
        rows = await self._all(
            f"SELECT {INCIDENT_COLUMNS}, escalation FROM incidents WHERE id = $1"
            " FOR NO KEY UPDATE", incident_id,
        )
        if not rows:
            return None
        found = self._incidents[incident_id] = incident_from_row(tuple(rows[0]))
        self._escalations[incident_id] = rows[0][18]
        return found

    async def find_incidents(self, incident_ids: Sequence[int]) -> dict[int, Incident]:
        """The incidents of these ids that exist, read (and locked, in id order, so that
        two batches locking several never wait on each other in a circle) in one statement."""
        found = {i: known for i in incident_ids if (known := self._incidents.get(i))}
        wanted = sorted({i for i in incident_ids if i not in found})
        if not wanted:
            return found
        rows = await self._all(
            f"SELECT {INCIDENT_COLUMNS}, escalation FROM incidents"
            " WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE", wanted,
        )
        for row in rows:
            incident = incident_from_row(tuple(row))
            found[incident.id] = self._incidents[incident.id] = incident
            self._escalations[incident.id] = row[18]
        return found

    async def incident_briefs(self, incident_ids: Sequence[int]) -> dict[int, IncidentBrief]:
        """find_incidents' read of only the id, state and severity (see store.base), locked
        as it locks; an incident this batch holds already is not read again."""
        found = {i: IncidentBrief(i, known.state, known.severity)
                 for i in incident_ids if (known := self._incidents.get(i))}
        wanted = sorted({i for i in incident_ids if i not in found})
        if wanted:
            for incident_id, state, severity in await self._all(BRIEFS, wanted):
                found[incident_id] = IncidentBrief(
                    incident_id, INCIDENT_STATES.get(state) or IncidentState(state), severity)
        return found

    async def peek_incidents(self, incident_ids: Sequence[int]) -> dict[int, Incident]:
        """The incidents of these ids as last committed, neither locked nor remembered: what a
        dispatcher pass decides on (page still wanted? its team?), as SQLite's writer reads
        them at one instant. Locking them made every lease of a few dozen pages wait for the
        batches ingesting those incidents, and those wait for it: at 32 connections over
        three replicas most of the ingest's lock waits were on the dispatcher's leases."""
        found = {i: known for i in incident_ids if (known := self._incidents.get(i))}
        wanted = sorted({i for i in incident_ids if i not in found})
        if wanted:
            rows = await self._all(PEEK, wanted)
            for row in rows:
                incident = incident_from_row(tuple(row))
                found[incident.id] = incident
        return found

    async def _versions_of(self, incident_ids: Sequence[int]) -> dict[int, int]:
        rows = await self._all(VERSIONS, list(incident_ids))
        return {int(r[0]): int(r[1]) for r in rows}

    async def write_alerts(self, incident_id: int, alerts: Sequence[Alert], now: datetime) -> None:
        """Insert or update the alerts, held to go with the batch's next statement (held.py):
        all of them in one statement, as arrays (an executemany is one statement per row on
        the server). A report naming one episode twice keeps the last, as one upsert after
        another would (labels are the fingerprint's own)."""
        at = to_us(now)
        for a in alerts:
            self._held.alerts[(incident_id, a.fingerprint, to_us(a.starts_at))] = (
                None if a.ends_at is None else to_us(a.ends_at), a.status.value,
                dumps(a.labels), dumps(a.annotations), escape(a.generator_url), at,
                grafana_column(a.grafana),
            )

    async def move_alert_starts(
        self, incident_id: int, moves: Sequence[tuple[str, datetime, datetime]]
    ) -> None:
        """Re-key alerts whose episode start moved back (fingerprint, from, to): the row
        stays one episode, under its earliest start. A row already under the new key (only
        an older ackd left one firing beside a later one of the same fingerprint) is the same
        episode and gives way, as SQLite's UPDATE OR REPLACE does."""
        keys = [(incident_id, fp, to_us(was), to_us(to)) for fp, was, to in moves]
        await self._conn.executemany(
            "DELETE FROM alerts WHERE incident_id = $1 AND fingerprint = $2 AND starts_at = $4"
            " AND $3::bigint <> $4::bigint", keys,
        )
        await self._conn.executemany(
            "UPDATE alerts SET starts_at = $4 WHERE incident_id = $1 AND fingerprint = $2"
            " AND starts_at = $3", keys,
        )

    async def update_incident(self, incident_id: int, now: datetime, **fields: Any) -> None:
        """Set columns (datetimes converted) and bump updated_at: held to go with the batch's
        next statement (held.py)."""
        values = {k: _column_value(v) for k, v in fields.items()}
        values["updated_at"] = to_us(now)
        self._held.update(incident_id, values)
        self._written.add(incident_id)
        known = self._incidents.get(incident_id)
        if known is not None:
            self._incidents[incident_id] = replace(known, updated_at=now, **fields)


def _column_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_us(value)
    if isinstance(value, IncidentState):
        return value.value
    return value
