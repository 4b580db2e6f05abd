"""Each PostgreSQL replica measures its clock against the database's on its listener's beat
(store.py, core/clockskew.py): a replica whose clock runs 5 s fast says so, as an offset
within its uncertainty of 5 s and one WARNING, and one more when its clock is back."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from receiver.store.postgres import store as store_module
from receiver.store.postgres.store import PostgresStore
from receiver.telemetry.metrics import Metrics
from tests.harness import wait_until

BEAT = 0.05  # seconds between beats here (1 s in the daemon): ten samples in half a second


def told(message: str, offset: float) -> bool:
    """The WARNING names an offset within its uncertainty (and the millisecond it is
    printed to) of `offset`: the first, at start, may be of one sample only."""
    found = re.match(r"this replica's clock is ([-+][0-9.]+) s \(± ([0-9.]+) s\) off", message)
    assert found, message
    return abs(float(found[1]) - offset) <= float(found[2]) + 0.001


async def until(condition: Callable[[], bool], what: str) -> None:
    async def check() -> bool:
        return condition()

    await wait_until(check, 10, what)


async def test_a_replica_measures_its_clock_against_the_databases(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(store_module, "BEAT", BEAT)
    caplog.set_level(logging.INFO, logger=store_module.__name__)
    skew = [timedelta(seconds=5)]
    fast = PostgresStore(pg_dsn, pool_size=2, wall=lambda: datetime.now(UTC) + skew[0])
    right = PostgresStore(pg_dsn, pool_size=2)  # the system's clock, as the daemon passes
    assert fast.clock_offset is None
    await fast.open()
    await right.open()
    try:
        await until(lambda: fast.clock_offset is not None and right.clock_offset is not None,
                    "a first measurement")
        await asyncio.sleep(BEAT * 12)  # more beats: the warning is not repeated
        offset, beside = fast.clock_offset, right.clock_offset
        assert offset is not None
        assert beside is not None
        # The database runs on this machine's clock: the true offsets are 5 s and 0, and each
        # estimate lies within its uncertainty of it (and the clock's microseconds).
        assert abs(offset.seconds - 5.0) <= offset.uncertainty + 1e-5
        assert abs(beside.seconds) <= beside.uncertainty + 1e-5
        assert offset.uncertainty < 0.05  # half a round trip on loopback
        assert exposed(offset_of(fast)) == {
            "ackd_clock_offset_seconds": offset.seconds,
            "ackd_clock_offset_uncertainty_seconds": offset.uncertainty}
        warned = [r for r in caplog.records if r.levelno == logging.WARNING
                  and "clock" in r.getMessage()]
        assert len(warned) == 1, [r.getMessage() for r in warned]
        assert told(warned[0].getMessage(), 5.0)
        assert "ahead, it fires escalation steps that early for every replica" in (
            warned[0].getMessage())

        skew[0] = timedelta(0)  # NTP set it right: within SAMPLES beats, the estimate follows
        await until(lambda: fast.clock_offset is not None
                    and abs(fast.clock_offset.seconds) < 0.1, "the clock back")
        await asyncio.sleep(BEAT * 12)
        back = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "clock" in r.getMessage()][1:]
        assert len(back) == 1, back
        assert back[0].startswith("this replica's clock is back within 0.500 s of PostgreSQL's")
    finally:
        await fast.close()
        await right.close()


async def test_a_replica_behind_says_so(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(store_module, "BEAT", BEAT)
    caplog.set_level(logging.WARNING, logger=store_module.__name__)
    slow = PostgresStore(pg_dsn, pool_size=2,
                         wall=lambda: datetime.now(UTC) - timedelta(seconds=40))
    await slow.open()
    try:
        await until(lambda: slow.clock_offset is not None, "a measurement")
        assert slow.clock_offset is not None
        assert abs(slow.clock_offset.seconds + 40) <= slow.clock_offset.uncertainty + 1e-5
        warned = [r.getMessage() for r in caplog.records if "clock" in r.getMessage()]
        assert warned
        assert told(warned[0], -40.0)
        assert "behind, the steps it should fire first go late, from the others" in warned[0]
    finally:
        await slow.close()


def offset_of(store: PostgresStore) -> Metrics:
    """The registry as /metrics fills it from the store at a scrape (web/health.py)."""
    metrics = Metrics()
    metrics.clock_offset.offset = store.clock_offset
    return metrics


def exposed(metrics: Metrics) -> dict[str, float]:
    """The clock samples /metrics shows: one each, no label (Prometheus adds `instance`)."""
    text = generate_latest(metrics.registry).decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples
               if s.name.startswith("ackd_clock_")]
    assert all(not s.labels for s in samples), samples
    return {s.name: s.value for s in samples}


def test_no_clock_sample_before_a_measurement_nor_on_sqlite() -> None:
    """Nothing measured (SQLite never measures: one process, no other clock) is no sample,
    not a 0 that would claim the clock was checked."""
    assert exposed(Metrics()) == {}
