"""What a fired escalation step costs on PostgreSQL, in process: `bench/pgtimers.py`.

bench/run.py's replica-timers leg measures lateness over three replica processes, which moves
with whatever else runs on the shared machine. This counts what the firing asks of PostgreSQL
and what both sides spend: a throwaway durable cluster (as bench/pgcost.py's: fsync on, group
commit, pg_stat_statements), `--armed` open incidents seeded as the leg seeds them (bench/
seed.py: step 0 fired, the deadline of step 1 armed), `--due` of them coming due at `--rate`
a second, fired by `--replicas` Daemons in this process (one loop: their lateness is not the
leg's, their statements are), each dispatcher sending to a bare sink (another process).

Per fired step, over the firing (from the first due time until every deadline fired, and
the pages sent): statements as the client sent them (counted in asyncpg, an executemany as one
per row) and as the server ran them (pg_stat_statements), PostgreSQL's CPU (/proc) and its
statements' execution time, the loop thread's CPU; and each deadline fired once (counted from
the step events). Statement counts repeat from run to run; CPU moves with the machine's load.
`--top N` lists the statements sent.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pgcost
import replicas
import seed
from load import percentile

from receiver.app.daemon import Daemon
from receiver.config.build import load
from receiver.store.postgres.migrate import migrate

START_IN = 4.0  # seconds from the daemons' start to the first due time
# This script's own statements (its polls of what fired, its reads of the server's counts).
MINE = ("SELECT count(*) FROM deadlines", "SELECT coalesce(sum(calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--armed", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=4_000)
    parser.add_argument("--rate", type=float, default=2_000.0, help="due a second")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--top", type=int, default=0, help="list the N commonest statements")
    parser.add_argument("--profile", type=Path, help="cProfile the firing into this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(measure(args))


async def measure(args: argparse.Namespace) -> None:
    async with pgcost.counted_cluster("ackd_pgtimers") as (cluster, dsn, work, config_path):
        dues = await _seed(work, config_path, dsn, args)
        daemons = [Daemon(replace(load(config_path), data_dir=work / f"data{n}",
                                  listen_host="127.0.0.1", listen_port=0))
                   for n in range(args.replicas)]
        try:
            for daemon in daemons:
                await daemon.start()
            await _firing(dsn, cluster.data, dues, args)
        finally:
            for daemon in daemons:
                await daemon.stop()


async def _seed(work: Path, config_path: Path, dsn: str,
                args: argparse.Namespace) -> dict[int, int]:
    """The leg's seed (bench/replicas.py), `--due` of its deadlines moved to come due at
    `--rate` a second from START_IN seconds on; the due times by incident."""
    lite = work / "seed" / "ackd.db"
    lite.parent.mkdir(mode=0o700)
    now = datetime.now(UTC)
    await seed.seed(lite, load(config_path), args.armed, now - timedelta(minutes=5),
                    now + timedelta(hours=1))
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await replicas._copy(lite, conn)
        await conn.execute("VACUUM ANALYZE")
        dues = seed.spread(1, min(args.due, args.armed),
                           datetime.now(UTC) + timedelta(seconds=START_IN), args.rate)
        await conn.executemany(
            "UPDATE deadlines SET due = $1 WHERE incident_id = $2 AND key = $3",
            [(at, n, seed.STEP_KEY) for n, at in dues.items()])
    finally:
        await conn.close()
    return dues


async def _firing(dsn: str, data: Path, dues: dict[int, int], args: argparse.Namespace) -> None:
    first = min(dues.values()) / 1e6
    await asyncio.sleep(max(0.0, first - time.time() - 0.5))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
        server = await pgcost._server(dsn)
        before = Counter(pgcost.SENT)
        pg, loop_ = replicas.cluster_cpu(data), time.thread_time()
        began = time.perf_counter()
        profile = cProfile.Profile(time.thread_time) if args.profile else None
        if profile is not None:
            profile.enable()
        await replicas._wait_fired(conn, dues, len(dues) / args.rate + 120)
        await asyncio.sleep(0.5)  # the last pages sent
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        wall = time.perf_counter() - began
        pg, loop_ = replicas.cluster_cpu(data) - pg, time.thread_time() - loop_
        after = await pgcost._server(dsn)
        sent = Counter({text: n for text, n in (pgcost.SENT - before).items()
                        if not text.startswith(MINE)})
        late, left, twice = await replicas._lateness(conn, dues)
    finally:
        await conn.close()
    fired = len(late)
    steps = max(fired, 1)
    print(f"{args.armed:,} armed, {len(dues):,} due at {args.rate:,.0f}/s, {args.replicas}"
          f" replica(s) in process: {fired:,} fired, {left:,} not fired, {twice:,} twice;"
          f" {wall:.1f} s")
    print(f"lateness p50 / p99 / max: {percentile(late, 50) * 1e3:.0f} /"
          f" {percentile(late, 99) * 1e3:.0f} / {max(late, default=0) * 1e3:.0f} ms")
    print("per fired step (its page's delivery included):")
    print(f"  client statements  {sum(sent.values()) / steps:8.2f}")
    print(f"  server statements  {(after[0] - server[0] - 1) / steps:8.2f}")
    print(f"  PostgreSQL CPU µs  {pg / steps * 1e6:8.0f}")
    print(f"  its exec µs        {(after[1] - server[1]) * 1e3 / steps:8.0f}")
    print(f"  loop CPU µs        {loop_ / steps * 1e6:8.0f}")
    if args.top:
        print("statements the client sent, per fired step:")
        for text, count in sent.most_common(args.top):
            print(f"  {count / steps:6.3f}  {text}")
        print("statements the server ran, by execution time: calls and µs per fired step")
        for calls, exec_ms, query in await _server_top(dsn, args.top):
            print(f"  {calls / steps:6.3f} {exec_ms * 1e3 / steps:7.1f}  {query[:90]}")


async def _server_top(dsn: str, top: int) -> list[tuple[float, float, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT calls, total_exec_time + total_plan_time, regexp_replace(query, '\\s+', ' ',"
            " 'g') FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'"
            " ORDER BY 2 DESC LIMIT $1", top)
        return [(float(r[0]), float(r[1]), str(r[2])) for r in rows]
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
