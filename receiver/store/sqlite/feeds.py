"""Calendar feed generations inside one writer batch (migration 12): revoking a feed raises
its generation, and every address signed for an earlier one stops (notify/links.FeedLinks)."""

from __future__ import annotations

from receiver.store.sqlite.statements import Statements


class FeedStatements(Statements):
    async def feed_generation(self, kind: str, name: str) -> int:
        rows = await self._all(
            "SELECT generation FROM calendar_feeds WHERE kind = ? AND name = ?", (kind, name))
        return int(rows[0][0]) if rows else 0

    async def revoke_feed(self, kind: str, name: str) -> int:
        rows = await self._all(
            "INSERT INTO calendar_feeds (kind, name, generation) VALUES (?, ?, 1)"
            " ON CONFLICT (kind, name) DO UPDATE SET generation = generation + 1"
            " RETURNING generation",
            (kind, name),
        )
        return int(rows[0][0])
