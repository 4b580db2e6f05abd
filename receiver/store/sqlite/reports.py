"""When Alertmanager last reported an open incident, inside one writer batch (see
escalation/staleness.py: replicas sharing a store save it; one ackd keeps it in memory)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from receiver.store.codec import from_us, to_us
from receiver.store.sqlite.statements import Statements


class ReportStatements(Statements):
    async def note_reports(self, reports: Mapping[int, datetime]) -> None:
        self._cur.executemany(
            "INSERT INTO stale_reports (incident_id, at) VALUES (?, ?)"
            " ON CONFLICT (incident_id) DO UPDATE SET at = max(at, excluded.at)",
            [(incident_id, to_us(at)) for incident_id, at in sorted(reports.items())])

    async def take_report(self, incident_id: int) -> datetime | None:
        rows = await self._all(
            "DELETE FROM stale_reports WHERE incident_id = ? RETURNING at", (incident_id,))
        return from_us(rows[0][0]) if rows else None
