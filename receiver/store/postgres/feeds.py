"""Calendar feed generations inside one batch on PostgreSQL (migration 12): revoking a feed
raises its generation, and every address signed for an earlier one stops, on every replica
(each feed request reads the row)."""

from __future__ import annotations

from receiver.store.postgres.statements import Statements


class FeedStatements(Statements):
    async def feed_generation(self, kind: str, name: str) -> int:
        rows = await self._all(
            "SELECT generation FROM calendar_feeds WHERE kind = $1 AND name = $2", kind, name)
        return int(rows[0][0]) if rows else 0

    async def revoke_feed(self, kind: str, name: str) -> int:
        rows = await self._all(
            "INSERT INTO calendar_feeds (kind, name, generation) VALUES ($1, $2, 1)"
            " ON CONFLICT (kind, name) DO UPDATE"
            " SET generation = calendar_feeds.generation + 1 RETURNING generation",
            kind, name,
        )
        return int(rows[0][0])
