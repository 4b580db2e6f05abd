"""Incidents and their alerts, inside one writer batch: the SQL the ingest path needs."""

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
from receiver.store.records import IncidentBrief, NewIncident
from receiver.store.sqlite.statements import Statements

_RESOLVED = IncidentState.RESOLVED.value
_TRIGGERED = IncidentState.TRIGGERED.value
# Bound where a column is to be NULL, in a statement that reads it through `nullif(?, '')`
# (write_alerts): never a value of those columns (an integer time, a JSON object's text).
NO_VALUE = ""

# An alert's row, inserted, or changed where it exists (write_alerts).
_UPSERT_INTO = (
    "INSERT INTO alerts (incident_id, fingerprint, starts_at, ends_at, status,"
    " labels, annotations, generator_url, updated_at, grafana)"
    " VALUES ({values})"
    " ON CONFLICT (incident_id, fingerprint, starts_at) DO UPDATE SET"
    " ends_at = excluded.ends_at, status = excluded.status,"
    " annotations = excluded.annotations, updated_at = excluded.updated_at,"
    " grafana = excluded.grafana"
)
_UPSERT = _UPSERT_INTO.format(values="?, ?, ?, nullif(?, ''), ?, ?, ?, ?, ?, nullif(?, '')")
# The row of an alert with no end (a firing one) and no Grafana details: the statement
# writes both NULLs, and neither is bound.
_UPSERT_BARE = _UPSERT_INTO.format(values="?, ?, ?, NULL, ?, ?, ?, ?, ?, NULL")


