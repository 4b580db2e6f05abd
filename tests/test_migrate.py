"""`ackd migrate` brings the store's schema up to this version, for a deploy pipeline, on
SQLite and on PostgreSQL alike; `ackd serve --no-migrate` refuses a store it has not run on.
A PostgreSQL DSN's password shows in no output."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from receiver.store.postgres.migrate import migrate, schema_version
from receiver.store.postgres.schema import MIGRATIONS as PG_MIGRATIONS
from receiver.store.postgres.store import PostgresStore
from receiver.store.sqlite.schema import MIGRATIONS
from tests.harness import free_port
from tests.pgcluster import SUPERUSER, Cluster, fresh_database
from tests.test_cli import ackd
from tests.test_store_replicas import new_incident

NEW = new_incident("dml")

LATEST = len(MIGRATIONS)
BODY = """\
links: {secret: a-long-shared-link-secret}
teams: [{name: ops}]
users: [{name: ana, contacts: [{url: "json://127.0.0.1:9/ana"}]}]
policies: [{name: p, steps: [{notify: [{user: ana}]}]}]
route: {team: ops, policy: p, severity: SEV1}
"""


def sqlite_config(tmp_path: Path) -> Path:
    path = tmp_path / "ackd.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n" + BODY)
    return path


def postgres_config(tmp_path: Path) -> Path:
    path = tmp_path / "ackd.yaml"
    path.write_text("storage: {postgres: {dsn: '${ACKD_DSN}'}}\n" + BODY)
    return path


def test_migrate_creates_a_sqlite_store_at_the_latest_schema_once(tmp_path: Path) -> None:
    config = sqlite_config(tmp_path)
    first = ackd("migrate", "--config", str(config))
    again = ackd("migrate", "--config", str(config))
    db = tmp_path / "data" / "ackd.db"
    assert first.returncode == 0
    assert f"applying schema migration {LATEST}" in first.stderr
    assert first.stdout == f"{db}: migrated from schema migration 0 to {LATEST}\n"
    assert again.stdout == f"{db}: at schema migration {LATEST}, nothing to do\n"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert db.stat().st_mode & 0o777 == 0o600


def test_serve_with_no_migrate_refuses_a_store_migrate_has_not_run_on(tmp_path: Path) -> None:
    config = sqlite_config(tmp_path)
    listen = f"127.0.0.1:{free_port()}"
    refused = ackd("serve", "--no-migrate", "--config", str(config), "--listen", listen)
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith(
        f"the store {tmp_path / 'data' / 'ackd.db'} is at schema migration 0, this ackd needs"
        f" {LATEST}: run `ackd migrate` first (or start without --no-migrate)"
    )


async def test_migrate_on_postgresql_names_the_database_without_its_password(
    tmp_path: Path, pg_dsn: str
) -> None:
    config = postgres_config(tmp_path)
    env = {**os.environ, "ACKD_DSN": pg_dsn}
    password = pg_dsn.split(":")[2].split("@")[0]
    masked = pg_dsn.replace(password, "***")
    first = ackd("migrate", "--config", str(config), env=env)
    again = ackd("migrate", "--config", str(config), env=env)
    assert first.returncode == 0
    assert f"applying schema migration {LATEST}" in first.stderr
    assert first.stdout == f"{masked}: migrated from schema migration 0 to {LATEST}\n"
    assert again.stdout == f"{masked}: at schema migration {LATEST}, nothing to do\n"
    assert password not in first.stdout + first.stderr + again.stdout + again.stderr
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await schema_version(conn) == LATEST
    finally:
        await conn.close()


def test_an_unreachable_postgresql_is_one_line_without_the_password(tmp_path: Path) -> None:
    config = postgres_config(tmp_path)
    port = free_port()
    env = {**os.environ, "ACKD_DSN": f"postgresql://ackd:pw-hunter2@127.0.0.1:{port}/ackd"}
    result = ackd("migrate", "--config", str(config), env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"ackd migrate: cannot reach PostgreSQL at postgresql://ackd:***@127.0.0.1:{port}/ackd: "
    )
    assert result.stderr.count("\n") == 1
    assert "hunter2" not in result.stderr + result.stdout


def test_serve_on_an_unreachable_postgresql_is_one_line_without_the_password(
    tmp_path: Path,
) -> None:
    config = postgres_config(tmp_path)
    port = free_port()
    env = {**os.environ, "ACKD_DSN": f"postgresql://ackd:pw-hunter2@127.0.0.1:{port}/ackd"}
    result = ackd("serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}",
                  "--data-dir", str(tmp_path / "data"), env=env)
    assert result.returncode == 1
    assert (f"ackd: cannot open the store postgresql://ackd:***@127.0.0.1:{port}/ackd: "
            in result.stderr)
    assert "hunter2" not in result.stderr


def test_serve_with_no_migrate_refuses_a_postgresql_database_never_migrated(
    tmp_path: Path, pg_dsn: str
) -> None:
    config = postgres_config(tmp_path)
    env = {**os.environ, "ACKD_DSN": pg_dsn}
    password = pg_dsn.split(":")[2].split("@")[0]
    result = ackd("serve", "--no-migrate", "--config", str(config), "--listen",
                  f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "data"), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        f"the store {pg_dsn.replace(password, '***')} is at schema migration 0, this ackd"
        f" needs {LATEST}: run `ackd migrate` first (or start without --no-migrate)"
    )


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes TCP connections and never says a word, as a PostgreSQL behind a
    firewall that drops its answers, or a hung server: the kernel completes each handshake
    into the listen backlog, and nobody accepts or answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def silent_config(tmp_path: Path, port: int) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "ackd.yaml"
    path.write_text("storage: {postgres: {dsn: '${ACKD_DSN}', connect_timeout: 1s}}\n" + BODY)
    return path, {**os.environ, "ACKD_DSN": f"postgresql://ackd:pw-hunter2@127.0.0.1:{port}/ackd"}


def test_serve_on_a_postgresql_that_never_answers_gives_up_and_says_so(
    tmp_path: Path, silent_port: int
) -> None:
    """Before: asyncpg's 60 s, then "cannot open the store ...: " and nothing after the colon
    (a bare TimeoutError's text)."""
    config, env = silent_config(tmp_path, silent_port)
    started = time.monotonic()
    result = ackd("serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}",
                  "--data-dir", str(tmp_path / "data"), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        f"ackd: cannot open the store postgresql://ackd:***@127.0.0.1:{silent_port}/ackd:"
        f" timed out after 1 s connecting to 127.0.0.1:{silent_port}"), result.stderr
    assert "hunter2" not in result.stderr
    assert time.monotonic() - started < 25  # the process's start-up and 1 s, never 60


def test_migrate_on_a_postgresql_that_never_answers_gives_up_and_says_so(
    tmp_path: Path, silent_port: int
) -> None:
    config, env = silent_config(tmp_path, silent_port)
    result = ackd("migrate", "--config", str(config), env=env)
    assert result.returncode == 1
    assert result.stderr == (
        f"ackd migrate: cannot reach PostgreSQL at postgresql://ackd:***@127.0.0.1:{silent_port}"
        f"/ackd: timed out after 1 s connecting to 127.0.0.1:{silent_port}\n")


async def test_the_store_bounds_opening_its_pool_by_the_connect_timeout(silent_port: int) -> None:
    store = PostgresStore(f"postgresql://ackd:pw@127.0.0.1:{silent_port}/ackd",
                          connect_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=(
            f"^timed out after 0.3 s connecting to 127.0.0.1:{silent_port}$")):
        await store.open()
    assert time.monotonic() - started < 5


async def test_a_dml_only_user_serves_an_up_to_date_schema_and_migrate_says_why_not_in_a_line(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    """Migrate as the schema's owner, run as a user with DML only (README's grants): the
    replica reads the schema's version first and needs no DDL when nothing is pending (it
    ran CREATE TABLE IF NOT EXISTS ackd_schema first, and exited 1 "permission denied for
    schema public" unless given --no-migrate); `ackd migrate` as that user with a migration
    pending is one line saying who may migrate, not asyncpg's traceback."""
    role = f"ackd_dml_{os.getpid()}"
    config = postgres_config(tmp_path)
    async with fresh_database(pg_cluster) as owner_dsn:
        dml_dsn = owner_dsn.replace(f"{SUPERUSER}:{pg_cluster.password}@",
                                    f"{role}:dml-hunter2@")
        conn = await asyncpg.connect(owner_dsn)
        try:
            await migrate(conn, upto=len(PG_MIGRATIONS) - 1)  # the newest one pending
            await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'dml-hunter2'")
            await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            await conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
            grants = (
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};"
                f" GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
            await conn.execute(grants)
            refused = ackd("migrate", "--config", str(config),
                           env={**os.environ, "ACKD_DSN": dml_dsn})
            assert refused.returncode == 1
            assert "Traceback" not in refused.stderr, refused.stderr
            assert "dml-hunter2" not in refused.stderr
            last = refused.stderr.strip().splitlines()[-1]
            masked = dml_dsn.replace("dml-hunter2", "***")
            assert last.startswith(f"ackd migrate: cannot migrate {masked}: "), last
            assert "run `ackd migrate` as the schema's owner" in last, last
            assert await schema_version(conn) == len(PG_MIGRATIONS) - 1

            await migrate(conn)  # the owner migrates; new tables would need grants again
            await conn.execute(grants)
            store = PostgresStore(dml_dsn, pool_size=2)  # as `ackd serve`, migrating
            await store.open()
            try:
                incident_id = await store.write(lambda tx: tx.insert_incident(NEW, None))
                assert (await store.incident(incident_id)).group_key == NEW.group_key
            finally:
                await store.close()
            again = ackd("migrate", "--config", str(config),
                         env={**os.environ, "ACKD_DSN": dml_dsn})
            assert again.returncode == 0, again.stderr
            assert again.stdout.endswith("nothing to do\n")
        finally:
            await conn.close()
    admin = await asyncpg.connect(pg_cluster.dsn())
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        await admin.close()
