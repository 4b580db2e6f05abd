"""What a webhook costs on PostgreSQL, in process: `.venv/bin/python bench/pgcost.py`.

bench/run.py's replicas leg measures rates and latencies over HTTP, which move with whatever
else runs on the shared machine. This counts what one replica asks of PostgreSQL and what
both spend: a throwaway durable cluster (tests/pgcluster.py, fsync on, group commit as
bench/replicas.py sets it, pg_stat_statements preloaded) holding `--history` resolved
incidents and their statistics (a database in use has both: an empty one, as the replicas
leg starts from, has the planner re-plan the memo's version read at every call and scan
tables that grew since its plans were made), a Daemon on it in this process with its
dispatcher sending to a bare sink (another process), and bench/load.py's ingest mix from
`--connections` scripts (a replica's share of the leg's 32: 11), each posting its webhooks
one after another through Incidents.ingest_body.

Per webhook, over the measured rounds: statements as the client sent them (counted in
asyncpg: an executemany is one per row) and as the server ran them (pg_stat_statements:
"BEGIN; SAVEPOINT job" is two), PostgreSQL's CPU (/proc, its processes) and its statements'
execution and planning time, and the CPU of the loop thread (time.thread_time) and of the
whole process (on uvloop, as `ackd serve` runs). Statement counts repeat from run to run
within a few hundredths; CPU moves with the machine's load (compare trees in alternating
runs). `--top N` lists the statements; `--plans N` those PostgreSQL planned most, with their
calls (plans near calls: the statement's plan is not reused); `--exec N` those it spent most
execution time on; `--tables` each table's rows inserted, updated (HOT or not) and deleted;
`--perf` samples PostgreSQL's processes with `perf record` over the measured rounds and says
where their CPU went (planning, execution, commit, the foreign keys' triggers...: the first
of PERF's kinds whose functions are on a sample's stack). The Daemon runs in this process:
it is the `receiver` Python imports, which an editable install may point at another
tree than this script's (set PYTHONPATH to the tree measured).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import procs
import replicas
import run as bench
import uvloop
from load import Script

from receiver.app.daemon import Daemon
from receiver.config.build import load

SENT: Counter[str] = Counter()  # statements the client sent, by their first 60 characters
# What a sample of PostgreSQL's CPU was spent on: the first kind (in this order) one of whose
# functions is on its stack (perf's call graph, with the symbols postgres exports).
PERF: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (kind, frozenset(names.split())) for kind, names in (
    ("autovacuum", "AutoVacWorkerMain do_autovacuum autovacuum_do_vac_analyze"),
    ("background (WAL writer, checkpointer...)",
     "WalWriterMain BackgroundWriterMain CheckpointerMain AutoVacLauncherMain"),
    # The schema has no triggers but the foreign keys': every AFTER trigger run is theirs.
    ("foreign keys' checks (RI triggers)", "AfterTriggerEndQuery SPI_execute_snapshot"),
    ("commit: WAL flush", "XLogFlush"),
    ("commit: the rest", "CommitTransactionCommand CommitTransaction"),
    ("transaction start", "StartTransactionCommand start_xact_command"),
    ("planning", "pg_plan_queries pg_plan_query standard_planner BuildCachedPlan"),
    ("parse analysis (a prepare or a plan invalidated)",
     "RevalidateCachedQuery pg_analyze_and_rewrite_varparams pg_analyze_and_rewrite_fixedparams"
     " pg_parse_query raw_parser"),
    ("executor start", "standard_ExecutorStart PortalStart"),
    ("executor end", "standard_ExecutorEnd PortalDrop"),
    ("execution", "standard_ExecutorRun standard_ExecutorFinish PortalRun"),
    ("bind: parameters", "exec_bind_message"),
    ("socket reads and waits", "pq_getbyte pq_getmessage secure_read pq_recvbuf WaitEventSetWait"),
    ("socket writes", "pq_flush internal_flush secure_write socket_flush"),
))
FIGURES = ("client statements", "server statements", "PostgreSQL CPU µs", "its exec µs",
           "its planning µs", "loop CPU µs", "process CPU µs", "webhooks/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=11)
    parser.add_argument("--warmup", type=int, default=220)
    parser.add_argument("--round", type=int, default=660, help="webhooks a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--history", type=int, default=20_000,
                        help="resolved incidents in the database first")
    parser.add_argument("--top", type=int, default=0, help="list the N commonest statements")
    parser.add_argument("--plans", type=int, default=0,
                        help="list the N statements PostgreSQL planned most, with their calls")
    parser.add_argument("--exec", type=int, default=0,
                        help="list the N statements PostgreSQL spent most execution time on")
    parser.add_argument("--tables", action="store_true",
                        help="rows each table gained, changed (HOT or not) and lost")
    parser.add_argument("--perf", action="store_true",
                        help="say where PostgreSQL's CPU went (perf record, as root)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # On uvloop, as `ackd serve` runs (cli/local.py): asyncio's own loop and transports, in
    # Python, cost a round trip about half as much again on the loop.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(measure(args))


def count_statements() -> None:
    """Count every statement asyncpg sends (its Connection's three ways of sending one)."""
    conn: Any = asyncpg.connection.Connection
    execute, run_one, run_many = conn.execute, conn._execute, conn._executemany

    async def execute_counted(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if not args:  # the simple query protocol; with arguments it goes through _execute
            SENT[query[:60]] += 1
        return await execute(self, query, *args, **kwargs)

    async def run_counted(self: Any, query: str, args: Any, *rest: Any, **kwargs: Any) -> Any:
        SENT[query[:60]] += 1
        return await run_one(self, query, args, *rest, **kwargs)

    async def many_counted(self: Any, query: str, args: Any, *rest: Any, **kwargs: Any) -> Any:
        rows = list(args)
        SENT[query[:60]] += len(rows)
        return await run_many(self, query, rows, *rest, **kwargs)

    conn.execute, conn._execute, conn._executemany = (
        execute_counted, run_counted, many_counted)


@contextlib.asynccontextmanager
async def counted_cluster(name: str) -> AsyncIterator[tuple[Any, str, Path, Path]]:
    """A throwaway PostgreSQL cluster with pg_stat_statements, its database `name`, a local
    sink, and the ingest leg's config with its store there; the statements this process sends
    are counted (SENT). Yields (cluster, dsn, work directory, config path)."""
    count_statements()
    sys.path.append(str(procs.ROOT))  # the tests' cluster helper, as bench/replicas.py does
    from tests.pgcluster import start_cluster

    cluster = start_cluster(durable=True)
    sink = None
    try:
        cluster._options += (" -c shared_preload_libraries=pg_stat_statements"
                             " -c pg_stat_statements.track_planning=on")
        cluster.halt()
        cluster.resume()
        dsn = await _database(cluster.dsn(), name, cluster.dsn(name))
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
            work = Path(tmp)
            sink = procs.bare(work, "sink")
            await sink.start_ready()
            config_path = work / "ackd.yaml"
            text = bench.CONFIG.format(token=bench.WEBHOOK_TOKEN, synchronous="full",
                                       sink=sink.url.removeprefix("http://"))
            text = text.replace("storage: {synchronous: full}",
                                f"storage: {{postgres: {{dsn: '{dsn}', pool_size: 8}}}}")
            config_path.write_text(text)
            yield cluster, dsn, work, config_path
    finally:
        if sink is not None:
            sink.stop()
        cluster.stop()


async def measure(args: argparse.Namespace) -> None:
    async with counted_cluster("ackd_pgcost") as (cluster, dsn, work, config_path):
        config = replace(load(config_path), data_dir=work / "data",
                         listen_host="127.0.0.1", listen_port=0)
        daemon = Daemon(config)
        await daemon.start()
        tables: dict[str, tuple[int, ...]] | None = None
        try:
            if args.history:
                await replicas.history(dsn, args.history)
            if args.tables:
                tables = await _tables(dsn)
            measured = await _rounds(daemon, dsn, cluster.data, args)
            if args.plans:
                await _plans(dsn, args.plans, measured, "total_plan_time")
            if args.exec:
                await _plans(dsn, args.exec, measured, "total_exec_time")
        finally:
            await daemon.stop()
        if tables is not None:
            await asyncio.sleep(0.5)  # the daemon's sessions ended: their statistics written
            warmup = args.warmup // args.connections * args.connections
            _table_report(tables, await _tables(dsn), warmup + measured)


async def _database(admin_dsn: str, name: str, dsn: str) -> str:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute("ALTER SYSTEM SET commit_delay = 500")  # as bench/replicas.py
        await admin.execute("ALTER SYSTEM SET commit_siblings = 2")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION pg_stat_statements")
    finally:
        await conn.close()
    return dsn


async def _server(dsn: str) -> tuple[float, float, float]:
    """pg_stat_statements' calls, execution and planning milliseconds, all statements."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0),"
            " coalesce(sum(total_plan_time), 0) FROM pg_stat_statements"
            " WHERE query NOT LIKE '%pg_stat_statements%'")
        return float(row[0]), float(row[1]), float(row[2])
    finally:
        await conn.close()


async def _rounds(daemon: Daemon, dsn: str, data: Path, args: argparse.Namespace) -> int:
    """The measured rounds, their figures printed: the number of webhooks measured."""
    scripts = [Script(c, args.seed, datetime.now(UTC), "mixed")
               for c in range(args.connections)]
    failed: Counter[str] = Counter()

    async def play(bodies: list[bytes]) -> None:
        for body in bodies:
            try:
                await daemon.incidents.ingest_body(body)
            except Exception as exc:  # counted and shown: a failure spoils the figures
                failed[type(exc).__name__] += 1

    def bodies(count: int) -> list[list[bytes]]:
        """Each connection's next bodies, made before the round: the load generator's CPU
        is not ackd's."""
        each = count // len(scripts)
        return [[script.next()[1] for _ in range(each)] for script in scripts]

    async def round_(made: list[list[bytes]]) -> int:
        await asyncio.gather(*(play(b) for b in made))
        return sum(len(b) for b in made)

    await round_(bodies(args.warmup))
    await asyncio.sleep(0.5)  # the warm-up's pages sent
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()
    rows: list[tuple[float, ...]] = []
    sent: Counter[str] = Counter()
    measured = 0
    sampling = _perf_start(data) if args.perf else None
    for _ in range(args.rounds):
        made = bodies(args.round)
        server, before = await _server(dsn), Counter(SENT)
        pg, loop_, process = replicas.cluster_cpu(data), time.thread_time(), time.process_time()
        began = time.perf_counter()
        webhooks = await round_(made)
        await asyncio.sleep(0.3)  # the dispatcher's passes and sends of the round
        wall = time.perf_counter() - began
        pg, loop_, process = (replicas.cluster_cpu(data) - pg, time.thread_time() - loop_,
                              time.process_time() - process)
        after = await _server(dsn)
        delta = SENT - before
        sent += delta
        measured += webhooks
        rows.append((sum(delta.values()) / webhooks,
                     (after[0] - server[0] - 1) / webhooks,  # less the read of them
                     pg / webhooks * 1e6, (after[1] - server[1]) * 1e3 / webhooks,
                     (after[2] - server[2]) * 1e3 / webhooks,
                     loop_ / webhooks * 1e6, process / webhooks * 1e6, webhooks / wall))
    kinds = _perf_stop(*sampling) if sampling is not None else None
    _summary(args, rows, dict(failed), sent, measured, kinds)
    return measured


def _summary(args: argparse.Namespace, rows: list[tuple[float, ...]], failed: dict[str, int],
             sent: Counter[str], measured: int, kinds: Counter[str] | None) -> None:
    print(f"{args.rounds} rounds of {args.round} webhooks from {args.connections} connections,"
          f" {args.history:,} resolved incidents before; failures: {failed or 'none'}")
    print("per webhook: all rounds (each round's lowest / median / highest)")
    for n, name in enumerate(FIGURES):
        values = [r[n] for r in rows]
        print(f"  {name:18s} {statistics.fmean(values):9.2f}  ({min(values):.2f} /"
              f" {statistics.median(values):.2f} / {max(values):.2f})")
    if kinds is not None:
        _perf_report(kinds)
    if args.top:
        print("statements the client sent, per webhook:")
        for text, count in sent.most_common(args.top):
            print(f"  {count / measured:6.3f}  {text}")


def _perf_start(data: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """`perf record` of the cluster's processes now (its postmaster and every child: the
    daemon's connections are open, and children forked later, autovacuum's workers, are
    followed), sampling their stacks."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster, *(int(p) for p in subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split())]
    out = Path(tempfile.mkdtemp(prefix="pgcost-perf-")) / "perf.data"
    process = subprocess.Popen(
        ["perf", "record", "-q", "-F", "999", "-g", "-o", str(out),
         "-p", ",".join(map(str, pids))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached
    return process, out


def _perf_stop(process: subprocess.Popen[bytes], out: Path) -> Counter[str]:
    """Stop the sampling; PostgreSQL's samples by kind."""
    process.send_signal(signal.SIGINT)
    process.wait()
    script = subprocess.run(["perf", "script", "-i", str(out), "-F", "ip,sym"],
                            capture_output=True, text=True, check=True).stdout
    kinds: Counter[str] = Counter()
    for stack in script.split("\n\n"):
        frames = {line.split()[1].split("+")[0] for line in stack.strip().splitlines()
                  if len(line.split()) > 1}
        if not frames:
            continue
        kinds[next((kind for kind, names in PERF if frames & names), "other")] += 1
    os.unlink(out)
    os.rmdir(out.parent)
    return kinds


def _perf_report(kinds: Counter[str]) -> None:
    total = sum(kinds.values())
    print(f"PostgreSQL's CPU by kind (perf, {total:,} samples over the measured rounds):")
    for kind, count in kinds.most_common():
        print(f"  {count / total * 100:5.1f}%  {kind}")


async def _tables(dsn: str) -> dict[str, tuple[int, ...]]:
    """Each table's rows inserted, updated, updated HOT and deleted so far (what sessions
    still open have not written yet excepted: PostgreSQL writes a session's statistics at
    most every second, and at its end)."""
    conn = await asyncpg.connect(dsn)
    try:
        return {str(r[0]): tuple(int(v) for v in r[1:]) for r in await conn.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del"
            " FROM pg_stat_user_tables")}
    finally:
        await conn.close()


def _table_report(before: dict[str, tuple[int, ...]], after: dict[str, tuple[int, ...]],
                  webhooks: int) -> None:
    """Rows per webhook posted (the warm-up's included: its sessions' statistics are
    written with the measured rounds'), by table: an update that is not HOT (heap-only)
    writes a new entry in every index of its table."""
    print(f"rows per webhook ({webhooks:,} webhooks, warm-up included): inserted, updated,"
          " of which HOT, deleted")
    for name, now in sorted(after.items()):
        ins, upd, hot, dele = (v - b for v, b in zip(now, before.get(name, (0,) * 4),
                                                       strict=True))
        if ins or upd or dele:
            print(f"  {name:20s} {ins / webhooks:6.3f} {upd / webhooks:6.3f}"
                  f" {hot / webhooks:6.3f} {dele / webhooks:6.3f}")


async def _plans(dsn: str, count: int, webhooks: int, order: str) -> None:
    """The statements PostgreSQL planned most (or, by `order`, spent most execution time on)
    over the measured rounds: a prepared statement planned at (nearly) every call is not
    reusing a plan (a custom plan each time, or a text asyncpg prepares again and again)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT calls, plans, total_plan_time, total_exec_time, query"
            " FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'"
            f" ORDER BY {order} DESC LIMIT $1", count)
    finally:
        await conn.close()
    what = "planned most" if order == "total_plan_time" else "executed longest"
    print(f"statements {what}: calls, plans, planning and execution µs per webhook")
    for calls, plans, plan_ms, exec_ms, query in rows:
        text = " ".join(query.split())
        print(f"  {calls:7d} {plans:7d} {plan_ms * 1e3 / webhooks:7.1f}"
              f" {exec_ms * 1e3 / webhooks:7.1f}  {text[:70]} ... {text[-60:]}")


if __name__ == "__main__":
    sys.exit(main())
