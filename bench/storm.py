"""A storm of new incidents, and resends while its deliveries are pending.

Both legs run ackd with stakeholders: every SEV1 incident (a third of them) also tells the
`exec-status` channel, as in the example config, so a storm leaves thousands of deliveries
in the outbox and in flight.

- storm: 32 connections, every webhook opens a new incident (10 alerts); requests/s, p99.
- backlog: right after a storm, while its deliveries are pending, 32 connections resend their
  groups unchanged; the rate against the same resends on an ackd with no backlog (each round
  alternates the two, so a drift in the machine's speed touches both alike). The pending
  deliveries are counted when the measured window opens and when it closes.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import procs
from load import LoadPlan, LoadResult, run_load

MAX_P99 = 0.050
MIN_BACKLOG_RATIO = 0.80

STAKEHOLDERS = """\
severities:
  - {name: SEV1, urgency: high, stakeholders: [exec-status]}
  - {name: SEV2, urgency: high}
  - {name: SEV3, urgency: low}
  - {name: SEV4, urgency: low}
channels:
  - {name: exec-status, urls: [{url: "json://SINK/exec-status"}]}
"""


@dataclass
class Leg:
    storm: LoadResult
    backlog: LoadResult
    quiet: LoadResult
    pending: tuple[int, int]  # deliveries in the outbox when the backlog window opened, closed
    storm_cpu: float = 0.0  # ackd's CPU over the storm run (1.0 = one core)


def storm_config(base: Path, sink: str) -> Path:
    """The benchmark's config with SEV1 stakeholders (severities replace the defaults)."""
    path = base.with_name("ackd-storm.yaml")
    host = sink.removeprefix("http://")
    path.write_text(base.read_text() + STAKEHOLDERS.replace("SINK", host))
    return path


def pending(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        conn.close()


async def one_round(work: Path, config: Path, token: str, duration: float, connections: int,
                    seed: int, round_: int) -> Leg:
    def plan(url: str, mix: str, seed_: int) -> LoadPlan:
        return LoadPlan(url=f"{url}/api/v1/alerts", token=token, connections=connections,
                        duration=duration, seed=seed_, mix=mix)

    data = work / f"storm-{round_}"
    ackd = procs.ackd(work, config, data)
    await ackd.start_ready()
    try:
        cpu_before, wall_before = ackd.cpu_seconds(), time.perf_counter()
        storm = await run_load(plan(ackd.url, "new", seed))
        storm_cpu = (ackd.cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
        before = pending(data / "ackd.db")
        backlog = await run_load(plan(ackd.url, "resend", seed + 1000))
        after = pending(data / "ackd.db")
    finally:
        ackd.stop()
    quiet_data = work / f"quiet-{round_}"
    quiet_ackd = procs.ackd(work, config, quiet_data)
    await quiet_ackd.start_ready()
    try:
        quiet = await run_load(plan(quiet_ackd.url, "resend", seed + 1000))
    finally:
        quiet_ackd.stop()
    return Leg(storm, backlog, quiet, (before, after), storm_cpu)


async def legs(work: Path, base_config: Path, sink: str, token: str, rounds: int,
               duration: float, connections: int, seed: int) -> list[tuple[str, str, str,
                                                                          bool | None]]:
    config = storm_config(base_config, sink)
    runs = [await one_round(work, config, token, duration, connections, seed + 7 * r, r)
            for r in range(rounds)]
    rows: list[tuple[str, str, str, bool | None]] = []
    storm = _merged([r.storm for r in runs])
    p99 = storm.percentile(99)
    rows.append((
        f"storm: every webhook opens an incident ({storm.requests:,} requests, {rounds} rounds)",
        f"{storm.rps:,.0f} req/s; p50 / p99 {storm.percentile(50) * 1e3:.1f} /"
        f" {p99 * 1e3:.1f} ms (p99 per round {_per_round(runs, 'storm')})",
        f"p99 < {MAX_P99 * 1e3:.0f} ms", p99 < MAX_P99,
    ))
    # CPU per request moves far less than latency when other work shares the machine.
    per_request = [r.storm_cpu / r.storm.rps * 1e6 for r in runs if r.storm.rps]
    rows.append((
        "storm: server CPU per request",
        ", ".join(f"{us:,.0f}" for us in per_request) + " µs (per round)", "", None,
    ))
    backlog, quiet = _merged([r.backlog for r in runs]), _merged([r.quiet for r in runs])
    b99 = backlog.percentile(99)
    rows.append((
        "resends during the storm's backlog: p50 / p99",
        f"{backlog.percentile(50) * 1e3:.1f} / {b99 * 1e3:.1f} ms"
        f" (p99 per round {_per_round(runs, 'backlog')})",
        f"p99 < {MAX_P99 * 1e3:.0f} ms", b99 < MAX_P99,
    ))
    ratios = sorted(r.backlog.rps / r.quiet.rps for r in runs if r.quiet.rps)
    ratio = backlog.rps / quiet.rps if quiet.rps else 0.0
    spread = (f"; per round {ratios[0]:.2f} / {statistics.median(ratios):.2f} /"
              f" {ratios[-1]:.2f}" if ratios else "")
    pend = ", ".join(f"{a:,} -> {b:,}" for a, b in (r.pending for r in runs))
    rows.append((
        "resend rate during a backlog / without one",
        f"{backlog.rps:,.0f} / {quiet.rps:,.0f} req/s = {ratio:.2f}{spread}"
        f" (deliveries pending as the window opened -> closed: {pend})",
        f">= {MIN_BACKLOG_RATIO:.2f}", ratio >= MIN_BACKLOG_RATIO,
    ))
    return rows


def _merged(results: list[LoadResult]) -> LoadResult:
    total = LoadResult(seconds=sum(r.seconds for r in results))
    for r in results:
        total.add(r)
    return total


def _per_round(runs: list[Leg], leg: str) -> str:
    return ", ".join(f"{getattr(r, leg).percentile(99) * 1e3:.0f}" for r in runs)
