"""A throwaway PostgreSQL cluster for the tests, as a pytest plugin (conftest.py loads it).

`pg_cluster` (one per test session): initdb in a temporary directory, then pg_ctl start on a
free port of 127.0.0.1 with its socket in that directory too; at the end only that cluster is
stopped (pg_ctl -D on its own directory) and the directory removed. `pg_dsn` (one per test): a
new, empty database in it, as a DSN with a password, the way an operator would write one.

Debian keeps initdb and pg_ctl under /usr/lib/postgresql/<version>/bin, outside PATH; some
machines link them into PATH: either is found. initdb refuses to run as root, so as root the
cluster belongs to the `postgres` user (runuser), in a directory that user owns. A missing
PostgreSQL skips locally and fails under CI=true, where .ci/run installs Debian's `postgresql`.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"
SERVICE_USER = "postgres"  # who runs the cluster when the tests run as root
SUPERUSER = "ackd_test"
MISSING = "PostgreSQL is missing (apt-get install postgresql)"
# The store's batch writers' task names (not its passes' writer, `ackd-pg-writer-passes`).
BATCH_WRITER = re.compile(r"ackd-pg-writer-\d+")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl (PATH first, then Debian's newest), or None."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(os.path.realpath(initdb)).parent
    found = [Path(d) for d in glob.glob(DEBIAN_BINDIRS)
             if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists()]
    found.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else -1)
    return found[-1] if found else None


def require_binaries() -> Path:
    """The server's binaries; a missing PostgreSQL fails under CI=true and skips locally."""
    found = server_binaries()
    if found is not None:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(MISSING)
    pytest.skip(MISSING)


@dataclass
class Cluster:
    """One cluster, its data and socket in `home`, listening on 127.0.0.1:`port` only."""

    bindir: Path
    home: Path
    port: int
    password: str
    _options: str = ""

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log_path(self) -> Path:
        return self.home / "postgres.log"

    def dsn(self, database: str = "postgres", password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{secret}@127.0.0.1:{self.port}/{database}"

    def start(self, durable: bool = False) -> None:
        """initdb and start. Not `durable`: no fsync, as a test's data is thrown away anyway
        (the benchmark asks for a durable one to compare with SQLite's synchronous=FULL)."""
        pwfile = self.home / "password"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        # A password over TCP, as operators configure it; trust only on the socket, which
        # lies in the cluster's own directory.
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                  "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        pwfile.unlink()
        options = (f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1"
                   " -c max_connections=200")
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._options = options
        self.resume()

    def halt(self) -> None:
        """Stop the server (fast: its clients are cut off), keeping its data for resume()."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options, "-l",
                  str(self.log_path), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop this cluster (its own data directory names it) and remove its directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}):\n{done.stdout}"
                               f"{done.stderr}{log}")

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, SERVICE_USER, SERVICE_USER)


def start_cluster(durable: bool = False) -> Cluster:
    bindir = require_binaries()
    # Not under pytest's tmp_path: as root that is root's alone (0700), and the cluster's
    # owner must reach its own directory.
    home = Path(tempfile.mkdtemp(prefix="ackd-pg-"))
    cluster = Cluster(bindir, home, free_port(), secrets.token_urlsafe(18))
    try:
        cluster._own(home)
        cluster.start(durable)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


_databases = itertools.count(1)


@contextlib.asynccontextmanager
async def fresh_database(cluster: Cluster) -> AsyncIterator[str]:
    """A new, empty database of the cluster, as a DSN; dropped afterwards."""
    name = f"ackd_test_{os.getpid()}_{next(_databases)}"
    admin = await asyncpg.connect(cluster.dsn())
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    try:
        yield cluster.dsn(name)
    finally:
        admin = await asyncpg.connect(cluster.dsn())
        try:
            # WITH (FORCE): a connection the test left open must not keep the database.
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


@pytest.fixture
async def pg_dsn(pg_cluster: Cluster) -> AsyncIterator[str]:
    """A DSN of a new, empty database of the session's cluster, dropped after the test."""
    async with fresh_database(pg_cluster) as dsn:
        yield dsn


def record_writer_statements(
    monkeypatch: pytest.MonkeyPatch, methods: tuple[str, ...] = ("fetch", "execute")
) -> list[str]:
    """The statements the PostgreSQL store's batch writers (`ackd-pg-writer-N`) send through
    these asyncpg.Connection methods from now on, in order, as the list returned; the
    replicas' other statements (timers, leases, the dispatcher's own) are not recorded."""
    sent: list[str] = []

    def recorded(method: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[object]]:
        async def recording(conn: asyncpg.Connection, query: str, *args: object,
                            **kwargs: object) -> object:
            task = asyncio.current_task()
            if task is not None and BATCH_WRITER.fullmatch(task.get_name()):
                sent.append(query)
            return await method(conn, query, *args, **kwargs)

        return recording

    for name in methods:
        monkeypatch.setattr(asyncpg.Connection, name, recorded(getattr(asyncpg.Connection, name)))
    return sent
