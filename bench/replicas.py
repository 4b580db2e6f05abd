"""The PostgreSQL leg (`bench/run.py --only replicas`): the ingest mix spread over three ackd
replicas sharing one PostgreSQL database, against the single SQLite instance, in alternating
rounds of the same run.

The cluster is the tests' throwaway one (tests/pgcluster.py) but durable (fsync on, as
SQLite's synchronous=full), on 127.0.0.1 beside ackd: the same machine, so the replicas, the
database and the load generator share its two cores, as the single instance shares them with
the load generator alone. The 32 connections are split among the replicas (11, 11, 10), each
replica's connections playing their own groups, as Alertmanager behind a load balancer.
The database holds 20,000 resolved incidents and their statistics before the leg (`history`),
as a deployment's does once it has run for a while.

The timer leg (alone: `--only replica-timers`) seeds 10,000 armed deadlines, brings them due
at the benchmark's rate and at a quarter of it, and has them fired by the three replicas,
then by the single SQLite instance from the same seed, in the same run; each deadline must
fire once (counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import asyncpg
import procs
import seed
from load import LoadPlan, LoadResult, percentile, run_load

from receiver.config import build as config_module
from receiver.store.postgres.migrate import migrate

# A row of bench/run.py's report: measure, value, target, passed (None: no target).
Line = tuple[str, str, str, bool | None]

if TYPE_CHECKING:
    from tests.pgcluster import Cluster

REPLICAS = 3
DATABASE = "ackd_bench"
METRICS_AUTH = {"Authorization": "Bearer bench-api-token"}  # bench/run.py's CONFIG
# Targets (issue 16): the ingest mix's p99 across replicas, and timer lateness p99 with 10,000
# armed across them, every due step fired once.
MAX_P99 = 0.100
MAX_P99_LATENESS = 1.0
COMMIT_DELAY = 500  # µs (PostgreSQL's default: 0)
COMMIT_SIBLINGS = 2  # (default: 5)
HISTORY = 20_000  # resolved incidents in the database before the ingest leg (see history)


async def legs(work: Path, config: Path, token: str, rounds: int, duration: float,
               connections: int, seed: int, armed: int, due_count: int,
               due_rate: float, *, ingest: bool = True) -> list[Line]:
    """The ingest leg (unless not `ingest`: `--only replica-timers`), then the timer leg."""
    # The tests' cluster helper, from the source tree (bench/ runs with only its own folder
    # and the installed package on the path).
    sys.path.append(str(procs.ROOT))
    from tests.pgcluster import start_cluster

    cluster = start_cluster(durable=True)
    try:
        await _group_commit(cluster)
        rows = (await _ingest(cluster, work, config, token, rounds, duration, connections,
                              seed) if ingest else [])
        rows.extend(await _timer_rows(cluster, work, config, armed, due_count, due_rate))
    finally:
        cluster.stop()
    return rows


async def _group_commit(cluster: Cluster) -> None:
    """PostgreSQL's group commit, as docs/scaling.md recommends for replicas: a commit waits
    COMMIT_DELAY µs for others to share its WAL flush when COMMIT_SIBLINGS more transactions
    are open."""
    admin = await asyncpg.connect(cluster.dsn())
    try:
        await admin.execute(f"ALTER SYSTEM SET commit_delay = {COMMIT_DELAY}")
        await admin.execute(f"ALTER SYSTEM SET commit_siblings = {COMMIT_SIBLINGS}")
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()


async def _timer_rows(cluster: Cluster, work: Path, config: Path, armed: int, due_count: int,
                     due_rate: float) -> list[Line]:
    """The timer leg at `due_rate` and at a quarter of it: where lateness stays small."""
    rows = []
    for rate in (due_rate, due_rate / 4):
        rows.extend(await _timers(cluster, work, config, armed, due_count, rate))
    return rows


async def history(dsn: str, count: int) -> None:
    """`count` resolved incidents of groups the mix never posts, 10 alerts and 4 timeline rows
    each, then VACUUM ANALYZE (invalidating the plans the daemons' connections made): a
    database as a deployment that has run for a while holds it. On an empty one, PostgreSQL
    plans the first statements for empty tables, and those plans (sequential scans) stay
    while the tables grow, until autovacuum analyzes them (a minute or more): a leg of
    seconds would measure that first minute, not the steady state."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO incidents (group_key, route_id, team, severity, policy, group_labels,"
            " state, opened_at, updated_at, resolved_at, resolved_by, external_url, summary)"
            " SELECT 'history:' || i, '{}', 'platform', 'SEV2', 'standard',"
            " '{\"alertname\":\"History' || i || '\"}', 'resolved', 1700000000000000 + i,"
            " 1700000000000000 + i, 1700000000000000 + i, 'alertmanager', 'http://am', 'old'"
            " FROM generate_series(1, $1) AS i", count)
        await conn.execute(
            "INSERT INTO alerts (incident_id, fingerprint, starts_at, ends_at, status, labels,"
            " annotations, generator_url, updated_at)"
            " SELECT i.id, lpad(to_hex(i.id * 16 + a), 16, '0'), i.opened_at, i.opened_at + 1,"
            " 'resolved', '{\"alertname\":\"H\",\"instance\":\"10.0.0.' || a || ':9100\"}',"
            " '{\"summary\":\"old\"}', 'http://prom/graph', i.opened_at"
            " FROM incidents i, generate_series(1, 10) AS a WHERE i.group_key LIKE 'history:%'")
        await conn.execute(
            "INSERT INTO timeline (incident_id, at, kind, actor, detail)"
            " SELECT i.id, i.opened_at, k, 'alertmanager', '{}' FROM incidents i,"
            " unnest(ARRAY['opened', 'step_fired', 'notification_sent', 'resolved']) AS k"
            " WHERE i.group_key LIKE 'history:%'")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()