class IncidentStatements(Statements):
    async def open_group(self, group_key: str) -> OpenGroup | None:
        # The group's last incident: its id and state, then, when it is open, its row whole
        # with its escalation state (the change that follows reads them: two statements fewer
        # when Alertmanager resolves the incident). Not the whole row at once: sqlite3 builds
        # a statement's description, a tuple per column, at each run whether or not a row
        # comes, and a new group (a storm's every webhook) has none: its 20 columns cost the
        # storm's loop 0.8% of its instructions, the mix's open groups' second statement as
        # much as the mix's new groups save.
        # The open one, if any, is the last: one at most is open (incidents_open_group), a new
        # one is inserted only while none is, and a resolved one stays resolved. When none is
        # open, the last one's id is what a new incident follows (last_incident_id), read here.
        newest = await self._all(
            "SELECT id, state FROM incidents WHERE group_key = ? ORDER BY id DESC LIMIT 1",
            (group_key,),
        )
        if not newest or newest[0][1] == _RESOLVED:
            self._last_ids[group_key] = int(newest[0][0]) if newest else None
            return None
        incident_id = int(newest[0][0])
        rows = await self._all(
            f"SELECT {INCIDENT_COLUMNS}, escalation FROM incidents WHERE id = ?", (incident_id,)
        )
        self._read_row(rows[0])
        current: dict[str, KnownAlert] = {}
        latest: dict[str, int] = {}  # each fingerprint's latest start read, in µs
        keys = self._alert_keys[incident_id] = set()
        # A group's alerts mostly share one episode: rows of the same start, status and end
        # in a row share one KnownAlert (a value), its times decoded once (4,000 instructions
        # each, the KnownAlert 2,500).
        last: tuple[int, str, int | None] | None = None
        known = None
        for fingerprint, starts_at, status, ends_at in await self._all(
            "SELECT fingerprint, starts_at, status, ends_at FROM alerts WHERE incident_id = ?",
            (incident_id,),
        ):
            keys.add((fingerprint, starts_at))
            if latest.get(fingerprint, starts_at - 1) >= starts_at:
                continue  # an older episode of a fingerprint whose later one was read
            latest[fingerprint] = starts_at
            if (starts_at, status, ends_at) != last:
                last = (starts_at, status, ends_at)
                known = KnownAlert(from_us(starts_at), ALERT_STATUSES[status],
                                   opt_from_us(ends_at))
            assert known is not None
            current[fingerprint] = known
        return OpenGroup(incident_id, current)

    async def past_episodes(
        self, group_key: str, fingerprints: Iterable[str]
    ) -> dict[str, list[tuple[datetime, datetime]]]:
        """The episodes of these fingerprints that are over, in any incident of the group,
        as (start, end) by fingerprint (see model.PastEpisodes): those Alertmanager
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
            (group_key, *wanted, STALE_ACTOR),
        )
        past: dict[str, list[tuple[datetime, datetime]]] = {}
        for fp, start, end in rows:
            past.setdefault(fp, []).append((from_us(start), from_us(max(start, end))))
        return past

    async def last_incident_id(self, group_key: str) -> int | None:
        if group_key in self._last_ids:  # open_group found none open, and read this with it
            return self._last_ids.pop(group_key)
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
                dumps(new.group_labels), _TRIGGERED, at, at, previous_id,
                new.truncated_alerts, new.external_url, new.summary,
            ),
        )
        assert cur.lastrowid is not None
        incident_id = int(cur.lastrowid)
        self._escalations[incident_id] = None
        self._new_deadlines[incident_id] = set()
        self._last_ids.pop(new.group_key, None)  # no longer the group's last
        self._incidents[incident_id] = Incident(
            id=incident_id, group_key=new.group_key, route_id=new.route_id, team=new.team,
            severity=new.severity, policy=new.policy, group_labels=dict(new.group_labels),
            state=IncidentState.TRIGGERED, opened_at=new.opened_at, updated_at=new.opened_at,
            previous_id=previous_id, truncated_alerts=new.truncated_alerts,
            external_url=new.external_url, summary=new.summary,
        )
        return incident_id

    async def incident(self, incident_id: int) -> Incident:
        # As the batch knows it, mostly (a webhook reads its incident after each step): a
        # coroutine fewer than asking find_incident.
        found = self._incidents.get(incident_id) or await self.find_incident(incident_id)
        if found is None:
            raise NotFound(f"incident {incident_id} does not exist")
        return found

    async def find_incident(self, incident_id: int) -> Incident | None:
        known = self._incidents.get(incident_id)
        if known is not None:
            return known
        rows = await self._all(
            f"SELECT {INCIDENT_COLUMNS}, escalation FROM incidents WHERE id = ?", (incident_id,)
        )
        return self._read_row(rows[0]) if rows else None

    def _read_row(self, row: Sequence[Any]) -> Incident:
        """An incident's row with its escalation state last, remembered for the batch."""
        incident = self._incidents[row[0]] = incident_from_row(tuple(row[:-1]))
        self._escalations[row[0]] = row[-1]
        return incident

    async def incident_briefs(self, incident_ids: Sequence[int]) -> dict[int, IncidentBrief]:
        """The id, state and severity of the incidents of these ids that exist, in one
        statement (as find_incidents), for a dispatcher pass to decide by."""
        found = {i: IncidentBrief(i, known.state, known.severity)
                 for i in incident_ids if (known := self._incidents.get(i))}
        wanted = sorted({i for i in incident_ids if i not in found})
        if not wanted:
            return found
        rows = await self._all(
            "SELECT id, state, severity FROM incidents"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (f"[{','.join(map(str, wanted))}]",),
        )
        for incident_id, state, severity in rows:
            found[incident_id] = IncidentBrief(incident_id, INCIDENT_STATES[state], severity)
        return found

    async def find_incidents(self, incident_ids: Sequence[int]) -> dict[int, Incident]:
        """The incidents of these ids that exist, read in one statement (a dispatcher pass
        needs the incidents of hundreds of rows: one statement each cost a lease a quarter of
        its time). The ids go in as one JSON array, so the statement's text, and SQLite's
        prepared statement for it, is the same whatever their number."""
        found = {i: known for i in incident_ids if (known := self._incidents.get(i))}
        wanted = sorted({i for i in incident_ids if i not in found})
        if not wanted:
            return found
        rows = await self._all(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (f"[{','.join(map(str, wanted))}]",),
        )
        for row in rows:
            found[row[0]] = self._incidents[row[0]] = incident_from_row(tuple(row))
        return found

    async def write_alerts(self, incident_id: int, alerts: Sequence[Alert], now: datetime) -> None:
        """Insert the alerts' rows, or change those that exist (their episode's end, status,
        annotations and Grafana details; never the labels, which are the fingerprint's). A row
        open_group read in this batch (_alert_keys: a resolution's, mostly) is changed by an
        UPDATE, which binds neither its labels nor its generator URL: the upsert's labels'
        JSON cost about 4,000 instructions a row, and its attempt to insert more than the
        UPDATE's work. Any other goes through the upsert.

        A missing end (a firing alert) and a missing Grafana column are bound as NO_VALUE,
        which the statements turn into NULL (`nullif`): sqlite3 binds a None only through
        the adapter registry, a Python call (statements._null), about 1,400 instructions a
        NULL, and most rows have two. Alerts that all have neither (a new incident's,
        mostly: firing, from Alertmanager) bind neither: their statement writes the NULLs
        (_UPSERT_BARE), two texts copied and two nullif() calls fewer a row, 2,400
        instructions."""
        at = to_us(now)
        known = self._alert_keys.get(incident_id)
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        updated: list[Alert] = []  # the alerts of `updates`, in order
        # A group's alerts mostly share their start and end, one datetime each (the parser
        # reads a time's text once): each converted once (timeline_rows does the same).
        start: datetime | None = None
        end: datetime | None = None
        starts_at: int = 0
        ends_at: int | str = NO_VALUE
        bare = all(a.ends_at is None and a.grafana is None for a in alerts)
        # str() of a StrEnum is its value, without the Python-level descriptor `.value` goes
        # through on Python 3.11 (a row per alert: 0.5% of the ingest path); a Grafana column
        # is encoded only for an alert that has one.
        for a in alerts:
            if a.starts_at is not start:
                start, starts_at = a.starts_at, to_us(a.starts_at)
            if a.ends_at is not end:
                end, ends_at = a.ends_at, NO_VALUE if a.ends_at is None else to_us(a.ends_at)
            grafana = NO_VALUE if a.grafana is None else grafana_column(a.grafana)
            if known is not None and (a.fingerprint, starts_at) in known:
                updates.append((ends_at, str(a.status), dumps(a.annotations), at, grafana,
                                incident_id, a.fingerprint, starts_at))
                updated.append(a)
            elif bare:
                inserts.append((incident_id, a.fingerprint, starts_at, str(a.status),
                                dumps(a.labels), dumps(a.annotations), a.generator_url, at))
            else:
                inserts.append((incident_id, a.fingerprint, starts_at, ends_at, str(a.status),
                                dumps(a.labels), dumps(a.annotations), a.generator_url, at,
                                grafana))
        if updates:
            self._cur.executemany(
                "UPDATE alerts SET ends_at = nullif(?, ''), status = ?, annotations = ?,"
                " updated_at = ?, grafana = nullif(?, '')"
                " WHERE incident_id = ? AND fingerprint = ? AND starts_at = ?",
                updates,
            )
            if self._cur.rowcount != len(updates):
                # A row known but missing: never expected, but the alerts must be written, so
                # the upsert (which changes a row that exists as the UPDATE did) takes them all
                # (their keys are none of `inserts`': a key is known or not).
                self._cur.executemany(_UPSERT, [
                    (incident_id, fp, starts_at, ends_at, status, dumps(a.labels), annotations,
                     a.generator_url, at, details)
                    for a, (ends_at, status, annotations, _, details, _, fp, starts_at)
                    in zip(updated, updates, strict=True)])
        if inserts:
            self._cur.executemany(_UPSERT_BARE if bare else _UPSERT, inserts)

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
        known = self._alert_keys.get(incident_id)
        if known is not None:
            for fp, was, to in moves:
                if (fp, to_us(was)) in known:  # else nothing moved, and (fp, to) is as it was
                    known.discard((fp, to_us(was)))
                    known.add((fp, to_us(to)))

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


def _column_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_us(value)
    if isinstance(value, IncidentState):
        return value.value
    return value
