"""The timeline inside one batch on PostgreSQL: events appended, and what they say was paged.
The JSON columns are text, as in SQLite; the queries that look inside read them as json, not
jsonb: jsonb refuses a string holding NUL (\\u0000), which a summary or a label may hold."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from receiver.core.model import PAGE_REASONS, EventKind, TimelineEvent
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
from receiver.store.postgres.statements import Statements
from receiver.store.postgres.text import escape

_PAGES = sorted(reason.value for reason in PAGE_REASONS)
_FATE_KINDS = sorted(PAGE_FATE_KINDS)


class TimelineStatements(Statements):
    async def append(self, incident_id: int, events: Iterable[TimelineEvent]) -> None:
        """Held to go with the batch's next statement (held.py), all the batch's events in
        one, their ids in the order given; a run of per-alert events one row (codec.py).
        The actor goes inside held.py's JSON parameter, which the text codec does not
        reach: escaped here (text.py)."""
        self._held.events.extend(
            (i, at, kind, escape(actor), detail)
            for i, at, kind, actor, detail in timeline_rows(incident_id, events)
        )

    async def append_each(self, events: Sequence[tuple[int, TimelineEvent]]) -> None:
        """Held as append's."""
        self._held.events.extend(
            (i, at, kind, escape(actor), detail)
            for i, at, kind, actor, detail in each_rows(events)
        )

    async def events_since(self, incident_id: int, since: datetime) -> list[TimelineEvent]:
        rows = await self._all(
            "SELECT at, kind, actor, detail FROM timeline WHERE incident_id = $1 AND at >= $2"
            " ORDER BY id",
            incident_id, to_us(since),
        )
        return events_from_rows(rows)

    async def paged_recipients(self, incident_id: int) -> list[str]:
        """Users paged for this incident so far, in the order they were first paged: those a
        page was recorded sent to, then those whose page is in flight (leased to a send, its
        result not yet recorded), who may have it already and must hear what follows."""
        # One statement for both (the keys of store.OutboxMessage, as store/codec.py writes
        # them): those recorded sent first, then those in flight, each in the order paged.
        # It carries the held writes (a resolution's alerts, events, columns and cancelled
        # deadlines: one round trip, not two) unless one could change its answer, which it
        # would not see (one snapshot for a WITH): a page recorded sent, an outbox row
        # finished or rescheduled. Outbox rows enqueued are not leased yet: not read here.
        sent = EventKind.NOTIFICATION_SENT.value
        held = self._held
        if held.finished or held.rescheduled or any(e[2] == sent for e in held.events):
            read = self._all
        else:
            read = self._carry_rows
        rows = await read(
            "SELECT who FROM (SELECT detail::json ->> 'recipient' AS who, min(id) AS first,"
            " 0 AS source FROM timeline"
            " WHERE incident_id = $1 AND kind = 'notification_sent'"
            " AND detail::json ->> 'recipient_kind' = 'user'"
            " AND detail::json ->> 'reason' = ANY($2::text[])"
            " GROUP BY 1"
            " UNION ALL SELECT payload::json ->> 'recipient', min(id), 1 FROM outbox"
            " WHERE incident_id = $1 AND leased_from IS NOT NULL"
            " AND payload::json ->> 'recipient_kind' = 'user'"
            " AND payload::json ->> 'reason' = ANY($2::text[])"
            " GROUP BY 1) AS paged ORDER BY source, first",
            incident_id, _PAGES,
        )
        return first_seen(r[0] for r in rows)

    async def step_pages(
        self, incident_id: int, run: int, cycle: int, step: int
    ) -> list[tuple[str, PageFate]]:
        """What became of the pages of one step (of one run and cycle) to people, once per
        person and fate: recorded sent, failed or suppressed; still in the outbox (queued, in
        flight, waiting for a retry) or a delayed contact still armed: pending."""
        # One statement, so its three parts see one snapshot. The keys are those of
        # store.OutboxMessage, as store/codec.py writes them; delivery events carry them too
        # (delivery/events.py).
        rows = await self._all(
            "SELECT detail::json ->> 'recipient', kind FROM timeline"
            " WHERE incident_id = $1 AND kind = ANY($2::text[])"
            " AND detail::json ->> 'recipient_kind' = 'user'"
            " AND detail::json ->> 'run' = $3::bigint::text"
            " AND detail::json ->> 'cycle' = $4::bigint::text"
            " AND detail::json ->> 'step' = $5::bigint::text"
            " UNION SELECT payload::json ->> 'recipient', $6 FROM outbox"
            " WHERE incident_id = $1 AND payload::json ->> 'recipient_kind' = 'user'"
            " AND payload::json ->> 'run' = $3::bigint::text"
            " AND payload::json ->> 'cycle' = $4::bigint::text"
            " AND payload::json ->> 'step' = $5::bigint::text"
            " UNION SELECT key, $7 FROM deadlines WHERE incident_id = $1 AND kind = $8"
            " AND starts_with(key, $9)",
            incident_id, _FATE_KINDS, run, cycle, step, OUTBOX_ROW, CONTACT_DEADLINE,
            DeadlineKind.CONTACT.value, contact_prefix(run, cycle, step),
        )
        return page_fates(rows)
