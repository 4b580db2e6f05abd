"""The timeline inside one writer batch: events appended, and what they say was paged."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from receiver.core.model import PAGE_REASONS, TimelineEvent
from receiver.store.codec import events_from_rows, first_seen, timeline_rows, to_us
from receiver.store.sqlite.statements import Statements

_PAGES = sorted(reason.value for reason in PAGE_REASONS)
_PAGE_MARKS = ", ".join("?" * len(_PAGES))


class TimelineStatements(Statements):
    async def append(self, incident_id: int, events: Iterable[TimelineEvent]) -> None:
        # A run of per-alert events of one instant is one row (codec.timeline_rows).
        rows = timeline_rows(incident_id, events)
        if rows:
            self._cur.executemany(
                "INSERT INTO timeline (incident_id, at, kind, actor, detail)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    async def paged_recipients(self, incident_id: int) -> list[str]:
        """Users paged for this incident so far, in the order they were first paged: those a
        page was recorded sent to, then those whose page is in flight (leased to a send, its
        result not yet recorded), who may have it already and must hear what follows."""
        # One statement: the timeline's, then the outbox's (the keys of store.OutboxMessage,
        # as store/codec.py writes them).
        rows = await self._all(
            "SELECT json_extract(detail, '$.recipient') AS who, 0, min(id) FROM timeline"
            " WHERE incident_id = ? AND kind = 'notification_sent'"
            " AND json_extract(detail, '$.recipient_kind') = 'user'"
            f" AND json_extract(detail, '$.reason') IN ({_PAGE_MARKS})"
            " GROUP BY who"
            " UNION ALL"
            " SELECT json_extract(payload, '$.recipient') AS who, 1, min(id) FROM outbox"
            " WHERE incident_id = ? AND leased_from IS NOT NULL"
            " AND json_extract(payload, '$.recipient_kind') = 'user'"
            f" AND json_extract(payload, '$.reason') IN ({_PAGE_MARKS})"
            " GROUP BY who ORDER BY 2, 3",
            (incident_id, *_PAGES, incident_id, *_PAGES),
        )
        return first_seen(r[0] for r in rows)

    async def events_since(self, incident_id: int, since: datetime) -> list[TimelineEvent]:
        rows = await self._all(
            "SELECT at, kind, actor, detail FROM timeline WHERE incident_id = ? AND at >= ?"
            " ORDER BY id",
            (incident_id, to_us(since)),
        )
        return events_from_rows(rows)

    async def reached(self, incident_id: int, recipient: str, step: int, cycle: int) -> bool:
        """Whether a page of this step reached `recipient`, or one is still waiting to go."""
        sent = await self._all(
            "SELECT 1 FROM timeline WHERE incident_id = ? AND kind = 'notification_sent'"
            " AND json_extract(detail, '$.recipient') = ? AND json_extract(detail, '$.step') = ?"
            " AND json_extract(detail, '$.cycle') = ? LIMIT 1",
            (incident_id, recipient, step, cycle),
        )
        if sent:
            return True
        # The keys of store.OutboxMessage, as store/codec.py writes them.
        pending = await self._all(
            "SELECT 1 FROM outbox WHERE incident_id = ?"
            " AND json_extract(payload, '$.recipient') = ? AND json_extract(payload, '$.step') = ?"
            " AND json_extract(payload, '$.cycle') = ? LIMIT 1",
            (incident_id, recipient, step, cycle),
        )
        return bool(pending)
