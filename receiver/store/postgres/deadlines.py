"""An incident's escalation state, its durable deadlines and the round-robin cursors, inside
one batch on PostgreSQL.

Every replica keeps every deadline in its timer heap (armed by NOTIFY when another replica
arms one), and each due deadline may be asked for by several of them (its first replica at
its due time, the others a moment later: escalation/timer.py): the one whose DELETE locks the
row first takes it, and the others skip the locked row (SKIP LOCKED) and find nothing, at
once, instead of waiting for the winner's commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from receiver.store.codec import (
    INCIDENT_COLUMNS,
    deadlines_in_order,
    dumps,
    incident_from_row,
    loads,
    to_us,
)
from receiver.store.postgres.statements import Statements
from receiver.store.records import ArmedDeadline

# Due deadlines taken (deleted: the step fires in this transaction or not at all) with their
# incidents' rows and escalation state, locked FOR NO KEY UPDATE in id order as find_incidents
# locks several (two batches never wait on each other in a circle over them). A deadline's
# incident exists (the foreign key), so the join drops none.
_TAKEN = 5  # TAKE's columns of the taken deadline, before its incident's
_INCIDENT_END = _TAKEN + len(INCIDENT_COLUMNS.split(","))  # then the escalation state
TAKE = (
    "WITH taken AS (DELETE FROM deadlines WHERE id = ANY(ARRAY(SELECT id FROM deadlines"
    " WHERE id = ANY($1::bigint[]) AND due <= $2 FOR UPDATE SKIP LOCKED))"
    " RETURNING id, incident_id, due, kind, key)"
    " SELECT t.id, t.incident_id, t.due, t.kind, t.key,"
    f" {', '.join('i.' + c.strip() for c in INCIDENT_COLUMNS.split(','))}, i.escalation"
    " FROM taken t JOIN incidents i ON i.id = t.incident_id"
    " ORDER BY i.id FOR NO KEY UPDATE OF i"
)


class DeadlineStatements(Statements):
    async def escalation(self, incident_id: int) -> dict[str, Any] | None:
        if incident_id in self._escalations:  # read with the incident (open_group), or set
            text = self._escalations[incident_id]
        else:
            # FOR NO KEY UPDATE: the state is read to be changed; another replica waits for it.
            text = self._escalations[incident_id] = await self._conn.fetchval(
                "SELECT escalation FROM incidents WHERE id = $1 FOR NO KEY UPDATE", incident_id
            )
        if text is None:
            return None
        state: dict[str, Any] = loads(text)
        return state

    async def set_escalation(self, incident_id: int, state: dict[str, Any]) -> None:
        text = dumps(state)
        self._held.update(incident_id, {"escalation": text})  # sent with the next statement
        self._written.add(incident_id)
        self._escalations[incident_id] = text

    async def arm(
        self, incident_id: int, deadlines: Iterable[tuple[datetime, str, str]]
    ) -> list[ArmedDeadline]:
        """Insert or move deadlines; the same (kind, key) is one deadline (idempotent). Each
        is announced to the other replicas once the batch committed (`announce`)."""
        armed: list[ArmedDeadline] = []
        deadlines = list(deadlines)
        if not self._held.cancelled.get(incident_id, set()).isdisjoint(k for _, k, _ in deadlines):
            await self.send_held()  # not in the upsert's WITH: one row deleted and upserted
        for due, kind, key in deadlines:
            self._armed_kind(incident_id, kind)
            deadline_id = int(await self._carry_value(
                "INSERT INTO deadlines (incident_id, due, kind, key) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (incident_id, kind, key) DO UPDATE SET due = excluded.due"
                " RETURNING id",
                incident_id, to_us(due), kind, key,
            ))
            armed.append(ArmedDeadline(deadline_id, incident_id, due, kind, key))
        self.announce(armed)
        return armed

    async def arm_once(
        self, incident_id: int, due: datetime, kind: str, key: str
    ) -> ArmedDeadline | None:
        """Arm a deadline of this kind unless the incident has one already, whatever its key:
        the armed deadline, or None when one was there."""
        self._armed_kind(incident_id, kind)
        found = await self._conn.fetchval(
            "INSERT INTO deadlines (incident_id, due, kind, key) SELECT $1, $2, $3, $4"
            " WHERE NOT EXISTS (SELECT 1 FROM deadlines WHERE incident_id = $1 AND kind = $3)"
            " RETURNING id",
            incident_id, to_us(due), kind, key,
        )
        if found is None:
            return None
        armed = ArmedDeadline(int(found), incident_id, due, kind, key)
        self.announce([armed])
        return armed

    def _armed_kind(self, incident_id: int, kind: str) -> None:
        """Before a deadline of `kind` may be written: cancel must not skip that kind."""
        new = self._new_deadlines.get(incident_id)
        if new is not None:
            new.add(kind)

    async def cancel(self, incident_id: int, kinds: Iterable[str]) -> None:
        """Held to go with the batch's next statement (held.py): nothing waits for the
        deadlines' deletion, and a resolution's next statement (its paged recipients' read)
        can carry it."""
        wanted = list(kinds)
        new = self._new_deadlines.get(incident_id)
        if new is not None and new.isdisjoint(wanted):
            return  # inserted by this batch, and none of these kinds armed: nothing to delete
        if wanted:
            self._held.cancel(incident_id, wanted)

    async def take_deadlines(
        self, deadline_ids: Sequence[int], now: datetime
    ) -> list[ArmedDeadline]:
        """Remove and return those of these deadlines that are due, in the order asked; not
        those cancelled, fired already, moved later, or that another replica is taking now
        (their rows are locked: skipped). The same statement reads (and locks, in id order)
        their incidents with their escalation state, which the batch remembers: what firing
        asks next (`incident()`, `escalation()`), for every deadline in one round trip
        instead of one each."""
        rows = await self._all(TAKE, list(deadline_ids), to_us(now))
        for row in rows:
            incident_id = int(row[1])
            if incident_id not in self._incidents:  # the batch's own view is newer
                self._incidents[incident_id] = incident_from_row(
                    tuple(row[_TAKEN:_INCIDENT_END]))
                self._escalations[incident_id] = row[_INCIDENT_END]
        return deadlines_in_order(deadline_ids, rows)

    async def round_robin(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        cursors = dict.fromkeys(keys, 0)
        policies = sorted({policy for policy, _ in cursors})
        if policies:
            for policy, step, cursor in await self._all(
                "SELECT policy, step, cursor FROM round_robin WHERE policy = ANY($1::text[])",
                policies,
            ):
                if (policy, step) in cursors:
                    cursors[(policy, step)] = int(cursor)
        return cursors

    async def advance_round_robin(self, keys: Iterable[tuple[str, int]]) -> None:
        await self._conn.executemany(
            "INSERT INTO round_robin (policy, step, cursor) VALUES ($1, $2, 1)"
            " ON CONFLICT (policy, step) DO UPDATE SET cursor = round_robin.cursor + 1",
            list(keys),
        )
