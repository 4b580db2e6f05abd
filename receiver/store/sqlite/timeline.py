"""The timeline inside one writer batch: events appended, and what they say was paged."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from receiver.core.model import PAGE_REASONS, TimelineEvent
from receiver.escalation.keys import contact_prefix
from receiver.escalation.plan import DeadlineKind, PageFate
from receiver.store.codec import (
    CONTACT_DEADLINE,
    OUTBOX_ROW,
    PAGE_FATE_KINDS,
    each_rows,
    events_from_rows,
    first_seen,
    page_fates,
    timeline_rows,
    to_us,
)
from receiver.store.sqlite.statements import Statements

# The page reasons as SQL text in the statement, not bound: they never change, and sqlite3
# copies each text bound (16 a resolution's read of who was paged: a third of its work).
# Each is a lowercase word (MessageReason), so quoting it is all it needs.
_PAGES = sorted(reason.value for reason in PAGE_REASONS)
assert all(page.replace("_", "").isalpha() and page.islower() for page in _PAGES)
_PAGE_LIST = ", ".join(f"'{page}'" for page in _PAGES)
_FATE_KINDS = sorted(PAGE_FATE_KINDS)
_FATE_MARKS = ", ".join("?" * len(_FATE_KINDS))


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

    async def append_each(self, events: Sequence[tuple[int, TimelineEvent]]) -> None:
        rows = each_rows(events)
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
            f" AND json_extract(detail, '$.reason') IN ({_PAGE_LIST})"
            " GROUP BY who"
            " UNION ALL"
            " SELECT json_extract(payload, '$.recipient') AS who, 1, min(id) FROM outbox"
            " WHERE incident_id = ? AND leased_from IS NOT NULL"
            " AND json_extract(payload, '$.recipient_kind') = 'user'"
            f" AND json_extract(payload, '$.reason') IN ({_PAGE_LIST})"
            " GROUP BY who ORDER BY 2, 3",
            (incident_id, incident_id),
        )
        return first_seen(r[0] for r in rows)

    async def events_since(self, incident_id: int, since: datetime) -> list[TimelineEvent]:
        rows = await self._all(
            "SELECT at, kind, actor, detail FROM timeline WHERE incident_id = ? AND at >= ?"
            " ORDER BY id",
            (incident_id, to_us(since)),
        )
        return events_from_rows(rows)

    async def step_pages(
        self, incident_id: int, run: int, cycle: int, step: int
    ) -> list[tuple[str, PageFate]]:
        """What became of the pages of one step (of one run and cycle) to people, once per
        person and fate: recorded sent, failed or suppressed; still in the outbox (queued, in
        flight, waiting for a retry) or a delayed contact still armed: pending."""
        prefix = contact_prefix(run, cycle, step)
        # One statement, so its three parts are read at one instant. The keys are those of
        # store.OutboxMessage, as store/codec.py writes them; delivery events carry them too
        # (delivery/events.py).
        rows = await self._all(
            "SELECT json_extract(detail, '$.recipient'), kind FROM timeline"
            f" WHERE incident_id = ? AND kind IN ({_FATE_MARKS})"
            " AND json_extract(detail, '$.recipient_kind') = 'user'"
            " AND json_extract(detail, '$.run') = ? AND json_extract(detail, '$.cycle') = ?"
            " AND json_extract(detail, '$.step') = ?"
            " UNION SELECT json_extract(payload, '$.recipient'), ? FROM outbox"
            " WHERE incident_id = ? AND json_extract(payload, '$.recipient_kind') = 'user'"
            " AND json_extract(payload, '$.run') = ? AND json_extract(payload, '$.cycle') = ?"
            " AND json_extract(payload, '$.step') = ?"
            " UNION SELECT key, ? FROM deadlines WHERE incident_id = ? AND kind = ?"
            " AND substr(key, 1, ?) = ?",
            (incident_id, *_FATE_KINDS, run, cycle, step,
             OUTBOX_ROW, incident_id, run, cycle, step,
             CONTACT_DEADLINE, incident_id, DeadlineKind.CONTACT.value,
             len(prefix), prefix),
        )
        return page_fates(rows)
