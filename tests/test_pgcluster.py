"""The tests' throwaway PostgreSQL cluster (tests/pgcluster.py): on 127.0.0.1 only, a password
over TCP, a fresh database per test, stopped and removed at the end, and a missing PostgreSQL
a failure under CI=true."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncpg
import pytest

from tests import pgcluster
from tests.pgcluster import Cluster, start_cluster


async def test_each_test_gets_an_empty_database_of_its_own(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        await conn.execute("CREATE TABLE mine (x INTEGER)")
        name = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()
    assert tables == 0
    assert name.startswith("ackd_test_")


async def test_the_cluster_listens_on_loopback_and_wants_the_password(
    pg_cluster: Cluster,
) -> None:
    listening = await asyncpg.connect(pg_cluster.dsn())
    try:
        addresses = await listening.fetchval("SHOW listen_addresses")
    finally:
        await listening.close()
    assert addresses == "127.0.0.1"
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(pg_cluster.dsn(password="wrong"))


def test_a_stopped_cluster_leaves_nothing_behind() -> None:
    cluster = start_cluster()
    cluster.stop()
    assert not cluster.home.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", cluster.port)) != 0


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_a_missing_postgresql_fails_under_ci_and_skips_locally(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pgcluster, "DEBIAN_BINDIRS", str(tmp_path / "*/bin"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="apt-get install postgresql"):
        pgcluster.require_binaries()


def test_debian_s_own_directory_is_found_when_path_has_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for version in ("13", "15"):
        bindir = tmp_path / version / "bin"
        bindir.mkdir(parents=True)
        for program in ("initdb", "pg_ctl"):
            (bindir / program).touch()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(pgcluster, "DEBIAN_BINDIRS", str(tmp_path / "*/bin"))
    assert pgcluster.server_binaries() == tmp_path / "15" / "bin"
