"""The notification outbox inside one batch on PostgreSQL: enqueue, lease, and each row's fate.

Several replicas read the outbox at once. A lease takes the due rows FOR UPDATE SKIP LOCKED,
so two replicas never take the same row, and neither waits for the other. Unlike the SQLite
store's (LEASED, far beyond any time, undone when the one ackd opens the store again), a lease
here ends by itself: the row falls due again LEASE after it was taken, so when the replica
that took it dies, another sends it then (at least once, as after any crash). A replica that
starts does not undo the leases of the others, which are alive. LEASE is well beyond a
delivery's timeout: a live replica's send ends, and writes its result, long before.

A lease also names the replica that holds it (`leased_by`, its number): when that replica is
gone, the others give the row back at once (replicas.py's sweep, a fraction of a second
after its session ended), so LEASE matters only for a replica hung while still connected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from receiver.store.codec import encode_message, outbox_rows, to_us
from receiver.store.postgres.statements import Statements
from receiver.store.records import OutboxMessage, OutboxRow

LEASE = timedelta(seconds=60)
# The channel on which replicas of earlier releases woke each other's dispatchers at every
# commit that enqueued. Replicas still listen (one of an earlier release may run beside them
# during an upgrade) but send nothing on it: the replica that enqueues a row sends it itself
# (its dispatcher wakes at the commit), and the others look at the outbox when it dies
# (store.py's watch).
OUTBOX_CHANNEL = "ackd_outbox"


class OutboxStatements(Statements):
    async def enqueue(
        self, incident_id: int, messages: Iterable[OutboxMessage], now: datetime
    ) -> None:
        """Held to go with the batch's next statement, as held.py's writes (statements.py,
        _writes): all the rows a job enqueued in one INSERT, theirs and the other held
        writes in one round trip. Created now, and due at once."""
        at = to_us(now)
        self._outbox.extend((incident_id, at, encode_message(m)) for m in messages)
        # No NOTIFY: this replica's dispatcher takes the rows (woken after the commit by the
        # responder); a notifying commit would hold PostgreSQL's notification lock through
        # its WAL flush, so every such commit of every replica was flushed one after another.

    async def due_outbox(self, now: datetime, limit: int) -> list[OutboxRow]:
        """Rows due by `now`, oldest first, leases left as they are (rows in flight are not
        due until their lease ends)."""
        rows = await self._all(
            "SELECT id, incident_id, created_at, payload, attempts, next_attempt_at, gated"
            " FROM outbox"
            " WHERE next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2",
            to_us(now), limit,
        )
        return outbox_rows(rows)

    async def lease_due_outbox(self, now: datetime, limit: int) -> list[OutboxRow]:
        """Take the rows due by `now`, oldest first, that no other replica is taking, and
        lease them until their result is written, release_outbox, or LEASE has passed."""
        rows = await self._all(
            "UPDATE outbox SET leased_from = coalesce(leased_from, next_attempt_at),"
            " next_attempt_at = $1, leased_by = $4"
            " WHERE id = ANY(ARRAY(SELECT id FROM outbox WHERE next_attempt_at <= $2"
            " ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED))"
            " RETURNING id, incident_id, created_at, payload, attempts, leased_from, gated",
            to_us(now + LEASE), to_us(now), limit, self.replica,
        )
        rows.sort(key=lambda r: (r[5], r[0]))  # RETURNING promises no order
        return outbox_rows(rows)

    async def release_outbox(self, outbox_id: int, due: datetime) -> None:
        """End this replica's lease without a result: the row is due again at `due`. A lease
        that lapsed and another replica took is that replica's now, and stays."""
        await self._run(
            "UPDATE outbox SET next_attempt_at = $1, leased_from = NULL, leased_by = NULL"
            " WHERE id = $2 AND leased_from IS NOT NULL AND leased_by = $3",
            to_us(due), outbox_id, self.replica,
        )

    async def renew_outbox(self, outbox_ids: Sequence[int], now: datetime) -> list[int]:
        """Of these rows, those this replica still leases, leased anew until now + LEASE: a
        lease that lapsed is renewed while no other replica took the row (taking it names
        that replica; its result, or a release, names none)."""
        rows = await self._all(
            "UPDATE outbox SET next_attempt_at = $1"
            " WHERE id = ANY($2::bigint[]) AND leased_from IS NOT NULL AND leased_by = $3"
            " RETURNING id",
            to_us(now + LEASE), list(outbox_ids), self.replica,
        )
        return sorted(int(r[0]) for r in rows)

    async def held_outbox(self) -> list[int]:
        """The rows leased by this replica's number (none outside a replica)."""
        if self.replica is None:
            return []
        rows = await self._all(
            "SELECT id FROM outbox WHERE leased_by = $1 AND leased_from IS NOT NULL",
            self.replica,
        )
        return [int(r[0]) for r in rows]

    async def finish_outbox(self, outbox_ids: Sequence[int]) -> None:
        """Held to go with the batch's next statement (held.py): a delivery's record or a
        pass's verdicts finish several rows, all in one."""
        for outbox_id in outbox_ids:
            self._held.finish(outbox_id)

    async def retry_outbox(self, outbox_id: int, attempts: int, next_at: datetime) -> None:
        """Held as finish_outbox (a pass defers a bundle's rows, each of them). As
        release_outbox: a failed attempt whose lease another replica took meanwhile leaves
        that replica's attempt, and its result, to be written."""
        self._held.replica = self.replica
        self._held.reschedule(outbox_id, attempts, to_us(next_at))

    async def defer_outbox(self, outbox_ids: Sequence[int], until: datetime) -> None:
        """Held as retry_outbox, with no attempt counted; a row no one leases and never
        attempted is moved too (one already waiting for the bundle whose time a high-urgency
        page pulled earlier: noise.py's `reschedule`), as on SQLite (held.py)."""
        self._held.replica = self.replica
        at = to_us(until)
        for outbox_id in outbox_ids:
            self._held.reschedule(outbox_id, 0, at)
