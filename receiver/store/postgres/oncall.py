"""The on-call rows inside one batch on PostgreSQL: run-time overrides and handoff notices.
"user" is a reserved word in PostgreSQL: the column is quoted wherever it is named.

A handoff notice is planned by every replica (each one's timer plans the same handoff) and
sent by one: the unique (schedule, layer, at) makes the plans one row, and `take_notice`
marks it sent in the job that sends it, skipping a row another replica is taking (which
oncall.handoffs tries again a moment later: that replica's transaction may roll back)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from receiver.core.errors import NotFound
from receiver.core.model import Incident
from receiver.oncall.overrides import Change, Leg, RuntimeOverride
from receiver.store.codec import INCIDENT_COLUMNS, from_us, incident_from_row, opt_from_us, to_us
from receiver.store.postgres.statements import Statements
from receiver.store.records import PlannedNotice, Shared

SENT_KEPT = timedelta(weeks=1)
_COLUMNS = (
    'id, schedule, layer, "user", replaces, start_at, end_at, swap_with, created_by,'
    " created_at, note"
)
_NOTICE = 'id, schedule, layer, at, "user", sent_at'


def _override(row: asyncpg.Record) -> RuntimeOverride:
    leg = Leg(row[3], from_us(row[5]), from_us(row[6]), row[2], row[4])
    return RuntimeOverride(
        id=int(row[0]), schedule=row[1], leg=leg, created_by=row[8],
        created_at=from_us(row[9]), swap_with=row[7], note=row[10],
    )


def _paired(override: RuntimeOverride, other: int) -> RuntimeOverride:
    return RuntimeOverride(override.id, override.schedule, override.leg, override.created_by,
                           override.created_at, other, override.note)


def _notice(row: asyncpg.Record) -> PlannedNotice:
    return PlannedNotice(int(row[0]), row[1], row[2], from_us(row[3]), row[4], opt_from_us(row[5]))


class OnCallStatements(Statements):
    """Run-time overrides (a swap is two rows naming each other) and the planned handoff
    notices, one unsent per (schedule, layer)."""

    async def add_overrides(
        self, schedule: str, change: Change, actor: str, now: datetime
    ) -> list[RuntimeOverride]:
        made = []
        for leg in change.legs:
            rows = await self._all(
                'INSERT INTO schedule_overrides (schedule, layer, "user", replaces, start_at,'
                " end_at, created_by, created_at, note)"
                f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_COLUMNS}",
                schedule, leg.layer, leg.user, leg.replaces, to_us(leg.start), to_us(leg.end),
                actor, to_us(now), change.note,
            )
            made.append(_override(rows[0]))
        if change.swap:
            first, second = made
            await self._run("UPDATE schedule_overrides SET swap_with = $1 WHERE id = $2",
                            second.id, first.id)
            await self._run("UPDATE schedule_overrides SET swap_with = $1 WHERE id = $2",
                            first.id, second.id)
            made = [_paired(first, second.id), _paired(second, first.id)]
        await self._changed(Shared.ONCALL)
        return made

    async def override_with_pair(self, schedule: str, override_id: int) -> list[RuntimeOverride]:
        """The override and, for a swap, its other leg: deleting one leg deletes the swap."""
        rows = await self._all(
            f"SELECT {_COLUMNS} FROM schedule_overrides WHERE schedule = $1 AND (id = $2 OR"
            " swap_with = $2) ORDER BY id", schedule, override_id,
        )
        if not any(int(r[0]) == override_id for r in rows):
            raise NotFound(f"schedule {schedule!r} has no run-time override {override_id}")
        return [_override(r) for r in rows]

    async def delete_overrides(self, ids: Sequence[int]) -> None:
        if ids:
            await self._run("DELETE FROM schedule_overrides WHERE id = ANY($1::bigint[])",
                            list(ids))
            await self._changed(Shared.ONCALL)

    async def current_overrides(self, now: datetime) -> list[RuntimeOverride]:
        """Every override that has not ended: what the schedules are laid with at start."""
        rows = await self._all(
            f"SELECT {_COLUMNS} FROM schedule_overrides WHERE end_at > $1 ORDER BY id",
            to_us(now),
        )
        return [_override(r) for r in rows]

    async def plan_notice(
        self, schedule: str, layer: str, at: datetime | None, user: str | None, now: datetime
    ) -> PlannedNotice | None:
        """As the SQLite store's: (schedule, layer)'s next unsent notice becomes the handoff
        to `user` at `at` (None: none planned); a handoff whose notice went out stays sent,
        and one already due is left to the timer."""
        await self._run(
            "DELETE FROM handoff_notices WHERE schedule = $1 AND layer = $2 AND sent_at IS NULL"
            ' AND at > $5 AND (at IS DISTINCT FROM $3 OR "user" IS DISTINCT FROM $4)',
            schedule, layer, None if at is None else to_us(at), user, to_us(now),
        )
        if at is None or user is None:
            return None
        rows = await self._all(
            'INSERT INTO handoff_notices (schedule, layer, at, "user") VALUES ($1, $2, $3, $4)'
            ' ON CONFLICT (schedule, layer, at) DO UPDATE SET "user" = excluded."user"'
            f" WHERE handoff_notices.sent_at IS NULL RETURNING {_NOTICE}",
            schedule, layer, to_us(at), user,
        )
        return _notice(rows[0]) if rows else None

    async def take_notice(self, notice_id: int, now: datetime) -> PlannedNotice | None:
        """Mark a due, unsent notice sent and return it; None if it was sent, replaced, is
        not due, or another replica is taking it now."""
        rows = await self._all(
            "UPDATE handoff_notices SET sent_at = $1 WHERE id = (SELECT id FROM handoff_notices"
            " WHERE id = $2 AND sent_at IS NULL AND at <= $1 FOR UPDATE SKIP LOCKED)"
            f" RETURNING {_NOTICE}",
            to_us(now), notice_id,
        )
        return _notice(rows[0]) if rows else None

    async def drop_notice(self, notice_id: int) -> None:
        await self._run("DELETE FROM handoff_notices WHERE id = $1", notice_id)

    async def unsent_notices(self) -> list[PlannedNotice]:
        rows = await self._all(
            f"SELECT {_NOTICE} FROM handoff_notices WHERE sent_at IS NULL ORDER BY at"
        )
        return [_notice(r) for r in rows]

    async def unplan_others(self, keep: Sequence[tuple[str, str]], now: datetime) -> None:
        """Unsent notices of layers no longer notifying go; sent ones older than a week too."""
        await self._run("DELETE FROM handoff_notices WHERE sent_at < $1",
                        to_us(now - SENT_KEPT))
        rows = await self._all(
            "SELECT id, schedule, layer FROM handoff_notices WHERE sent_at IS NULL")
        wanted = set(keep)
        for row in rows:
            if (row[1], row[2]) not in wanted:
                await self.drop_notice(int(row[0]))

    async def open_incidents_of(self, teams: Sequence[str]) -> list[Incident]:
        """The open incidents of these teams, oldest first (what a handoff notice lists)."""
        if not teams:
            return []
        rows = await self._all(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state != 'resolved'"
            " AND team = ANY($1::text[]) ORDER BY id", list(teams),
        )
        return [incident_from_row(tuple(r)) for r in rows]
