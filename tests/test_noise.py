"""Noise control as tables: the gate's decision for one URL's history at one instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.core.model import IncidentState, MessageReason
from receiver.delivery.noise import (
    ChannelHistory,
    Decision,
    Kind,
    NoiseGate,
    Pending,
    Verdict,
    kind_of,
)
from receiver.delivery.plan import (
    Addressed,
    Outgoing,
    Send,
    joined,
    lane_bundle,
    plan_pass,
    unwanted_pages,
)
from receiver.store.records import IncidentBrief, IncidentFacts, OutboxMessage, OutboxRow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GATE = NoiseGate(
    bundle_window=timedelta(seconds=30), rate_limit=3, rate_window=timedelta(minutes=10),
    max_hold=timedelta(seconds=5),
)
PAGE, NOTE = Kind.PAGE, Kind.NOTE


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sent(*seconds: float, note: float | None = None) -> ChannelHistory:
    """Pages sent at these offsets from T0 (the last is the last page), and maybe a note."""
    times = tuple(sorted(at(s) for s in (*seconds, *(() if note is None else (note,)))))
    return ChannelHistory(
        sent=times, last_page=at(seconds[-1]) if seconds else None,
        last_note=None if note is None else at(note),
    )


def waiting(history: ChannelHistory, kind: Kind, release: float, urgent: bool = False,
            rows: tuple[int, ...] = ()) -> ChannelHistory:
    return history.with_pending(kind, Pending(at(release), urgent, rows))


SEND, HOLD = Decision(Verdict.SEND), Decision(Verdict.HOLD)


def defer(until: float, *moved: int) -> Decision:
    return Decision(Verdict.DEFER, at(until), moved)


@pytest.mark.parametrize(
    ("history", "kind", "now", "urgent", "expected"),
    [
        # pages: bundled after the last page
        pytest.param(ChannelHistory(), PAGE, 0, False, SEND, id="first-page-goes"),
        pytest.param(sent(0), PAGE, 10, False, defer(30), id="page-inside-window"),
        pytest.param(sent(0), PAGE, 29.999, False, defer(30), id="page-just-before-close"),
        pytest.param(sent(0), PAGE, 30, False, SEND, id="page-window-closed-exactly"),
        pytest.param(sent(0, 40), PAGE, 50, False, defer(70), id="window-from-last-page"),
        # a note never delays a page, nor a page a note
        pytest.param(sent(note=0), PAGE, 1, False, SEND, id="page-after-a-note-goes"),
        pytest.param(sent(note=0), PAGE, 1, True, SEND, id="urgent-page-after-a-note-goes"),
        pytest.param(sent(0), NOTE, 1, False, SEND, id="note-after-a-page-goes"),
        # notes: bundled after the last note
        pytest.param(sent(note=0), NOTE, 10, False, defer(30), id="note-inside-window"),
        pytest.param(sent(note=0), NOTE, 10, True, defer(30), id="urgency-is-for-pages"),
        pytest.param(sent(note=0), NOTE, 31, False, SEND, id="note-after-window"),
        # a high-urgency page waits at most max_hold
        pytest.param(sent(0), PAGE, 10, True, defer(15), id="urgent-page-capped"),
        pytest.param(sent(0), PAGE, 27, True, defer(30), id="window-closes-before-cap"),
        pytest.param(waiting(sent(0), PAGE, 15, urgent=True), PAGE, 12, True, defer(15),
                     id="urgent-joins-urgent-bundle"),
        pytest.param(waiting(sent(0), PAGE, 15, urgent=True), PAGE, 12, False, defer(15),
                     id="low-joins-urgent-bundle"),
        pytest.param(waiting(sent(0), PAGE, 30, rows=(7, 8)), PAGE, 12, False, defer(30),
                     id="low-joins-low-bundle"),
        pytest.param(waiting(sent(0), PAGE, 30, rows=(7, 8)), PAGE, 12, True, defer(17, 7, 8),
                     id="urgent-pulls-low-bundle-earlier"),
        pytest.param(waiting(sent(0), PAGE, 30, rows=(7,)), PAGE, 26, True, defer(30),
                     id="urgent-needs-no-move"),
        # a wait that is over is over
        pytest.param(waiting(sent(0, 14), PAGE, 15, urgent=True), PAGE, 15, False, SEND,
                     id="bundle-time-came"),
        pytest.param(waiting(sent(note=0), NOTE, 30), NOTE, 30, False, SEND,
                     id="note-bundle-time-came"),
        # the budget: every kind counts; notes leave the last slot to a page
        pytest.param(sent(0, 40, 80), PAGE, 120, False, HOLD, id="rate-limit-reached"),
        pytest.param(sent(0, 40, 80), PAGE, 85, False, HOLD, id="hold-beats-defer"),
        # a high-urgency page is never held back: over the budget it is only bundled
        pytest.param(sent(0, 40, 80), PAGE, 120, True, SEND, id="urgent-page-over-budget-goes"),
        pytest.param(sent(0, 40, 80), PAGE, 85, True, defer(90),
                     id="urgent-page-over-budget-waits-max-hold"),
        pytest.param(sent(0, 40, 80), PAGE, 109, True, defer(110),
                     id="urgent-page-over-budget-waits-the-window"),
        pytest.param(waiting(sent(0, 40, 80), PAGE, 90, urgent=True), PAGE, 86, True,
                     defer(90), id="urgent-page-over-budget-joins-its-bundle"),
        pytest.param(waiting(sent(0, 10, 20), PAGE, 30, urgent=True), PAGE, 30, True, SEND,
                     id="urgent-bundle-due-over-budget-goes"),
        pytest.param(waiting(sent(0, 40, 80), PAGE, 90, urgent=True), PAGE, 86, False, HOLD,
                     id="low-page-over-budget-is-held-beside-an-urgent-bundle"),
        pytest.param(sent(0, note=40), NOTE, 120, True, HOLD, id="no-note-is-exempt"),
        pytest.param(sent(0, 40, 80, note=100), PAGE, 101, True, defer(106),
                     id="urgent-page-after-notes-over-budget"),
        pytest.param(sent(0, 40, 80), PAGE, 600, False, SEND, id="oldest-slid-out"),
        pytest.param(sent(0, 40, 80), PAGE, 599, False, HOLD, id="oldest-still-in"),
        pytest.param(sent(0, note=40), PAGE, 120, False, SEND, id="page-takes-the-last-slot"),
        pytest.param(sent(0, note=40), NOTE, 120, False, HOLD, id="note-leaves-the-last-slot"),
        pytest.param(sent(note=40), NOTE, 120, False, SEND, id="note-within-its-budget"),
        pytest.param(waiting(sent(0, 10, 20), PAGE, 30), PAGE, 30, False, HOLD,
                     id="due-bundle-over-budget-is-held"),
        pytest.param(
            ChannelHistory(sent=(at(0), at(1), at(2)), last_page=at(2)), PAGE, 700, False,
            SEND, id="all-slid-out",
        ),
    ],
)
def test_decide(
    history: ChannelHistory, kind: Kind, now: float, urgent: bool, expected: Decision
) -> None:
    assert GATE.decide(history, kind, at(now), urgent=urgent) == expected


@pytest.mark.parametrize(
    ("history", "kind", "now", "expected"),
    [
        # The bundle released at 30 went (another pass took its mates): a page of it that
        # comes after goes at once, not a window later.
        pytest.param(sent(0, 30), PAGE, 30, SEND, id="overdue-page-goes"),
        pytest.param(sent(0, 30), PAGE, 31, SEND, id="overdue-page-goes-later-too"),
        pytest.param(waiting(sent(0, 30), PAGE, 60, rows=(9,)), PAGE, 31, SEND,
                     id="overdue-page-skips-the-next-bundle"),
        pytest.param(waiting(sent(0, 30), PAGE, 35, urgent=True), PAGE, 31, SEND,
                     id="overdue-page-skips-an-urgent-bundle"),
        pytest.param(sent(0, 10, 30), PAGE, 31, HOLD, id="overdue-page-within-the-budget"),
        # notes only inform: they wait for the next window (the budget is the pages')
        pytest.param(sent(note=30), NOTE, 31, defer(60), id="overdue-note-waits"),
    ],
)
def test_decide_overdue(
    history: ChannelHistory, kind: Kind, now: float, expected: Decision
) -> None:
    assert GATE.decide(history, kind, at(now), overdue=True) == expected


def test_an_overdue_urgent_page_over_the_budget_goes() -> None:
    assert GATE.decide(sent(0, 10, 30), PAGE, at(31), urgent=True, overdue=True) == SEND


def test_a_high_urgency_page_counts_against_the_budget_but_is_never_held() -> None:
    """Counted, never held: the budget stays meaningful for notes and low-urgency pages."""
    history = sent(0)
    steps: list[tuple[float, Kind, bool, Decision]] = [
        (100, PAGE, True, SEND),  # 2 of 3 spent
        (200, NOTE, False, HOLD),  # notes leave the last slot to a page
        (300, PAGE, False, SEND),  # 3 of 3: a low-urgency page takes the last slot
        (400, PAGE, False, HOLD),  # and the next is held back
        (401, PAGE, True, SEND),  # a high-urgency one goes all the same (window 30s is over)
        (402, PAGE, True, defer(407)),  # bundled, not held: at most max_hold
        (403, PAGE, False, HOLD),  # a low-urgency one is still held back
    ]
    for second, kind, urgent, expected in steps:
        decision = GATE.decide(history, kind, at(second), urgent=urgent)
        assert decision == expected, second
        if decision.verdict is Verdict.SEND:
            history = GATE.record_sent(history, kind, at(second))
        elif decision.verdict is Verdict.HOLD:
            history = GATE.record_held_back(history, kind, at(second), (1,), ("x",))
        else:
            assert decision.until is not None
            history = GATE.record_deferred(history, kind, decision.until, (9,), urgent=urgent)
    assert len(history.sent) == GATE.rate_limit  # trimmed to what the rules read
    assert history.held_back == 3


def test_an_overdue_page_sent_leaves_a_later_bundle_waiting() -> None:
    history = waiting(sent(30), PAGE, 60, rows=(9,))
    after = GATE.record_sent(history, PAGE, at(31))
    assert (after.last_page, after.pending_page) == (at(31), Pending(at(60), False, (9,)))
    # and at its time, the waiting bundle goes (a wait that is over is over)
    assert GATE.decide(after, PAGE, at(60)) == SEND


def test_a_one_message_budget_has_no_reserve() -> None:
    gate = NoiseGate(timedelta(0), 1, timedelta(minutes=1))
    assert gate.decide(ChannelHistory(), NOTE, at(0)) == SEND
    assert gate.budget(NOTE) == gate.budget(PAGE) == 1


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
    assert gate.decide(history, PAGE, at(now)).verdict is expected


# -- what each record keeps ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "kind", "until", "rows", "urgent", "pending"),
    [
        pytest.param(sent(0), PAGE, 30, (1,), False, Pending(at(30), False, (1,)),
                     id="low-bundle-remembers-its-rows"),
        pytest.param(waiting(sent(0), PAGE, 30, rows=(1,)), PAGE, 30, (2, 3), False,
                     Pending(at(30), False, (1, 2, 3)), id="rows-join"),
        pytest.param(waiting(sent(0), PAGE, 30, rows=(1,)), PAGE, 15, (2,), True,
                     Pending(at(15), True, ()), id="capped-bundle-forgets-rows"),
        pytest.param(waiting(sent(0), PAGE, 15, urgent=True), PAGE, 15, (4,), False,
                     Pending(at(15), True, ()), id="stays-urgent"),
        pytest.param(sent(note=0), NOTE, 30, (5,), True, Pending(at(30), False, (5,)),
                     id="a-note-is-never-urgent"),
    ],
)
def test_record_deferred(
    before: ChannelHistory, kind: Kind, until: float, rows: tuple[int, ...], urgent: bool,
    pending: Pending,
) -> None:
    after = GATE.record_deferred(before, kind, at(until), rows, urgent=urgent)
    assert after.pending(kind) == pending
    assert after.sent == before.sent


def test_record_sent_clears_its_kind_only() -> None:
    history = waiting(waiting(sent(0), PAGE, 30), NOTE, 40)
    after = GATE.record_sent(history, PAGE, at(30))
    assert (after.last_page, after.pending_page) == (at(30), None)
    assert after.pending_note == Pending(at(40))
    assert after.sent == (at(0), at(30))


def test_record_sent_keeps_only_what_the_rate_limit_reads() -> None:
    history = ChannelHistory()
    for second in range(100):
        history = GATE.record_sent(history, NOTE, at(second))
    assert history.sent == (at(97), at(98), at(99))
    assert GATE.record_sent(sent(0, 40), PAGE, at(620)).sent == (at(40), at(620))


def test_a_summary_is_due_once_the_window_that_held_frees_a_slot() -> None:
    history = sent(0, 40, 80)
    history = GATE.record_held_back(history, PAGE, at(100), (7,), ("triggered",))
    history = GATE.record_held_back(history, NOTE, at(200), (8, 7), ("resolved", "resolved"))
    assert (history.held_back, history.held_back_incidents, history.held_back_since) == \
        (3, (7, 8), at(100))
    assert history.held_back_reasons == (("triggered", 1), ("resolved", 2))
    # A summary is a note: it waits until two slots are free, and leaves one to a page.
    assert not GATE.summary_due(history, at(639))
    assert GATE.summary_due(history, at(640))
    after = GATE.record_summary(history, at(640))
    assert (after.held_back, after.held_back_reasons, after.held_back_incidents) == (0, (), ())
    assert after.sent == (at(80), at(640))  # the summary used a slot
    assert GATE.decide(after, NOTE, at(641)).verdict is Verdict.HOLD
    assert GATE.decide(after, PAGE, at(641)).verdict is Verdict.SEND


@pytest.mark.parametrize(
    ("release", "now", "still_pending"),
    [
        pytest.param(30, 30, False, id="held-at-its-time-the-bundle-is-gone"),
        pytest.param(30, 20, True, id="held-before-its-time-the-bundle-still-waits"),
    ],
)
def test_a_hold_ends_a_bundle_whose_time_came(
    release: float, now: float, still_pending: bool
) -> None:
    history = waiting(sent(0, 10, 20), PAGE, release)
    after = GATE.record_held_back(history, PAGE, at(now), (1,), ("triggered",))
    assert (after.pending_page is not None) is still_pending


@pytest.mark.parametrize(
    ("history", "now", "due_at"),
    [
        pytest.param(ChannelHistory(), 0, None, id="nothing-held"),
        pytest.param(sent(0, 40, 80), 100, None, id="held-count-zero"),
        pytest.param(
            ChannelHistory(sent=(at(0), at(40), at(80)), last_page=at(80), held_back=2,
                           held_back_incidents=(7, 8), held_back_since=at(90)),
            100, at(640), id="summary-waits-for-a-note-slot",
        ),
        pytest.param(
            ChannelHistory(sent=(at(40), at(80)), last_page=at(80), held_back=1,
                           held_back_incidents=(7,), held_back_since=at(90)),
            700, at(700), id="room-now",
        ),
    ],
)
def test_summary_at(history: ChannelHistory, now: float, due_at: datetime | None) -> None:
    assert GATE.summary_at(history, at(now)) == due_at
    assert GATE.summary_due(history, at(now)) is (due_at is not None and due_at <= at(now))


@pytest.mark.parametrize(
    ("history", "now", "idle"),
    [
        pytest.param(ChannelHistory(), 0, True, id="empty"),
        pytest.param(sent(0), 10, False, id="recent-send"),
        pytest.param(sent(0), 600, True, id="send-slid-out"),
        pytest.param(ChannelHistory(last_note=at(590)), 600, False, id="note-window-open"),
        pytest.param(waiting(ChannelHistory(), NOTE, 10_000), 9_000, False, id="note-waiting"),
        pytest.param(waiting(ChannelHistory(), PAGE, 10_000), 9_000, False, id="page-waiting"),
        pytest.param(
            ChannelHistory(held_back=1, held_back_incidents=(1,), held_back_since=at(0)), 10_000,
            False,
            id="summary-pending",
        ),
    ],
)
def test_idle(history: ChannelHistory, now: float, idle: bool) -> None:
    assert GATE.idle(history, at(now)) is idle


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        pytest.param("triggered", PAGE, id="triggered"),
        pytest.param("escalated", PAGE, id="escalated"),
        pytest.param("reminder", PAGE, id="reminder"),
        pytest.param("re_escalated", PAGE, id="re_escalated"),
        pytest.param("reassigned", PAGE, id="reassigned"),
        pytest.param("severity_raised", PAGE, id="severity_raised"),
        pytest.param("acknowledged", NOTE, id="acknowledged"),
        pytest.param("resolved", NOTE, id="resolved"),
        pytest.param("stakeholder_declared", NOTE, id="stakeholder-declared"),
        pytest.param("stakeholder_resolved", NOTE, id="stakeholder-resolved"),
        pytest.param("stakeholder_exhausted", NOTE, id="stakeholder-exhausted"),
        pytest.param("stale", NOTE, id="stale"),
    ],
)
def test_kinds(reason: str, kind: Kind) -> None:
    assert kind_of(MessageReason(reason)) is kind
    assert MessageReason(reason).is_page is (kind is PAGE)


def test_every_reason_has_a_kind() -> None:
    assert {kind_of(reason) for reason in MessageReason} == {PAGE, NOTE}


@pytest.mark.parametrize(
    ("bundle", "limit", "window", "hold", "message"),
    [
        pytest.param(timedelta(seconds=-1), 3, timedelta(minutes=1), timedelta(0),
                     "bundle_window", id="neg"),
        pytest.param(timedelta(0), 0, timedelta(minutes=1), timedelta(0), "rate_limit",
                     id="zero-limit"),
        pytest.param(timedelta(0), 3, timedelta(0), timedelta(0), "rate_window",
                     id="zero-window"),
        pytest.param(timedelta(0), 3, timedelta(minutes=1), timedelta(seconds=-1), "max_hold",
                     id="neg-hold"),
    ],
)
def test_bad_settings_are_refused(
    bundle: timedelta, limit: int, window: timedelta, hold: timedelta, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        NoiseGate(bundle, limit, window, hold)


def test_a_hold_covers_at_least_one_message() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GATE.record_held_back(ChannelHistory(), PAGE, at(0), (1,), ())


@pytest.mark.parametrize(
    ("history", "now", "pending_page", "pending_note"),
    [
        pytest.param(waiting(sent(0), PAGE, 6, urgent=True), 6, None, None, id="time-came"),
        pytest.param(waiting(sent(0), PAGE, 6, urgent=True), 5, Pending(at(6), True), None,
                     id="still-waiting"),
        pytest.param(waiting(waiting(sent(0), PAGE, 6), NOTE, 30), 10, None, Pending(at(30)),
                     id="each-kind-apart"),
    ],
)
def test_expire(
    history: ChannelHistory, now: float, pending_page: Pending | None,
    pending_note: Pending | None,
) -> None:
    after = GATE.expire(history, at(now))
    assert (after.pending_page, after.pending_note) == (pending_page, pending_note)


def test_a_bundle_whose_rows_were_all_suppressed_lets_no_page_skip_the_window() -> None:
    # A page at 0; an urgent one at 1 waits to 6; its incident is acknowledged, so at 6 its
    # row is suppressed before the gate. The next urgent page, at 10, still bundles.
    history = GATE.record_deferred(sent(0), PAGE, at(6), (1,), urgent=True)
    history = GATE.expire(history, at(6))
    assert GATE.decide(history, PAGE, at(10), urgent=True) == defer(15)


# -- a pass over one URL's due rows (plan.py) --------------------------------------------------


URL = "json://127.0.0.1:9/ana"


def due_row(
    row_id: int, severity: str, reason: str = "triggered"
) -> tuple[Addressed, IncidentBrief]:
    """Row `row_id` of incident `row_id`, first attempt, made at T0 and due at once."""
    message = OutboxMessage(recipient="ana", recipient_kind="user", contact=0,
                            reason=MessageReason(reason), step=0)
    row = OutboxRow(row_id, row_id, T0, message, 0, T0)
    return Addressed(row, message, URL), IncidentBrief(row_id, IncidentState.TRIGGERED, severity)


def high(incident: IncidentFacts) -> bool:
    return incident.severity == "SEV1"


@pytest.mark.parametrize(
    ("history", "rows", "now", "sent", "deferred", "held"),
    [
        pytest.param(sent(0, 40, 80), [(1, "SEV1"), (2, "SEV1")], 120, [1, 2], [], [],
                     id="urgent-pages-over-budget-go-together"),
        pytest.param(sent(0, 40, 80), [(1, "SEV3"), (2, "SEV1"), (3, "SEV3")], 120, [2], [],
                     [1, 3], id="low-pages-beside-them-are-held"),
        pytest.param(sent(0, 40, 100), [(1, "SEV3"), (2, "SEV1")], 101, [], [2], [1],
                     id="the-urgent-one-bundled-the-low-one-held"),
        pytest.param(sent(0, 40), [(1, "SEV3"), (2, "SEV1")], 120, [1, 2], [], [],
                     id="within-budget-they-go-together"),
        pytest.param(sent(0, 40, 80), [(1, "SEV3")], 120, [], [], [1],
                     id="a-low-page-alone-is-held"),
        pytest.param(sent(0, 40, 80), [(1, "SEV1", "resolved")], 120, [], [], [1],
                     id="a-note-of-an-urgent-incident-is-held"),
    ],
)
def test_plan_pass_never_holds_a_high_urgency_page(
    history: ChannelHistory, rows: list[tuple[Any, ...]], now: float, sent: list[int],
    deferred: list[int], held: list[int],
) -> None:
    due = [due_row(*row) for row in rows]
    plan = plan_pass(GATE, {URL: history}, {}, due, at(now), high)
    assert [row.id for send in plan.sends for row, _ in send.items] == sent
    assert len(plan.sends) == (1 if sent else 0)  # one message, bundled
    assert [row_id for row_id, _ in plan.deferred] == deferred
    assert [(row.id, why) for row, _, why in plan.suppressed] == \
        [(row_id, "rate limited") for row_id in held]
    after = plan.histories[URL]
    assert after.held_back == len(held)
    assert after.held_back_incidents == tuple(held)


# -- what goes when a busy URL's lane frees (plan.lane_bundle) ---------------------------------


def queued(*rows: tuple[int, str]) -> Send:
    """One message queued in URL's lane: these rows (id, reason), one pass's."""
    return Send(URL, tuple(due_row(row_id, "SEV1", reason) for row_id, reason in rows))


P, N = "triggered", "resolved"


@pytest.mark.parametrize(
    ("waiting", "taken"),
    [
        pytest.param([], (), id="nothing-queued"),
        pytest.param([queued((1, P))], (0,), id="one-page"),
        pytest.param([queued((1, P)), queued((2, P), (3, P)), queued((4, "escalated"))],
                     (0, 1, 2), id="every-page-queued-goes-as-one"),
        pytest.param([queued((1, N)), queued((2, P)), queued((3, N)), queued((4, P))],
                     (1, 3), id="pages-first-the-notes-wait"),
        pytest.param([queued((1, N)), queued((2, "acknowledged"))], (0, 1),
                     id="then-every-note-as-one"),
    ],
)
def test_lane_bundle(waiting: list[Send], taken: tuple[int, ...]) -> None:
    assert lane_bundle(waiting) == taken


def test_joined_carries_every_row_in_order_to_one_url() -> None:
    first, second = (Outgoing(URL, send.items) for send in (queued((1, P)), queued((2, P),
                                                                                    (3, P))))
    assert joined([first]) is first
    assert [row.id for row, _ in joined([second, first]).items] == [2, 3, 1]
    with pytest.raises(ValueError, match="one URL"):
        joined([first, Outgoing("json://127.0.0.1:9/bo", second.items)])
    with pytest.raises(ValueError, match="one URL"):
        joined([])


# -- what of a message that waited in its lane is still wanted at its turn ---------------------

T, A, R = IncidentState.TRIGGERED, IncidentState.ACKNOWLEDGED, IncidentState.RESOLVED


@pytest.mark.parametrize(
    ("rows", "states", "dropped"),
    [
        pytest.param([(1, P)], {1: T}, [], id="still-triggered-goes"),
        pytest.param([(1, P), (2, "escalated"), (3, "reminder")], {1: A, 2: R, 3: T},
                     [(1, "incident acknowledged"), (2, "incident resolved")],
                     id="handled-meanwhile-suppressed-as-a-pass-would"),
        pytest.param([(1, P), (2, N)], {}, [(1, "incident not found")],
                     id="gone-a-page-is-dropped-a-note-left-to-fail-on-its-own"),
        pytest.param([(1, "acknowledged"), (2, N)], {1: A, 2: R}, [], id="notes-still-go"),
        pytest.param([(1, "responder_added"), (2, "responder_added")], {1: A, 2: R},
                     [(2, "incident resolved")], id="a-responder-is-wanted-until-resolved"),
    ],
)
def test_unwanted_pages(
    rows: list[tuple[int, str]], states: dict[int, IncidentState],
    dropped: list[tuple[int, str]],
) -> None:
    items = [due_row(row_id, "SEV1", reason) for row_id, reason in rows]
    now = {i: IncidentBrief(i, state, "SEV1") for i, state in states.items()}
    found = unwanted_pages(items, now)
    assert [(row.id, why) for row, _, why in found] == dropped
    assert all(incident is now.get(row.incident_id) for row, incident, _ in found)
