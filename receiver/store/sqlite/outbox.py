"""The notification outbox inside one writer batch: enqueue, lease, and each row's fate."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache

from receiver.store.codec import decode_message, encode_message, outbox_rows, to_us
from receiver.store.records import OutboxMessage, OutboxRow
from receiver.store.sqlite.statements import Statements

# The due time of a leased outbox row (see migration 5): later than any time a row is due.
LEASED = (1 << 62)


class OutboxStatements(Statements):
    async def enqueue(
        self, incident_id: int, messages: Iterable[OutboxMessage], now: datetime
    ) -> None:
        at = to_us(now)  # created now, and due at once
        for message in messages:
            self._cur.execute(
                "INSERT INTO outbox (incident_id, created_at, payload, next_attempt_at)"
                " VALUES (?, ?, ?, ?)",
                (incident_id, at, encode_message(message), at),
            )

    async def due_outbox(self, now: datetime, limit: int) -> list[OutboxRow]:
        """Rows due by `now`, oldest first, leases left as they are (rows in flight are not
        due: they are not here)."""
        rows = await self._all(
            "SELECT id, incident_id, created_at, payload, attempts, next_attempt_at, gated"
            " FROM outbox"
            " WHERE next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
            (to_us(now), limit),
        )
        return outbox_rows(rows, _decoded)

    async def lease_due_outbox(self, now: datetime, limit: int) -> list[OutboxRow]:
        """Take the rows due by `now`, oldest first, and lease them: until their result is
        written (finish_outbox, retry_outbox) or release_outbox, no one reads them again."""
        rows = await self._all(
            "UPDATE outbox SET leased_from = next_attempt_at, next_attempt_at = ?"
            " WHERE id IN (SELECT id FROM outbox WHERE next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?)"
            " RETURNING id, incident_id, created_at, payload, attempts, leased_from, gated",
            (LEASED, to_us(now), limit),
        )
        rows.sort(key=lambda r: (r[5], r[0]))  # RETURNING promises no order
        return outbox_rows(rows, _decoded)

    async def release_outbox(self, outbox_id: int, due: datetime) -> None:
        """End a lease without a result: the row is due again at `due`."""
        self._cur.execute(
            "UPDATE outbox SET next_attempt_at = ?, leased_from = NULL"
            " WHERE id = ? AND leased_from IS NOT NULL",
            (to_us(due), outbox_id),
        )

    async def renew_outbox(self, outbox_ids: Sequence[int], now: datetime) -> list[int]:
        """Of these rows, those still leased (a lease here lasts until its result is written
        or it is released: there is nothing to renew, and no other process to take it)."""
        if not outbox_ids:
            return []
        marks = ", ".join("?" * len(outbox_ids))
        rows = await self._all(
            f"SELECT id FROM outbox WHERE id IN ({marks}) AND leased_from IS NOT NULL",
            list(outbox_ids),
        )
        return sorted(int(r[0]) for r in rows)

    async def held_outbox(self) -> list[int]:
        """Every leased row: one process holds them all."""
        rows = await self._all("SELECT id FROM outbox WHERE next_attempt_at = ?", (LEASED,))
        return [int(r[0]) for r in rows]

    async def finish_outbox(self, outbox_ids: Sequence[int]) -> None:
        if outbox_ids:
            self._cur.execute(
                "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))",
                (_ids(outbox_ids),),
            )

    async def retry_outbox(self, outbox_id: int, attempts: int, next_at: datetime) -> None:
        self._cur.execute(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, leased_from = NULL"
            " WHERE id = ?",
            (attempts, to_us(next_at), outbox_id),
        )

    async def defer_outbox(self, outbox_ids: Sequence[int], until: datetime) -> None:
        if outbox_ids:
            self._cur.execute(
                "UPDATE outbox SET attempts = 0, next_attempt_at = ?, leased_from = NULL"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (to_us(until), _ids(outbox_ids)),
            )


def _ids(outbox_ids: Sequence[int]) -> str:
    """Ids as one JSON array: the statement's text, and SQLite's prepared statement, is the
    same whatever their number."""
    return f"[{','.join(map(str, outbox_ids))}]"


# A payload's message, decoded once for its text: a storm's rows say the same few things (the
# first page to the on-call person, the note to a stakeholder channel: the incident is the
# row's, not the payload's), and each is leased two or three times (deferred to its bundle,
# then sent). The message is a frozen value; the texts held are a few hundred bytes each.
_decoded = lru_cache(maxsize=256)(decode_message)
