"""The webhook path's CPU, in process: `.venv/bin/python bench/inprocess.py [--mix new mixed]`.

The legs of bench/run.py measure latency and rates, which move with whatever else runs on the
machine (on a shared 2-core machine, a storm's p99 has been seen anywhere from 51 to 273 ms in
one evening). This measures what ackd itself spends, which moves far less: a Daemon built from
the benchmark's config runs in this process, and the bodies of bench/load.py's script (new:
every webhook opens an incident, as in the storm leg; mixed: the ingest leg's mix) go through
Incidents.ingest_body one after the other. For each round of webhooks it reads the main
thread's CPU time (the event loop's: time.thread_time), for the whole webhook and for its store
jobs alone, and prints the lowest round and the median. The dispatcher is stopped: deliveries
are bench/storm.py's to measure. HTTP is left out too (aiohttp's share is the same for every
body; bench/run.py's ingest rows give the server's CPU per request over HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

import run as bench
import storm
from load import Script

from receiver.app.daemon import Daemon
from receiver.config.build import load
from receiver.store.sqlite.store import SqliteStore

WARM_UP = 100
ROUND = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", nargs="+", default=["new", "mixed"], choices=["new", "mixed"])
    parser.add_argument("--rounds", type=int, default=12, help=f"rounds of {ROUND} webhooks")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for mix in args.mix:
        print(asyncio.run(measure(mix, args.rounds, args.seed)))


async def measure(mix: str, rounds: int, seed: int) -> str:
    with tempfile.TemporaryDirectory(prefix="ackd-inprocess-") as tmp:
        work = Path(tmp)
        config_path = work / "ackd.yaml"
        # Deliveries go nowhere: the dispatcher is stopped before the first webhook.
        config_path.write_text(bench.CONFIG.format(
            token=bench.WEBHOOK_TOKEN, synchronous="full", sink="127.0.0.1:9"))
        if mix == "new":
            config_path = storm.storm_config(config_path, "127.0.0.1:9")
        config = replace(load(config_path), data_dir=work / "data", listen_host="127.0.0.1",
                         listen_port=0)
        bodies = _bodies(mix, WARM_UP + rounds * ROUND, seed)
        daemon = Daemon(config)
        await daemon.start()
        try:
            await daemon.dispatcher.stop()
            return await _rounds(daemon, mix, bodies, rounds)
        finally:
            await daemon.stop()


def _bodies(mix: str, count: int, seed: int) -> list[bytes]:
    """`count` bodies of bench/load.py's script: one connection's, as a storm has no repeats."""
    script = Script(0, seed, datetime.now(UTC), mix)
    return [script.next()[1] for _ in range(count)]


async def _rounds(daemon: Daemon, mix: str, bodies: list[bytes], rounds: int) -> str:
    jobs = _JobClock()
    with jobs.installed():
        for body in bodies[:WARM_UP]:
            await daemon.incidents.ingest_body(body)
        whole: list[float] = []
        store: list[float] = []
        for number in range(rounds):
            jobs.spent = 0.0
            began = time.thread_time()
            for body in bodies[WARM_UP + number * ROUND:WARM_UP + (number + 1) * ROUND]:
                await daemon.incidents.ingest_body(body)
            whole.append((time.thread_time() - began) / ROUND * 1e6)
            store.append(jobs.spent / ROUND * 1e6)
    return (f"{mix}: event loop CPU per webhook {min(whole):,.0f} µs (median"
            f" {statistics.median(whole):,.0f}), of it in store jobs {min(store):,.0f} µs"
            f" (median {statistics.median(store):,.0f}); {rounds} rounds of {ROUND}")


class _JobClock:
    """Adds up the main thread's CPU time inside the writer's jobs (a job runs on the loop
    from its start to its end: nothing in it awaits anything that suspends)."""

    def __init__(self) -> None:
        self.spent = 0.0

    def installed(self) -> Any:
        original = SqliteStore._run_job

        async def timed(conn: Any, tx: Any, job: Any) -> Any:
            began = time.thread_time()
            try:
                return await original(conn, tx, job)
            finally:
                self.spent += time.thread_time() - began

        return patch.object(SqliteStore, "_run_job", staticmethod(timed))


if __name__ == "__main__":
    sys.exit(main())