async def _database(cluster: Cluster, name: str) -> str:
    admin = await asyncpg.connect(cluster.dsn())
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return cluster.dsn(name)


async def _ingest(cluster: Cluster, work: Path, config: Path, token: str, rounds: int,
                  duration: float, connections: int, seed: int) -> list[Line]:
    dsn = await _database(cluster, DATABASE)
    shared = _postgres_config(config, work / "replicas.yaml", dsn)
    single = procs.ackd(work / "single", config, work / "single" / "data")
    (work / "single").mkdir(exist_ok=True)
    replicas = []
    for n in range(REPLICAS):
        home = work / f"replica{n}"
        home.mkdir(exist_ok=True)
        replicas.append(procs.ackd(home, shared, home / "data"))
    ours: list[LoadResult] = []
    theirs: list[LoadResult] = []
    ours_cpu, theirs_cpu = Cpu(), Cpu()
    try:
        await single.start_ready()
        for replica in replicas:
            await replica.start_ready()  # the first one migrated the database
        await history(dsn, HISTORY)
        for round_ in range(rounds):
            plan = LoadPlan(url="", token=token, connections=connections,
                            duration=duration, seed=seed + round_)
            async with theirs_cpu.measure([single], None):
                theirs.append(await run_load(_at(plan, single.url, connections)))
            async with ours_cpu.measure(replicas, cluster):
                ours.append(await _spread(plan, [r.url for r in replicas]))
    finally:
        single.stop()
        for replica in replicas:
            replica.stop()
    return [*_rows(_merge(ours), _merge(theirs), connections),
            *_cpu_rows(ours_cpu, theirs_cpu)]


@dataclass
class Cpu:
    """CPU seconds the ackd processes and PostgreSQL spent while webhooks were posted (warm-up
    included), and the webhooks they answered meanwhile (ackd_webhooks_total): the CPU one
    webhook costs, whatever else runs on the machine."""

    ackd: float = 0.0
    postgres: float = 0.0
    webhooks: float = 0.0

    @contextlib.asynccontextmanager
    async def measure(self, children: Sequence[procs.Child],
                      cluster: Cluster | None) -> AsyncIterator[None]:
        webhooks = await _webhooks(children)
        ackd = sum(c.cpu_seconds() for c in children)
        postgres = cluster_cpu(cluster.data) if cluster is not None else 0.0
        yield
        self.ackd += sum(c.cpu_seconds() for c in children) - ackd
        if cluster is not None:
            self.postgres += cluster_cpu(cluster.data) - postgres
        self.webhooks += await _webhooks(children) - webhooks

    def per_webhook(self) -> float:
        return (self.ackd + self.postgres) / self.webhooks if self.webhooks else 0.0


async def _webhooks(children: Sequence[procs.Child]) -> float:
    total = 0.0
    async with aiohttp.ClientSession() as session:
        for child in children:
            async with session.get(f"{child.url}/metrics", headers=METRICS_AUTH) as response:
                for line in (await response.text()).splitlines():
                    if line.startswith("ackd_webhooks_total"):
                        total += float(line.rsplit(" ", 1)[1])
    return total


