"""Migrations on PostgreSQL: every pending one in a single transaction (PostgreSQL's DDL is
transactional: a failed migration leaves the schema as it was), under an advisory lock, so
that replicas starting together, or `ackd migrate` in a deploy pipeline beside them, apply
each migration once. The table ackd_schema records each migration applied and when.

A database migrated further than this ackd knows is left alone: a rolling deploy migrates
first and then replaces the replicas one by one, and the older ones keep running meanwhile
(migrations only add).
"""

from __future__ import annotations

import logging
import time

from receiver.store.postgres.schema import MIGRATIONS
from receiver.store.postgres.statements import Connection

log = logging.getLogger(__name__)

# pg_advisory_xact_lock's key for migrations: "ackd" in ASCII.
MIGRATION_LOCK = 0x61636B64
VERSION_TABLE = "ackd_schema"


async def schema_version(conn: Connection) -> int:
    """The last migration applied to this database, 0 for a database ackd never migrated."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", VERSION_TABLE)
    if not exists:
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {VERSION_TABLE}")
    return int(version or 0)


async def migrate(conn: Connection, upto: int | None = None) -> tuple[int, int]:
    """Apply every migration not applied yet (or those up to `upto`); (before, after).
    The version is read first: with nothing pending, nothing else runs, so a replica whose
    user may only read and write rows (no CREATE on the schema) starts on a schema its owner
    migrated."""
    target = len(MIGRATIONS) if upto is None else upto
    current = await schema_version(conn)
    if current >= target:
        _newer(current)
        return current, current
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
            " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        before = await schema_version(conn)
        for number in range(before + 1, target + 1):
            log.info("applying schema migration %d", number)
            if MIGRATIONS[number - 1].strip():
                await conn.execute(MIGRATIONS[number - 1])
            await conn.execute(
                f"INSERT INTO {VERSION_TABLE} (version, applied_at) VALUES ($1, $2)",
                number, time.time_ns() // 1000,
            )
    _newer(before)
    return before, max(before, target)


def _newer(version: int) -> None:
    if version > len(MIGRATIONS):
        log.warning("the database is at schema migration %d, this ackd knows %d: a newer ackd"
                    " migrated it", version, len(MIGRATIONS))
