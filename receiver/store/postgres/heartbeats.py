"""The heartbeats' rows inside one batch on PostgreSQL (receiver/heartbeats/)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from receiver.store.codec import to_us
from receiver.store.postgres.statements import Statements
from receiver.store.postgres.text import escape


class HeartbeatStatements(Statements):
    """When each heartbeat last arrived; which groups have an open incident."""

    async def heartbeats_arrived(self, names: Iterable[str], at: datetime) -> None:
        # Replicas may record arrivals at once: the later instant stays.
        await self._conn.executemany(
            "INSERT INTO heartbeats (name, last_arrival) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE"
            " SET last_arrival = greatest(heartbeats.last_arrival, excluded.last_arrival)",
            [(name, to_us(at)) for name in names],
        )

    async def open_incident_ids(self, group_keys: Iterable[str]) -> dict[str, int]:
        keys = list(group_keys)
        if not keys:
            return {}
        rows = await self._all(
            "SELECT group_key, id FROM incidents WHERE state != 'resolved'"
            " AND md5(group_key) IN (SELECT md5(k) FROM unnest($1::text[]) AS k)"
            " AND group_key = ANY($1::text[])", [escape(k) for k in keys])
        return {str(r[0]): int(r[1]) for r in rows}
