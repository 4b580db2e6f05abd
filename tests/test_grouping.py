"""Dedup and grouping decisions, table-driven: what each webhook does to one group."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.grouping import (
    AlertOutcome,
    HeldGroups,
    KnownAlert,
    MemoBytes,
    OpenGroup,
    RoutedBodies,
    RoutedBody,
    _held_bytes,
    _routed_bytes,
    apply,
    held_digest,
    unsettled_episodes,
    webhook_digest,
)
from receiver.model import Alert, AlertStatus, EventKind
from receiver.routing import group_key

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = NOW - timedelta(minutes=10)
T1 = NOW - timedelta(minutes=2)
F, R = AlertStatus.FIRING, AlertStatus.RESOLVED


def alert(fp: str, status: AlertStatus, starts: datetime = T0) -> Alert:
    ends = None if status is F else NOW
    return Alert(fp, status, {"alertname": f"A{fp}"}, {}, starts, ends)


def group(*alerts: tuple[str, AlertStatus, datetime]) -> OpenGroup:
    return OpenGroup(7, {fp: KnownAlert(starts, status) for fp, status, starts in alerts})


CASES = [
    # (name, incoming, open group, known episodes, opens, resolves, outcomes, event kinds)
    (
        "first firing alert opens an incident",
        [alert("a", F)], None, {}, True, False,
        {AlertOutcome.ADDED: 1}, [EventKind.OPENED, EventKind.ALERT_ADDED],
    ),
    (
        "resend of the same episode changes nothing",
        [alert("a", F)], group(("a", F, T0)), {("a", T0): F}, False, False,
        {AlertOutcome.DUPLICATE: 1}, [],
    ),
    (
        "a new alert joins the open incident",
        [alert("a", F), alert("b", F)], group(("a", F, T0)), {("a", T0): F}, False, False,
        {AlertOutcome.DUPLICATE: 1, AlertOutcome.ADDED: 1}, [EventKind.ALERT_ADDED],
    ),
    (
        "one of two resolves: incident stays open",
        [alert("a", R), alert("b", F)], group(("a", F, T0), ("b", F, T0)), {}, False, False,
        {AlertOutcome.RESOLVED: 1, AlertOutcome.DUPLICATE: 1}, [EventKind.ALERT_RESOLVED],
    ),
    (
        "the last alert resolves: incident resolves",
        [alert("a", R), alert("b", R)], group(("a", R, T0), ("b", F, T0)), {}, False, True,
        {AlertOutcome.DUPLICATE: 1, AlertOutcome.RESOLVED: 1},
        [EventKind.ALERT_RESOLVED, EventKind.RESOLVED],
    ),
    (
        "a lagging replica's firing resend after resolve is a duplicate",
        [alert("a", F)], group(("a", R, T0), ("b", F, T0)), {}, False, False,
        {AlertOutcome.DUPLICATE: 1}, [],
    ),
    (
        "a late firing resend of a resolved incident's episode does not reopen it",
        [alert("a", F)], None, {("a", T0): R}, False, False,
        {AlertOutcome.DUPLICATE: 1}, [],
    ),
    (
        "a resend of a resolved incident's resolution is a duplicate",
        [alert("a", R)], None, {("a", T0): R}, False, False,
        {AlertOutcome.DUPLICATE: 1}, [],
    ),
    (
        "a resolved alert never seen firing is ignored and opens nothing",
        [alert("a", R)], None, {}, False, False,
        {AlertOutcome.IGNORED: 1}, [],
    ),
    (
        "a new episode after the incident resolved opens a new incident",
        [alert("a", F, T1)], None, {("a", T0): R}, True, False,
        {AlertOutcome.ADDED: 1}, [EventKind.OPENED, EventKind.ALERT_ADDED],
    ),
    (
        "a new episode of a resolved alert inside an open incident refires it",
        [alert("a", F, T1)], group(("a", R, T0), ("b", F, T0)), {("a", T0): R}, False, False,
        {AlertOutcome.REFIRED: 1}, [EventKind.ALERT_REFIRED],
    ),
    (
        "an older episode than the current one is stale",
        [alert("a", F, T0)], group(("a", F, T1)), {}, False, False,
        {AlertOutcome.IGNORED: 1}, [],
    ),
]


@pytest.mark.parametrize(
    ("incoming", "open_group", "known", "opens", "resolves", "outcomes", "kinds"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_apply(
    incoming: list[Alert],
    open_group: OpenGroup | None,
    known: dict[tuple[str, datetime], AlertStatus],
    opens: bool,
    resolves: bool,
    outcomes: dict[AlertOutcome, int],
    kinds: list[EventKind],
) -> None:
    change = apply(incoming, open_group, known, NOW)
    assert change.opens is opens
    assert change.resolves is resolves
    assert change.outcomes == outcomes
    assert [e.kind for e in change.events] == kinds
    assert all(e.at == NOW for e in change.events)


def test_duplicates_write_nothing() -> None:
    change = apply([alert("a", F)], group(("a", F, T0)), {}, NOW)
    assert change.writes == []
    assert not change.changed


def test_events_name_the_alert() -> None:
    change = apply([alert("a", F)], None, {}, NOW)
    assert change.events[1].detail == {
        "fingerprint": "a", "alertname": "Aa", "starts_at": T0.isoformat(),
    }


_STARTS = [T0, T1]
_alerts = st.lists(
    st.tuples(st.sampled_from("abc"), st.sampled_from([F, R]), st.sampled_from(_STARTS)),
    min_size=1, max_size=6,
)


@given(
    incoming=_alerts,
    held=st.dictionaries(st.sampled_from("abc"),
                         st.tuples(st.sampled_from([F, R]), st.sampled_from(_STARTS))),
    history=st.dictionaries(st.tuples(st.sampled_from("abc"), st.sampled_from(_STARTS)),
                            st.sampled_from([F, R])),
)
def test_only_unsettled_episodes_need_the_history(
    incoming: list[tuple[str, AlertStatus, datetime]],
    held: dict[str, tuple[AlertStatus, datetime]],
    history: dict[tuple[str, datetime], AlertStatus],
) -> None:
    """The ingest path looks up history only for unsettled fingerprints: `apply` must decide
    exactly as it would with the group's whole history."""
    alerts = [alert(fp, status, starts) for fp, status, starts in incoming]
    open_group = group(*((fp, s, t) for fp, (s, t) in held.items())) if held else None
    if open_group is not None:  # what the open incident holds is part of the history too
        history = {**history, **{(fp, t): s for fp, (s, t) in held.items()}}
    wanted = set(unsettled_episodes(alerts, open_group))
    narrowed = {key: s for key, s in history.items() if key[0] in wanted}
    full = apply(alerts, open_group, history, NOW)
    narrow = apply(alerts, open_group, narrowed, NOW)
    assert (narrow.opens, narrow.resolves, narrow.outcomes, narrow.writes, narrow.events) == (
        full.opens, full.resolves, full.outcomes, full.writes, full.events,
    )


