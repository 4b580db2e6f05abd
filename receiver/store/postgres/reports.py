"""When Alertmanager last reported an open incident, inside one batch on PostgreSQL: the
replica that takes a webhook may not be the one whose timer fires the stale deadline
(escalation/staleness.py)."""

from __future__ import annotations

from datetime import datetime

from receiver.store.codec import from_us, to_us
from receiver.store.postgres.statements import Statements


class ReportStatements(Statements):
    async def note_report(self, incident_id: int, at: datetime) -> None:
        # Replicas may note reports at once: the later instant stays.
        await self._run(
            "INSERT INTO stale_reports (incident_id, at) VALUES ($1, $2)"
            " ON CONFLICT (incident_id) DO UPDATE"
            " SET at = greatest(stale_reports.at, excluded.at)",
            incident_id, to_us(at))

    async def take_report(self, incident_id: int) -> datetime | None:
        at = await self._conn.fetchval(
            "DELETE FROM stale_reports WHERE incident_id = $1 RETURNING at", incident_id)
        return None if at is None else from_us(at)
