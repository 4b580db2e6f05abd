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