@given(
    incoming=_alerts,
    held=st.dictionaries(st.sampled_from("abc"),
                         st.tuples(st.sampled_from([F, R]), st.sampled_from(_STARTS)),
                         min_size=1),
)
def test_a_webhook_matching_the_held_digest_changes_nothing(
    incoming: list[tuple[str, AlertStatus, datetime]],
    held: dict[str, tuple[AlertStatus, datetime]],
) -> None:
    """The resend shortcut skips `apply` when the digests match: `apply` must then find every
    alert a duplicate; and a webhook that repeats the held alerts, in any order, must match."""
    alerts = [alert(fp, status, starts) for fp, status, starts in incoming]
    open_group = group(*((fp, s, t) for fp, (s, t) in held.items()))
    history = {(fp, t): s for fp, (s, t) in held.items()}
    if webhook_digest(alerts) == held_digest(open_group.alerts):
        change = apply(alerts, open_group, history, NOW)
        assert (change.writes, change.events) == ([], [])
        assert change.outcomes == {AlertOutcome.DUPLICATE: len(alerts)}
    repeat = [alert(fp, s, t) for fp, (s, t) in reversed(held.items())]
    assert webhook_digest(repeat) == held_digest(open_group.alerts)


def test_the_digest_tells_apart_what_a_resend_may_not_change() -> None:
    held = held_digest(group(("a", F, T0), ("b", F, T0)).alerts)
    assert webhook_digest([alert("b", F), alert("a", F)]) == held
    assert webhook_digest([alert("a", F), alert("b", F), alert("b", F)]) == held  # both dups
    for differs in (
        [alert("a", F)],  # a subset: the ordinary path decides
        [alert("a", F), alert("b", R)],  # a resolution
        [alert("a", F), alert("b", F, T1)],  # a new episode
        [alert("a", F), alert("b", F), alert("c", F)],  # one more alert
    ):
        assert webhook_digest(differs) != held