def cluster_cpu(data: Path) -> float:
    """User + system CPU seconds of the postmaster of the cluster in `data` and its children
    (backends, WAL writer, checkpointer...), from /proc."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(entry.name) == postmaster or int(stat[1]) == postmaster:
            total += int(stat[11]) + int(stat[12])
    return total / os.sysconf("SC_CLK_TCK")


def _cpu_rows(ours: Cpu, theirs: Cpu) -> list[Line]:
    cores = os.cpu_count() or 1
    per = ours.per_webhook()
    return [
        (f"CPU per webhook, {REPLICAS} replicas + PostgreSQL (one ackd on SQLite)",
         f"{ours.ackd / max(ours.webhooks, 1) * 1e6:,.0f} + "
         f"{ours.postgres / max(ours.webhooks, 1) * 1e6:,.0f} ="
         f" {per * 1e6:,.0f} µs ({theirs.per_webhook() * 1e6:,.0f} µs)", "", None),
        (f"webhooks/s {cores} cores could take at that CPU (load generator left out)",
         f"{cores / per:,.0f} on PostgreSQL, {cores / theirs.per_webhook():,.0f} on SQLite"
         if per and theirs.per_webhook() else "-", "", None),
    ]


async def _timers(cluster: Cluster, work: Path, config_path: Path, armed: int, due_count: int,
                  due_rate: float) -> list[Line]:
    """`armed` open incidents with a step deadline each (seeded as bench/seed.py does, then
    copied into PostgreSQL), `due_count` of them due at `due_rate` per second, fired by
    whichever of three replicas takes each; then the same seed on one ackd on SQLite, in the
    same run. Lateness = the step's timeline time - its due time; a deadline fired twice
    would be two step events."""
    config = config_module.load(config_path)
    tag = f"{due_rate:.0f}"
    lite = work / f"timers-seed-{tag}" / "ackd.db"
    lite.parent.mkdir(mode=0o700)
    now = datetime.now(UTC)
    await seed.seed(lite, config, armed, now - timedelta(minutes=5), now + timedelta(hours=1))
    single = work / f"timers-single-{tag}"
    single.mkdir(mode=0o700)
    shutil.copy(lite, single / "ackd.db")
    due = min(armed, due_count)
    dsn = await _database(cluster, f"ackd_timers_{tag}")
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await _copy(lite, conn)
        dues = seed.spread(1, due, datetime.now(UTC) + timedelta(seconds=8), due_rate)
        await conn.executemany(
            "UPDATE deadlines SET due = $1 WHERE incident_id = $2 AND key = $3",
            [(at, n, seed.STEP_KEY) for n, at in dues.items()])
        shared = _postgres_config(config_path, work / f"timers-{tag}.yaml", dsn)
        replicas = []
        for n in range(REPLICAS):
            home = work / f"timers-{tag}-{n}"
            home.mkdir()
            replicas.append(procs.ackd(home, shared, home / "data"))
        try:
            for replica in replicas:
                await replica.start_ready()
            await _wait_fired(conn, dues, 8 + due / due_rate + 60)
        finally:
            for replica in replicas:
                replica.stop()
        late, left, twice = await _lateness(conn, dues)
    finally:
        await conn.close()
    alone = await _single_timers(work, config_path, single, due, due_rate)
    what = f"{armed:,} armed, {due:,} due at {due_rate:,.0f}/s: lateness p50 / p99 / max"
    return [
        (f"timers, {REPLICAS} replicas on PostgreSQL: {what}",
         _lateness_figures(late, left, twice),
         f"p99 < {MAX_P99_LATENESS:.0f} s, each fired once",
         percentile(late, 99) < MAX_P99_LATENESS and left == 0 and twice == 0),
        (f"timers, one ackd on SQLite (same run): {what}", alone, "", None),
    ]


async def _single_timers(work: Path, config_path: Path, data: Path, due: int,
                         due_rate: float) -> str:
    """The same seed on one ackd on SQLite (bench/run.py's timer leg)."""
    db = data / "ackd.db"
    dues = seed.spread(1, due, datetime.now(UTC) + timedelta(seconds=6), due_rate)
    seed.reschedule(db, dues)
    ackd = procs.ackd(data.parent, config_path, data)
    await ackd.start_ready()
    try:
        await seed.wait_fired(db, dues, 6 + due / due_rate + 60)
    finally:
        ackd.stop()
    late = seed.lateness(db, dues)
    counts = Counter(seed.fired_incidents(db, dues))
    return _lateness_figures(late, seed.armed(db, dues), sum(1 for c in counts.values() if c > 1))


def _lateness_figures(late: list[float], left: int, twice: int) -> str:
    return (f"{percentile(late, 50) * 1e3:.0f} / {percentile(late, 99) * 1e3:.0f} /"
            f" {max(late, default=0) * 1e3:.0f} ms ({len(late):,} fired, {left:,} not fired,"
            f" {twice:,} fired twice)")


async def _copy(lite: Path, conn: asyncpg.Connection) -> None:
    """The seeded rows, table by table, into the migrated PostgreSQL database."""
    source = sqlite3.connect(lite)
    try:
        for table in ("incidents", "alerts", "timeline", "deadlines"):
            cursor = source.execute(f"SELECT * FROM {table}")
            columns = [d[0] for d in cursor.description]
            await conn.copy_records_to_table(table, records=cursor.fetchall(), columns=columns)
            if table != "alerts":
                await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                                   f" (SELECT max(id) FROM {table}))")
    finally:
        source.close()


