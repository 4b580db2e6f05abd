"""Maintenance windows' rows inside one batch on PostgreSQL (receiver/maintenance/)."""

from __future__ import annotations

import json
from datetime import datetime

from receiver.maintenance.domain import Window
from receiver.store.codec import loads, to_us
from receiver.store.postgres.statements import Statements
from receiver.store.records import ArmedDeadline, Shared


class MaintenanceStatements(Statements):
    """The API's windows, and what a window's hold reads and moves."""

    async def firing_labels(self, incident_id: int) -> list[dict[str, str]]:
        rows = await self._all(
            "SELECT labels FROM alerts WHERE incident_id = $1 AND status = 'firing'",
            incident_id)
        return [loads(r[0]) for r in rows]

    async def add_window(self, window: Window) -> int:
        rows = await self._all(
            "INSERT INTO maintenance (team, matchers, starts_at, ends_at, comment, created_by,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            window.team, json.dumps([str(m) for m in window.matchers]),
            to_us(window.starts_at), to_us(window.ends_at), window.comment, window.created_by,
            to_us(window.created_at or window.starts_at))
        await self._changed(Shared.MAINTENANCE)
        return int(rows[0][0])

    async def delete_window(self, window_id: int) -> bool:
        rows = await self._all("DELETE FROM maintenance WHERE id = $1 RETURNING id", window_id)
        if rows:
            await self._changed(Shared.MAINTENANCE)
        return bool(rows)

    async def bring_forward(self, kind: str, now: datetime) -> list[ArmedDeadline]:
        rows = await self._all(
            "UPDATE deadlines SET due = $1 WHERE kind = $2 AND due > $1"
            " RETURNING id, incident_id, key", to_us(now), kind)
        moved = [ArmedDeadline(int(r[0]), int(r[1]), now, kind, str(r[2])) for r in rows]
        self.announce(moved)  # the other replicas' timers too: this one may be gone by then
        return moved