def test_held_groups_answer_only_exact_repeats_and_forget() -> None:
    held = HeldGroups()
    state = group(("a", F, T0)).alerts
    held.hold("g1", 1, held_digest(state))
    assert held.repeated("g1", webhook_digest([alert("a", F)])) == 1
    assert held.repeated("g1", webhook_digest([alert("a", R)])) is None
    assert held.repeated("g2", webhook_digest([alert("a", F)])) is None
    held.forget("g1")
    assert held.repeated("g1", webhook_digest([alert("a", F)])) is None


def test_held_groups_drop_the_least_recently_held_beyond_the_budget() -> None:
    digest = held_digest(group(("a", F, T0)).alerts)
    one = _held_bytes("g000", (1, digest))
    held = HeldGroups(100 * one)  # room for a hundred keys of this length
    for n in range(100):
        held.hold(f"g{n:03}", n, digest)
    held.hold("g000", 0, digest)  # held again: now the newest
    held.hold("g100", 100, digest)
    assert (len(held), held.memo.bytes) == (100, 100 * one)
    resend = webhook_digest([alert("a", F)])
    assert held.repeated("g001", resend) is None
    assert [held.repeated(k, resend) for k in ("g000", "g002", "g100")] == [0, 2, 100]


def test_routed_bodies_are_named_by_content_under_a_key_of_their_own() -> None:
    bodies, other = RoutedBodies(), RoutedBodies()
    body = b'{"alerts": []}'
    assert bodies.name(body) == bodies.name(bytes(bytearray(body)))
    assert bodies.name(body) != bodies.name(body + b" ")
    assert len(bodies.name(body)) == 16  # 128 bits: no chance collision in any lifetime
    assert bodies.name(body) != other.name(body)  # keyed: a name says nothing outside


def test_routed_bodies_hold_only_under_the_config_they_were_routed_by() -> None:
    bodies = RoutedBodies()
    first, second = object(), object()
    routed = [RoutedBody((("g", 1, 1),), 1, 1), RoutedBody((("g", 2, 1),), 1, 0)]
    bodies.put(b"one", first, routed[0])
    assert bodies.get(b"one", first) == routed[0]
    assert bodies.get(b"one", second) is None  # reloaded: routing may differ now
    bodies.put(b"two", second, routed[1])
    assert (len(bodies), bodies.get(b"two", second)) == (1, routed[1])
    assert bodies.get(b"one", first) is None  # the old config's bodies went with it


