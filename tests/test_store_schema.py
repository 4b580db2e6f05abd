"""The schema in both dialects: after each migration, SQLite (store/schema.py) and PostgreSQL
(store/postgres/schema.py) hold the same tables, the same columns with the same nullability,
and the same indexes (columns, uniqueness, and the names of those made by CREATE INDEX).
A migration added to one dialect and not the other fails here."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from receiver.store.postgres import schema as pg_schema
from receiver.store.postgres.migrate import VERSION_TABLE, migrate, schema_version
from receiver.store.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS

# table -> {column: nullable}
Columns = dict[str, dict[str, bool]]
# table -> {(columns, unique)}, and the names of indexes made by CREATE INDEX
Indexes = dict[str, set[tuple[tuple[str, ...], bool]]]


def describe_sqlite(conn: sqlite3.Connection) -> tuple[Columns, Indexes, set[str]]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    columns: Columns = {}
    indexes: Indexes = {}
    for table in tables:
        info = conn.execute(f"PRAGMA table_info({table})").fetchall()
        columns[table] = {r[1]: not (r[3] or r[5]) for r in info}
        primary = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        indexes[table] = {(primary, True)} if primary else set()
        for _, name, unique, origin, _ in conn.execute(f"PRAGMA index_list({table})"):
            if origin == "pk":
                continue
            cols = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})"))
            indexes[table].add((cols, bool(unique)))
    named = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    return columns, indexes, named


async def describe_postgres(conn: asyncpg.Connection) -> tuple[Columns, Indexes, set[str]]:
    columns: Columns = {}
    for r in await conn.fetch(
        "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name <> $1", VERSION_TABLE,
    ):
        columns.setdefault(r["table_name"], {})[r["column_name"]] = r["is_nullable"] == "YES"
    indexes: Indexes = {table: set() for table in columns}
    named: set[str] = set()
    for r in await conn.fetch(
        "SELECT t.relname AS tab, i.relname AS ind, ix.indisunique AS uniq,"
        # Each key column's name, or its expression's text (md5(group_key)).
        " array(SELECT pg_get_indexdef(ix.indexrelid, k.n::int, true)"
        "   FROM generate_series(1, ix.indnkeyatts) AS k(n) ORDER BY k.n)::text[] AS cols,"
        " EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid) AS backs"
        " FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid"
        " JOIN pg_class t ON t.oid = ix.indrelid"
        " JOIN pg_namespace ns ON ns.oid = t.relnamespace"
        " WHERE ns.nspname = 'public' AND t.relname <> $1", VERSION_TABLE,
    ):
        indexes[r["tab"]].add((tuple(_keyed(c) for c in r["cols"]), r["uniq"]))
        if not r["backs"]:
            named.add(r["ind"])
    return columns, indexes, named


def _keyed(column: str) -> str:
    """An index column as SQLite's twin names it: PostgreSQL's group indexes hold an MD5 of
    the key (its B-tree entries are bounded, SQLite's are not), which stands for the key."""
    return column.removeprefix("md5(").removesuffix(")")


TWIN = ("each SQLite migration (receiver/store/schema.py) needs its twin, in PostgreSQL's"
        " dialect, at the same index of receiver/store/postgres/schema.py")


def test_both_dialects_have_a_migration_for_each_number() -> None:
    assert len(pg_schema.MIGRATIONS) == len(SQLITE_MIGRATIONS), TWIN


async def test_both_dialects_hold_the_same_tables_after_each_migration(
    tmp_path: Path, pg_dsn: str
) -> None:
    lite = sqlite3.connect(tmp_path / "ackd.db", isolation_level=None)
    lite.create_function("ackd_contact_index", 3, lambda *_: None)
    pg = await asyncpg.connect(pg_dsn)
    try:
        for number, script in enumerate(SQLITE_MIGRATIONS, start=1):
            lite.executescript(f"BEGIN;\n{script}\nCOMMIT;")
            await migrate(pg, upto=number)
            assert describe_sqlite(lite) == await describe_postgres(pg), \
                f"after migration {number}: {TWIN}"
    finally:
        lite.close()
        await pg.close()


async def test_replicas_migrating_at_once_apply_each_migration_once(pg_dsn: str) -> None:
    conns = [await asyncpg.connect(pg_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = await conns[0].fetch(f"SELECT version FROM {VERSION_TABLE} ORDER BY version")
        again = await migrate(conns[0])
        version = await schema_version(conns[0])
    finally:
        for conn in conns:
            await conn.close()
    latest = len(pg_schema.MIGRATIONS)
    assert sorted(results) == [(0, latest), (latest, latest), (latest, latest)]
    assert [r["version"] for r in applied] == list(range(1, latest + 1))
    assert again == (latest, latest)
    assert version == latest


async def test_a_failing_migration_leaves_the_schema_as_it_was(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (*pg_schema.MIGRATIONS[:2], "ALTER TABLE nowhere ADD COLUMN x INTEGER")
    monkeypatch.setattr("receiver.store.postgres.migrate.MIGRATIONS", broken)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate(conn, upto=1)
        with pytest.raises(asyncpg.UndefinedTableError):
            await migrate(conn)
        version = await schema_version(conn)
        outbox_due = await conn.fetchval("SELECT to_regclass('outbox_due') IS NOT NULL")
    finally:
        await conn.close()
    assert version == 1
    assert not outbox_due  # migration 2 went back with 3
