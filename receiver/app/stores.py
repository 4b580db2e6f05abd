"""The stores a config may ask for, by name (as uvicorn names its event loops in a table):
`sqlite`, the file in data_dir, unless `storage.postgres` names a database (`postgres`).
Each entry makes the store for the daemon, says what to call it in a message (a PostgreSQL
DSN with its password masked), and migrates it, for `ackd migrate` in a deploy pipeline."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlsplit

import asyncpg

from receiver.config.model import Config
from receiver.core.errors import StartupError
from receiver.core.frozen import frozen
from receiver.store.base import Store
from receiver.store.postgres.migrate import migrate as migrate_postgres
from receiver.store.postgres.store import PostgresStore, connect
from receiver.store.sqlite.store import ContactIndex, SqliteStore, migrate_file


@frozen
class StoreKind:
    make: Callable[[Config, bool, ContactIndex], Store]  # (config, migrate at open, ...)
    describe: Callable[[Config], str]
    migrate: Callable[[Config, ContactIndex], Awaitable[tuple[int, int]]]
    # Several daemons may share it (PostgreSQL), or one owns it (SQLite: StoreOwner).
    shared: bool


def _make_sqlite(config: Config, migrate: bool, contact_index: ContactIndex) -> Store:
    return SqliteStore(config.db_path, synchronous=config.synchronous, migrate=migrate,
                       contact_index=contact_index)


def _make_postgres(config: Config, migrate: bool, contact_index: ContactIndex) -> Store:
    settings = config.postgres
    assert settings is not None
    # No contact index: migration 4 rewrote URLs of SQLite rows; no PostgreSQL row had one.
    return PostgresStore(settings.dsn, pool_size=settings.pool_size, migrate=migrate,
                         name=settings.masked, connect_timeout=settings.connect_timeout)


async def _migrate_sqlite(config: Config, contact_index: ContactIndex) -> tuple[int, int]:
    return migrate_file(config.db_path, contact_index)


async def _migrate_postgres(config: Config, contact_index: ContactIndex) -> tuple[int, int]:
    settings = config.postgres
    assert settings is not None
    try:
        conn = await connect(settings.dsn, settings.connect_timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StartupError(
            f"cannot reach PostgreSQL at {settings.masked}: {_without(settings.dsn, exc)}"
        ) from exc
    try:
        return await migrate_postgres(conn)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise StartupError(
            f"cannot migrate {settings.masked}: {_without(settings.dsn, exc)}: run `ackd"
            " migrate` as the schema's owner (a user with CREATE on it); the replicas may run"
            " as a user with SELECT, INSERT, UPDATE, DELETE on its tables (README)"
        ) from exc
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StartupError(
            f"cannot migrate {settings.masked}: {_without(settings.dsn, exc)}") from exc
    finally:
        await conn.close()


def _without(dsn: str, exc: BaseException) -> str:
    """The error's text, with the DSN's password masked should a driver ever repeat it."""
    text = reason(exc)
    password = urlsplit(dsn).password
    for secret in {password, unquote(password)} if password else set():
        text = text.replace(secret, "***")
    return text


STORES: dict[str, StoreKind] = {
    "sqlite": StoreKind(_make_sqlite, lambda config: str(config.db_path), _migrate_sqlite,
                        shared=False),
    "postgres": StoreKind(
        _make_postgres, lambda config: config.postgres.masked if config.postgres else "",
        _migrate_postgres, shared=True,
    ),
}
# What opening a store may raise that names a cause worth one line (StartupError).
OPEN_ERRORS = (OSError, TimeoutError, sqlite3.Error, asyncpg.PostgresError,
               asyncpg.InterfaceError)


def reason(exc: BaseException) -> str:
    """What a message says went wrong: the error's text, or its name when it has none (a bare
    TimeoutError would leave nothing after the colon)."""
    return str(exc) or type(exc).__name__


async def migrate(config: Config, contact_index: ContactIndex) -> tuple[str, int, int]:
    """Migrate the config's store: (what it is, migration before, migration after)."""
    kind = STORES[config.store_kind]
    before, after = await kind.migrate(config, contact_index)
    return kind.describe(config), before, after
