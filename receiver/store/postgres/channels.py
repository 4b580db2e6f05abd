"""Noise control's channel histories inside one batch on PostgreSQL (see store/base.py's
ChannelRecords).

Replicas gate messages to the same URL at once, and the budget must be one: a pass takes a
transaction-scoped advisory lock per channel before it reads the histories, and keeps it
until its verdicts and the histories it wrote back commit, so a second replica's pass on the
same URL waits and then reads them. Advisory, not row, locks: a channel that has no row yet
(its first message) is locked all the same. The locks are taken in one order (sorted), so
two batches never wait on each other in a circle (and a deadlock, should one come, runs the
job again: store.RETRYABLE). They live in a key space of their own: the first key
(LOCK_SPACE) says "a channel", the second is a hash of the channel's digest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from receiver.store.codec import channel_columns, channel_record, opt_from_us, to_us
from receiver.store.postgres.statements import Statements
from receiver.store.records import ChannelRecord

# "ackn" in ASCII: not replicas.py's LOCK_CLASS ("ackd"), whose held locks are the replicas
# alive.
LOCK_SPACE = 0x61636B6E


class ChannelStatements(Statements):
    async def lock_channels(
        self, channels: Sequence[str], now: datetime
    ) -> list[ChannelRecord]:
        # The channels asked for and those whose held-back summary is due, each locked, in
        # order (two passes locking several never wait on each other in a circle), in one
        # statement: the summaries' read is unlocked, as it was in a round trip of its own.
        locked = await self._all(
            "SELECT c, pg_advisory_xact_lock($1, hashtext(c)) FROM (SELECT c"
            " FROM unnest($2::text[]) AS c UNION SELECT channel FROM channel_histories"
            " WHERE summary_at <= $3 ORDER BY 1) AS ordered",
            LOCK_SPACE, sorted(set(channels)), to_us(now),
        )
        wanted = [str(r[0]) for r in locked]
        if not wanted:
            return []
        # Read after the locks (READ COMMITTED: a statement sees every commit before it), so
        # what a replica that held them wrote is here.
        rows = await self._all(
            "SELECT channel, history, addressee, summary_at FROM channel_histories"
            " WHERE channel = ANY($1::text[])", wanted,
        )
        return [channel_record(tuple(r)) for r in rows]

    async def save_channels(self, records: Sequence[ChannelRecord]) -> None:
        if not records:
            return
        await self._conn.executemany(
            "INSERT INTO channel_histories (channel, history, addressee, summary_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (channel) DO UPDATE SET"
            " history = excluded.history, addressee = excluded.addressee,"
            " summary_at = excluded.summary_at",
            [channel_columns(r) for r in records],
        )

    async def drop_channels(self, channels: Sequence[str]) -> None:
        if channels:
            await self._run("DELETE FROM channel_histories WHERE channel = ANY($1::text[])",
                            list(channels))
            await self.forget_held_back(channels)

    async def hold_back(self, channel: str, incident_ids: Sequence[int], at: datetime) -> None:
        if incident_ids:
            await self._run(
                "INSERT INTO held_back (channel, incident_id, held_at)"
                " SELECT $1, i, $3 FROM unnest($2::bigint[]) AS i"
                " ON CONFLICT (channel, incident_id) DO NOTHING",
                channel, list(incident_ids), to_us(at),
            )

    async def held_back(self, channels: Sequence[str]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {c: [] for c in channels}
        if channels:
            rows = await self._all(
                "SELECT channel, incident_id FROM held_back WHERE channel = ANY($1::text[])"
                " ORDER BY channel, held_at, incident_id", list(channels))
            for channel, incident_id in rows:
                found[str(channel)].append(int(incident_id))
        return found

    async def forget_held_back(self, channels: Sequence[str]) -> None:
        if channels:
            await self._run("DELETE FROM held_back WHERE channel = ANY($1::text[])",
                            list(channels))

    async def passed_gate(self, outbox_ids: Sequence[int]) -> None:
        await self._run("UPDATE outbox SET gated = true WHERE id = ANY($1::bigint[])",
                        list(outbox_ids))

    async def next_summary_at(self) -> datetime | None:
        """When the next held-back summary is due. It carries the held writes (a pass's
        deferrals, held.py), none of which is a channel's history: a round trip, not two."""
        rows = await self._carry_rows("SELECT min(summary_at) FROM channel_histories")
        return opt_from_us(rows[0][0]) if rows else None