def test_routed_bodies_drop_the_least_recently_put_beyond_the_budget() -> None:
    routed = RoutedBody((("g", 1, 1),), 1, 1)
    bodies, config = RoutedBodies(2 * MemoBytes.MAX_SHARE * _routed_bytes(b"", routed)), object()
    for n in range(2 * MemoBytes.MAX_SHARE):
        bodies.put(bytes([n]), config, routed)
    bodies.put(b"\x00", config, routed)  # put again: now the newest
    bodies.put(b"new", config, routed)
    assert [bodies.get(n, config) is not None for n in (b"\x00", b"\x01", b"new")] == [
        True, False, True
    ]
    assert bodies.memo.bytes <= bodies.memo.budget


# -- the memos are bounded by bytes, and their estimate is not below the truth ------------------

MIB = 1024 * 1024


def _routed(groups: int, tag: str) -> RoutedBody:
    """A body routed to `groups` groups, with keys as routing makes them."""
    keys = [group_key("0/{}/0", {"alertname": f"Disk{n}", "instance": f"node-{n}.{tag}:9100"})
            for n in range(groups)]
    return RoutedBody(tuple((k, hash((k, tag)), 1) for k in keys), groups, groups)


@contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Bytes allocated and still held since entering, as tracemalloc counts them."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield lambda: tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()


def test_routed_bodies_stay_within_their_budget_whatever_comes() -> None:
    # Bodies of 1,000 groups each, every one different (the `receiver` varied): kept by count,
    # 200 of them took 40 MiB; by bytes, the memo stays within its budget (the default's).
    budget = 32 * MIB
    bodies, config = RoutedBodies(budget), object()
    with traced() as grown:
        for n in range(200):
            bodies.put(bodies.name(str(n).encode()), config, _routed(1000, str(n)))
        held = grown()
    assert 0 < len(bodies) < 200
    assert bodies.memo.bytes <= budget
    assert held <= budget + MIB


def test_held_groups_stay_within_their_budget_whatever_comes() -> None:
    budget = 2 * MIB
    held = HeldGroups(budget)
    with traced() as grown:
        for n in range(30_000):
            held.hold(f"0:{{alertname=\"Disk\",instance=\"node-{n:06}.example:9100\"}}", n, hash(n))
        kept = grown()
    assert 0 < len(held) < 30_000
    assert held.memo.bytes <= budget
    assert kept <= budget + MIB // 4


@pytest.mark.parametrize("groups", [0, 1, 10, 1000])
def test_the_routed_body_estimate_is_not_below_the_truth(groups: int) -> None:
    bodies, config = RoutedBodies(1024 * MIB), object()
    with traced() as grown:
        for n in range(50):
            bodies.put(bodies.name(str(n).encode()), config, _routed(groups, str(n)))
        measured = grown()
    assert measured <= bodies.memo.bytes


@pytest.mark.parametrize("length", [1, 100, 2000])
def test_the_held_group_estimate_is_not_below_the_truth(length: int) -> None:
    held = HeldGroups(1024 * MIB)
    with traced() as grown:
        for n in range(5000):
            held.hold(f"{n:06}" + "x" * length, n + 1000, hash(n))
        measured = grown()
    assert measured <= held.memo.bytes


def test_an_entry_too_large_to_be_worth_it_is_not_kept_and_leaves_nothing_stale() -> None:
    bodies, config = RoutedBodies(MIB), object()
    huge = _routed(1000, "huge")  # about 240 KiB, more than a 64th of the budget
    bodies.put(b"huge", config, huge)
    assert (bodies.get(b"huge", config), bodies.memo.bytes) == (None, 0)

    held = HeldGroups(MIB)
    held.hold("g", 1, 11)
    held.hold("g" * (MIB // MemoBytes.MAX_SHARE), 2, 22)
    assert len(held) == 1
    held.hold("g", 1, 12)  # the new digest is kept; the old one never answers again
    assert (held.repeated("g", 11), held.repeated("g", 12)) == (None, 1)
    held.memo.resize(0)
    assert (len(held), held.memo.bytes) == (0, 0)
