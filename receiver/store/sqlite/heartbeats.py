"""The heartbeats' rows inside one writer batch (receiver/heartbeats/)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from receiver.store.codec import to_us
from receiver.store.sqlite.statements import Statements


class HeartbeatStatements(Statements):
    """When each heartbeat last arrived; and which groups have an open incident (a late
    heartbeat's, to resolve when it arrives)."""

    async def heartbeats_arrived(self, names: Iterable[str], at: datetime) -> None:
        self._cur.executemany(
            "INSERT INTO heartbeats (name, last_arrival) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE"
            " SET last_arrival = max(last_arrival, excluded.last_arrival)",
            [(name, to_us(at)) for name in names],
        )

    async def open_incident_ids(self, group_keys: Iterable[str]) -> dict[str, int]:
        """The open incident of each of these groups that has one."""
        keys = list(group_keys)
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = await self._all(
            f"SELECT group_key, id FROM incidents WHERE state != 'resolved'"
            f" AND group_key IN ({marks})", keys)
        return {str(r[0]): int(r[1]) for r in rows}
