from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from receiver.testing import FakeClock
from tests.sinks import HttpSink

# pg_cluster and pg_dsn: a throwaway PostgreSQL cluster (tests/pgcluster.py).
pytest_plugins = ["tests.pgcluster"]


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    """A recording HTTP sink on 127.0.0.1 for json:// and form:// pages."""
    async with HttpSink() as started:
        yield started



# `make test` runs the suite as two pytest processes at once (on two cores: 19 minutes one
# after another, at CI's 20-minute bound). The modules below start real processes (ackd,
# Alertmanager, Prometheus, chromium, PostgreSQL replicas) and assert on real time: a step
# within a second of its due time, a hung replica handed over within its bound, start to ready.
# They are marked `serial` and run in one of the two, one after another as they always did, so
# that no two of them share the machine's cores; the other runs the rest (fake clocks,
# in-process daemons, the command line's subprocesses, hypothesis). A new module of that kind
# belongs here; `pytest` alone still runs everything in one process.
SERIAL = frozenset({
    "test_cadence.py", "test_dispatch_replicas.py", "test_drills.py", "test_e2e_assignment.py",
    "test_e2e_core.py", "test_e2e_episodes.py", "test_e2e_escalation.py", "test_e2e_handoffs.py",
    "test_e2e_heartbeats.py", "test_e2e_maintenance.py", "test_e2e_notify.py",
    "test_e2e_oncall.py", "test_e2e_replicas.py", "test_e2e_replicas_noise.py",
    "test_e2e_severity.py", "test_e2e_stale.py", "test_e2e_storm.py", "test_e2e_web.py",
    "test_faults.py", "test_feeds.py", "test_migrate.py", "test_operations.py",
    "test_prometheus.py", "test_quickstart.py", "test_replicas_hung.py",
    "test_replicas_operations.py", "test_replicas_state.py", "test_sdnotify.py",
    "test_startup.py", "test_store_replicas.py",
})


def pytest_itemcollected(item: pytest.Item) -> None:
    if item.path.name in SERIAL:
        item.add_marker(pytest.mark.serial)
