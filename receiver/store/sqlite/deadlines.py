"""An incident's escalation state, its durable deadlines and the round-robin cursors, inside
one writer batch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from receiver.escalation.plan import DeadlineKind
from receiver.store.codec import deadlines_in_order, dumps, loads, to_us
from receiver.store.records import ArmedDeadline
from receiver.store.sqlite.statements import Statements

# Every kind of deadline there is: no other is ever written.
_EVERY_KIND = frozenset(kind.value for kind in DeadlineKind)


class DeadlineStatements(Statements):
    async def escalation(self, incident_id: int) -> dict[str, Any] | None:
        if incident_id in self._escalations:
            text = self._escalations[incident_id]
        else:
            rows = await self._all(
                "SELECT escalation FROM incidents WHERE id = ?", (incident_id,)
            )
            text = self._escalations[incident_id] = rows[0][0] if rows else None
        if text is None:
            return None
        state: dict[str, Any] = loads(text)
        return state

    async def set_escalation(self, incident_id: int, state: dict[str, Any]) -> None:
        text = self._escalations[incident_id] = dumps(state)
        self._cur.execute("UPDATE incidents SET escalation = ? WHERE id = ?", (text, incident_id))

    async def arm(
        self, incident_id: int, deadlines: Iterable[tuple[datetime, str, str]]
    ) -> list[ArmedDeadline]:
        """Insert or move deadlines; the same (kind, key) is one deadline (idempotent).

        The first deadline of a kind armed for an incident this batch inserted has no row to
        move: a plain INSERT, its id the row's (`lastrowid`). The upsert's RETURNING (SQLite
        runs it as a subprogram and buffers its rows) cost as much again: a new incident's
        first step arms one."""
        armed: list[ArmedDeadline] = []
        new = self._new_deadlines.get(incident_id)
        for due, kind, key in deadlines:
            if new is not None and kind not in new:
                new.add(kind)
                cur = self._cur.execute(
                    "INSERT INTO deadlines (incident_id, due, kind, key) VALUES (?, ?, ?, ?)",
                    (incident_id, to_us(due), kind, key),
                )
                assert cur.lastrowid is not None
                deadline_id = int(cur.lastrowid)
            else:
                self._armed_kind(incident_id, kind)
                rows = await self._all(
                    "INSERT INTO deadlines (incident_id, due, kind, key) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (incident_id, kind, key) DO UPDATE SET due = excluded.due"
                    " RETURNING id",
                    (incident_id, to_us(due), kind, key),
                )
                deadline_id = int(rows[0][0])
            armed.append(ArmedDeadline(deadline_id, incident_id, due, kind, key))
        return armed

    async def arm_once(
        self, incident_id: int, due: datetime, kind: str, key: str
    ) -> ArmedDeadline | None:
        """Arm a deadline of this kind unless the incident has one already, whatever its key:
        the armed deadline, or None when one was there."""
        self._armed_kind(incident_id, kind)
        rows = await self._all(
            "INSERT INTO deadlines (incident_id, due, kind, key) SELECT ?, ?, ?, ?"
            " WHERE NOT EXISTS (SELECT 1 FROM deadlines WHERE incident_id = ? AND kind = ?)"
            " RETURNING id",
            (incident_id, to_us(due), kind, key, incident_id, kind),
        )
        if not rows:
            return None
        return ArmedDeadline(int(rows[0][0]), incident_id, due, kind, key)

    def _armed_kind(self, incident_id: int, kind: str) -> None:
        """Before a deadline of `kind` may be written: cancel must not skip that kind."""
        new = self._new_deadlines.get(incident_id)
        if new is not None:
            new.add(kind)

    async def cancel(self, incident_id: int, kinds: Iterable[str]) -> None:
        wanted = list(kinds)
        new = self._new_deadlines.get(incident_id)
        if new is not None and new.isdisjoint(wanted):
            return  # inserted by this batch, and none of these kinds armed: nothing to delete
        if _EVERY_KIND.issubset(wanted):
            # Every kind (a resolution): one range of the index, not a look-up per kind, a
            # third of the time.
            self._cur.execute("DELETE FROM deadlines WHERE incident_id = ?", (incident_id,))
        elif wanted:
            marks = ",".join("?" * len(wanted))
            self._cur.execute(
                f"DELETE FROM deadlines WHERE incident_id = ? AND kind IN ({marks})",
                (incident_id, *wanted),
            )

    async def take_deadlines(
        self, deadline_ids: Sequence[int], now: datetime
    ) -> list[ArmedDeadline]:
        """Remove and return those of these deadlines that are due, in the order asked; not
        those cancelled, fired already, or moved later. The timer heap may hold a stale entry
        for an id: SQLite reuses the ids of deleted rows and `arm` moves a deadline in place,
        so only the row's own due time says whether it may fire."""
        rows = await self._all(
            "DELETE FROM deadlines WHERE id IN (SELECT value FROM json_each(?)) AND due <= ?"
            " RETURNING id, incident_id, due, kind, key",
            (f"[{','.join(map(str, deadline_ids))}]", to_us(now)),
        )
        return deadlines_in_order(deadline_ids, rows)

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
