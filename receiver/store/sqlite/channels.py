"""Noise control's channel histories inside one writer batch (see store/base.py's
ChannelRecords). The one writer serialises every pass, so reading is locking."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from receiver.store.codec import channel_columns, channel_record, opt_from_us, to_us
from receiver.store.records import ChannelRecord
from receiver.store.sqlite.statements import Statements


class ChannelStatements(Statements):
    async def lock_channels(
        self, channels: Sequence[str], now: datetime
    ) -> list[ChannelRecord]:
        # The channels go in as one JSON array: one statement text (and one prepared
        # statement) whatever their number.
        rows = await self._all(
            "SELECT channel, history, addressee, summary_at FROM channel_histories"
            " WHERE channel IN (SELECT value FROM json_each(?)) OR summary_at <= ?",
            (json.dumps(list(channels)), to_us(now)),
        )
        return [channel_record(r) for r in rows]

    async def save_channels(self, records: Sequence[ChannelRecord]) -> None:
        self._cur.executemany(
            "INSERT OR REPLACE INTO channel_histories (channel, history, addressee, summary_at)"
            " VALUES (?, ?, ?, ?)",
            [channel_columns(r) for r in records],
        )

    async def drop_channels(self, channels: Sequence[str]) -> None:
        self._cur.executemany("DELETE FROM channel_histories WHERE channel = ?",
                              [(c,) for c in channels])
        await self.forget_held_back(channels)

    async def hold_back(self, channel: str, incident_ids: Sequence[int], at: datetime) -> None:
        when = to_us(at)
        self._cur.executemany(
            "INSERT OR IGNORE INTO held_back (channel, incident_id, held_at) VALUES (?, ?, ?)",
            [(channel, i, when) for i in incident_ids],
        )

    async def held_back(self, channels: Sequence[str]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {c: [] for c in channels}
        rows = await self._all(
            "SELECT channel, incident_id FROM held_back"
            " WHERE channel IN (SELECT value FROM json_each(?))"
            " ORDER BY channel, held_at, incident_id", (json.dumps(list(channels)),))
        for channel, incident_id in rows:
            found[str(channel)].append(int(incident_id))
        return found

    async def forget_held_back(self, channels: Sequence[str]) -> None:
        self._cur.executemany("DELETE FROM held_back WHERE channel = ?",
                              [(c,) for c in channels])

    async def passed_gate(self, outbox_ids: Sequence[int]) -> None:
        self._cur.execute(
            "UPDATE outbox SET gated = 1 WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(outbox_ids)),),
        )

    async def next_summary_at(self) -> datetime | None:
        rows = await self._all("SELECT min(summary_at) FROM channel_histories")
        return opt_from_us(rows[0][0]) if rows else None

