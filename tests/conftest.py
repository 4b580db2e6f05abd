from __future__ import annotations

import pytest

from receiver.clock import FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
