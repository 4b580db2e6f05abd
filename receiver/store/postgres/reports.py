"""When Alertmanager last reported an open incident, inside one batch on PostgreSQL: the
replica that takes a webhook may not be the one whose timer fires the stale deadline
(escalation/staleness.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from receiver.store.codec import from_us, to_us
from receiver.store.postgres.statements import Statements


class ReportStatements(Statements):
    async def note_reports(self, reports: Mapping[int, datetime]) -> None:
        # One statement for a replica's second of reports. Replicas save at once: the later
        # instant stays; in id order, so two saving the same incidents wait, not deadlock.
        ordered = sorted(reports.items())
        await self._run(
            "INSERT INTO stale_reports (incident_id, at)"
            " SELECT * FROM unnest($1::bigint[], $2::bigint[])"
            " ON CONFLICT (incident_id) DO UPDATE"
            " SET at = greatest(stale_reports.at, excluded.at)",
            [i for i, _ in ordered], [to_us(at) for _, at in ordered])

    async def take_report(self, incident_id: int) -> datetime | None:
        at = await self._conn.fetchval(
            "DELETE FROM stale_reports WHERE incident_id = $1 RETURNING at", incident_id)
        return None if at is None else from_us(at)