async def _wait_fired(conn: asyncpg.Connection, dues: Mapping[int, int], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = await conn.fetchval(
            "SELECT count(*) FROM deadlines WHERE key = $1 AND due <= $2",
            seed.STEP_KEY, max(dues.values()))
        if left == 0:
            return
        await asyncio.sleep(0.5)


async def _lateness(conn: asyncpg.Connection,
                    dues: Mapping[int, int]) -> tuple[list[float], int, int]:
    rows = await conn.fetch(
        "SELECT incident_id, at FROM timeline WHERE kind = 'step_fired'"
        " AND (detail::jsonb ->> 'step') = '1'")
    fired = [(int(r[0]), int(r[1])) for r in rows if int(r[0]) in dues]
    counts: dict[int, int] = {}
    for n, _ in fired:
        counts[n] = counts.get(n, 0) + 1
    left = await conn.fetchval(
        "SELECT count(*) FROM deadlines WHERE key = $1 AND due <= $2",
        seed.STEP_KEY, max(dues.values()))
    late = [(at - dues[n]) / 1e6 for n, at in fired]
    return late, int(left), sum(1 for c in counts.values() if c > 1)


def _postgres_config(config: Path, path: Path, dsn: str) -> Path:
    text = config.read_text().replace(
        "storage: {synchronous: full}", f"storage: {{postgres: {{dsn: '{dsn}', pool_size: 8}}}}"
    )
    assert "postgres" in text, "bench/run.py's CONFIG no longer has the storage line"
    path.write_text(text)
    return path


def _at(plan: LoadPlan, url: str, connections: int, seed_offset: int = 0) -> LoadPlan:
    return LoadPlan(url=f"{url}/api/v1/alerts", token=plan.token, connections=connections,
                    warmup=plan.warmup, duration=plan.duration,
                    seed=plan.seed * 100 + seed_offset, mix=plan.mix)


async def _spread(plan: LoadPlan, urls: Sequence[str]) -> LoadResult:
    """The connections split among the replicas; each replica's share plays its own groups."""
    shares = [plan.connections // len(urls) + (n < plan.connections % len(urls))
              for n in range(len(urls))]
    results = await asyncio.gather(*(
        run_load(_at(plan, url, share, seed_offset=n + 1))
        for n, (url, share) in enumerate(zip(urls, shares, strict=True))
    ))
    return _merge(list(results), seconds=plan.duration)


def _merge(results: list[LoadResult], seconds: float | None = None) -> LoadResult:
    total = LoadResult(seconds=seconds if seconds is not None
                       else sum(r.seconds for r in results))
    for result in results:
        total.add(result)
    return total


def _rows(ours: LoadResult, theirs: LoadResult, connections: int) -> list[Line]:
    def figures(r: LoadResult) -> str:
        failed = sum(v for code, v in r.statuses.items() if code != 200)
        return (f"{r.rps:,.0f} req/s, p50 {r.percentile(50) * 1e3:.1f} ms,"
                f" p99 {r.percentile(99) * 1e3:.1f} ms ({r.by_kind_p99()}), {failed} not 200")

    failed = sum(v for code, v in ours.statuses.items() if code != 200)
    return [
        (f"ingest, {REPLICAS} replicas on PostgreSQL ({connections} connections spread)",
         figures(ours), f"p99 < {MAX_P99 * 1e3:.0f} ms, every answer 200",
         ours.percentile(99) < MAX_P99 and failed == 0),
        (f"ingest, one ackd on SQLite ({connections} connections, same run)", figures(theirs),
         "", None),
        ("ingest rate, replicas on PostgreSQL / one on SQLite",
         f"{ours.rps / theirs.rps:.2f}" if theirs.rps else "-", "", None),
    ]
