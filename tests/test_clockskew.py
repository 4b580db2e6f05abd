"""The clock offset against the database, from (sent, server, received) samples: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.core.clockskew import Change, Offset, Sample, SkewWatch, estimate

T0 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


def sample(sent: float, server: float, received: float) -> Sample:
    """Seconds after T0: this replica's clock as the query left and came back, and the
    database's clock while it ran."""
    return Sample(T0 + timedelta(seconds=sent), T0 + timedelta(seconds=server),
                  T0 + timedelta(seconds=received))


@pytest.mark.parametrize(("samples", "offset", "uncertainty"), [
    # a symmetric round trip of 2 ms, the clocks equal
    ([(0.0, 0.001, 0.002)], 0.0, 0.001),
    # this replica 5 s fast: the database reads 5 s less at the midpoint
    ([(10.0, 5.001, 10.002)], 5.0, 0.001),
    # 40 s slow
    ([(0.0, 40.0005, 0.001)], -40.0, 0.0005),
    # the database answered late in the round trip: the estimate is off by at most half of it
    ([(0.0, 0.0099, 0.010)], -0.0049, 0.005),
    # the shortest round trip wins, whatever the order: 3.0 s with 1 ms beats 2.5 s with 1 s
    ([(0.0, -2.0, 1.0), (5.0, 2.0005, 5.001), (9.0, 6.3, 9.6)], 3.0, 0.0005),
])
def test_the_shortest_round_trip_gives_the_offset(
    samples: list[tuple[float, float, float]], offset: float, uncertainty: float
) -> None:
    found = estimate(sample(*s) for s in samples)
    assert found is not None
    assert found.seconds == pytest.approx(offset, abs=1e-9)
    assert found.uncertainty == pytest.approx(uncertainty, abs=1e-9)
    best = min((sample(*s) for s in samples), key=lambda s: s.round_trip)
    assert found.at == best.received


def test_a_round_trip_that_went_backwards_is_left_out() -> None:
    """The clock was stepped back during the query: the sample says nothing, even though
    its 'round trip' is the shortest."""
    found = estimate([sample(10.0, 0.0, 9.0), sample(20.0, 20.01, 20.02)])
    assert found == Offset(seconds=0.0, uncertainty=0.01, at=T0 + timedelta(seconds=20.02))
    assert estimate([sample(10.0, 0.0, 9.0)]) is None
    assert estimate([]) is None


def offset(seconds: float) -> Offset:
    return Offset(seconds=seconds, uncertainty=0.001, at=T0)


def test_the_watch_tells_the_crossing_and_the_recovery_once_each() -> None:
    watch = SkewWatch(threshold=1.0, recovered=0.5)
    seen = [watch.observe(offset(s)) for s in
            (0.0, 0.9, 1.0, 1.2, 5.0, -3.0, 0.8, 0.6, 0.4, 0.2, 0.9, -1.5, -1.4, 0.0)]
    assert seen == [None, None, None, Change.SKEWED, None, None, None, None,
                    Change.RECOVERED, None, None, Change.SKEWED, None, Change.RECOVERED]


def test_the_watch_does_not_flap_at_the_threshold() -> None:
    """An offset hovering about the threshold logs once, not a line a second."""
    watch = SkewWatch()
    seen = [watch.observe(offset(s)) for s in (1.01, 0.99, 1.01, 0.99, 1.02, 0.98)]
    assert seen == [Change.SKEWED, None, None, None, None, None]
    assert watch.skewed


def test_a_loose_estimate_past_the_threshold_is_not_a_clock_off() -> None:
    """A round trip of 3 s (the loop blocked as the answer came) puts the midpoint 1.5 s
    after the database's reading: 1.5 s ± 1.5 s says nothing of the clock."""
    watch = SkewWatch()
    assert watch.observe(Offset(seconds=1.5, uncertainty=1.5, at=T0)) is None
    assert watch.observe(Offset(seconds=1.5, uncertainty=0.4, at=T0)) is Change.SKEWED
