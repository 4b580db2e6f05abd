"""Noise control as tables: the gate's decision for one URL's history at one instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.noise import ChannelHistory, Decision, NoiseGate, Verdict, is_page

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GATE = NoiseGate(
    bundle_window=timedelta(seconds=30), rate_limit=3, rate_window=timedelta(minutes=10)
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sent(*seconds: float) -> ChannelHistory:
    """A history whose sends happened at these offsets from T0 (the last is the last send)."""
    times = tuple(at(s) for s in seconds)
    return ChannelHistory(sent=times, last_send=times[-1] if times else None)


@pytest.mark.parametrize(
    ("history", "now", "expected"),
    [
        pytest.param(ChannelHistory(), 0, Decision(Verdict.SEND), id="first-message-goes"),
        pytest.param(sent(0), 10, Decision(Verdict.DEFER, at(30)), id="inside-bundle-window"),
        pytest.param(sent(0), 29.999, Decision(Verdict.DEFER, at(30)), id="just-before-close"),
        pytest.param(sent(0), 30, Decision(Verdict.SEND), id="window-closed-exactly"),
        pytest.param(sent(0), 45, Decision(Verdict.SEND), id="after-window"),
        pytest.param(sent(0, 40), 50, Decision(Verdict.DEFER, at(70)), id="window-from-last"),
        pytest.param(sent(0, 40, 80), 120, Decision(Verdict.HOLD), id="rate-limit-reached"),
        pytest.param(sent(0, 40, 80), 85, Decision(Verdict.HOLD), id="hold-beats-defer"),
        pytest.param(sent(0, 40, 80), 600, Decision(Verdict.SEND), id="oldest-slid-out"),
        pytest.param(sent(0, 40, 80), 599, Decision(Verdict.HOLD), id="oldest-still-in"),
        pytest.param(
            ChannelHistory(sent=(at(0), at(1), at(2), at(3)), last_send=at(3)), 700,
            Decision(Verdict.SEND), id="all-slid-out",
        ),
    ],
)
def test_decide(history: ChannelHistory, now: float, expected: Decision) -> None:
    assert GATE.decide(history, at(now)) == expected


@pytest.mark.parametrize(
    ("window", "history", "now", "expected"),
    [
        pytest.param(timedelta(0), sent(0), 0, Verdict.SEND, id="no-bundling"),
        pytest.param(timedelta(minutes=5), sent(0), 299, Verdict.DEFER, id="long-window"),
    ],
)
def test_bundle_window_setting(
    window: timedelta, history: ChannelHistory, now: float, expected: Verdict
) -> None:
    gate = NoiseGate(window, 3, timedelta(minutes=10))
    assert gate.decide(history, at(now)).verdict is expected


@pytest.mark.parametrize(
    ("history", "now", "due_at"),
    [
        pytest.param(ChannelHistory(), 0, None, id="nothing-held"),
        pytest.param(sent(0, 40, 80), 100, None, id="held-count-zero"),
        pytest.param(
            ChannelHistory(sent=(at(0), at(40), at(80)), last_send=at(80), held=2,
                           held_incidents=(7, 8), held_since=at(90)),
            100, at(600), id="full-window-frees-at-oldest-plus-window",
        ),
        pytest.param(
            ChannelHistory(sent=(at(0), at(40), at(80), at(85)), last_send=at(85), held=1,
                           held_incidents=(7,), held_since=at(90)),
            100, at(640), id="over-full-window-waits-for-two-to-leave",
        ),
        pytest.param(
            ChannelHistory(sent=(at(40), at(80)), last_send=at(80), held=1,
                           held_incidents=(7,), held_since=at(90)),
            700, at(700), id="room-now",
        ),
    ],
)
def test_summary_at(history: ChannelHistory, now: float, due_at: datetime | None) -> None:
    assert GATE.summary_at(history, at(now)) == due_at
    assert GATE.summary_due(history, at(now)) is (due_at is not None and due_at <= at(now))


def test_summary_is_due_once_the_window_that_held_frees_a_slot() -> None:
    history = sent(0, 40, 80)
    history = GATE.record_held(history, at(100), (7,), 1)
    history = GATE.record_held(history, at(200), (8, 7), 2)
    assert (history.held, history.held_incidents, history.held_since) == (3, (7, 8), at(100))
    assert not GATE.summary_due(history, at(599))
    assert GATE.summary_due(history, at(600))
    after = GATE.record_summary(history, at(600))
    assert (after.held, after.held_incidents, after.held_since) == (0, (), None)
    assert after.sent == (at(40), at(80), at(600))  # the summary used a slot
    assert GATE.decide(after, at(601)).verdict is Verdict.HOLD


def test_record_sent_trims_to_the_window() -> None:
    history = GATE.record_sent(sent(0, 40), at(620))
    assert history.sent == (at(40), at(620))
    assert history.last_send == at(620)


@pytest.mark.parametrize(
    ("history", "now", "idle"),
    [
        pytest.param(ChannelHistory(), 0, True, id="empty"),
        pytest.param(sent(0), 10, False, id="recent-send"),
        pytest.param(sent(0), 600, True, id="send-slid-out"),
        pytest.param(
            ChannelHistory(held=1, held_incidents=(1,), held_since=at(0)), 10_000, False,
            id="summary-pending",
        ),
    ],
)
def test_idle(history: ChannelHistory, now: float, idle: bool) -> None:
    assert GATE.idle(history, at(now)) is idle


@pytest.mark.parametrize(
    ("reason", "page"),
    [
        pytest.param("triggered", True, id="triggered"),
        pytest.param("escalated", True, id="escalated"),
        pytest.param("reminder", True, id="reminder"),
        pytest.param("re_escalated", True, id="re_escalated"),
        pytest.param("acknowledged", False, id="acknowledged"),
        pytest.param("resolved", False, id="resolved"),
        pytest.param("stakeholder_declared", False, id="stakeholder"),
    ],
)
def test_only_pages_are_gated(reason: str, page: bool) -> None:
    assert is_page(reason) is page


@pytest.mark.parametrize(
    ("bundle", "limit", "window", "message"),
    [
        pytest.param(timedelta(seconds=-1), 3, timedelta(minutes=1), "bundle_window", id="neg"),
        pytest.param(timedelta(0), 0, timedelta(minutes=1), "rate_limit", id="zero-limit"),
        pytest.param(timedelta(0), 3, timedelta(0), "rate_window", id="zero-window"),
    ],
)
def test_bad_settings_are_refused(
    bundle: timedelta, limit: int, window: timedelta, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        NoiseGate(bundle, limit, window)


def test_a_hold_covers_at_least_one_page() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GATE.record_held(ChannelHistory(), at(0), (1,), 0)
