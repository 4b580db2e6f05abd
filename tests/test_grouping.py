"""Dedup and grouping decisions, table-driven: what each webhook does to one group."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from receiver.core.model import Alert, AlertStatus, EventKind, KnownAlert, OpenGroup, PastEpisodes
from receiver.ingest.grouping import (
    AlertOutcome,
    HeldGroups,
    MemoBytes,
    RoutedBodies,
    RoutedBody,
    _held_bytes,
    _routed_bytes,
    apply,
    held_digest,
    unsettled_episodes,
    webhook_digest,
)
from receiver.routing.tree import group_key

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TA = NOW - timedelta(minutes=30)
T0 = NOW - timedelta(minutes=10)
T1 = NOW - timedelta(minutes=2)
T2 = NOW - timedelta(minutes=1)
F, R = AlertStatus.FIRING, AlertStatus.RESOLVED
ADDED, REFIRED, RESOLVED = AlertOutcome.ADDED, AlertOutcome.REFIRED, AlertOutcome.RESOLVED
MERGED, DUP, IGN = AlertOutcome.MERGED, AlertOutcome.DUPLICATE, AlertOutcome.IGNORED


def alert(fp: str, status: AlertStatus, starts: datetime = T0, ends: datetime = NOW) -> Alert:
    return Alert(fp, status, {"alertname": f"A{fp}"}, {}, starts, None if status is F else ends)


def group(*alerts: tuple[str, AlertStatus, datetime]) -> OpenGroup:
    return OpenGroup(7, {fp: KnownAlert(starts, status, None if status is F else NOW)
                         for fp, status, starts in alerts})


def held(fp: str, status: AlertStatus, starts: datetime, ends: datetime | None = None,
         ) -> OpenGroup:
    return OpenGroup(7, {fp: KnownAlert(starts, status, ends)})


CASES = [
    # (name, incoming, open group, past episodes, opens, resolves, outcomes, event kinds)
    (
        "first firing alert opens an incident",
        [alert("a", F)], None, {}, True, False,
        {ADDED: 1}, [EventKind.OPENED, EventKind.ALERT_ADDED],
    ),
    (
        "resend of the same episode changes nothing",
        [alert("a", F)], group(("a", F, T0)), {}, False, False, {DUP: 1}, [],
    ),
    (
        "a new alert joins the open incident",
        [alert("a", F), alert("b", F)], group(("a", F, T0)), {}, False, False,
        {DUP: 1, ADDED: 1}, [EventKind.ALERT_ADDED],
    ),
    (
        "one of two resolves: incident stays open",
        [alert("a", R), alert("b", F)], group(("a", F, T0), ("b", F, T0)), {}, False, False,
        {RESOLVED: 1, DUP: 1}, [EventKind.ALERT_RESOLVED],
    ),
    (
        "the last alert resolves: incident resolves",
        [alert("a", R), alert("b", R)], group(("a", R, T0), ("b", F, T0)), {}, False, True,
        {DUP: 1, RESOLVED: 1}, [EventKind.ALERT_RESOLVED, EventKind.RESOLVED],
    ),
    (
        "a lagging replica's firing resend after resolve is a duplicate",
        [alert("a", F)], group(("a", R, T0), ("b", F, T0)), {}, False, False, {DUP: 1}, [],
    ),
    (
        "a late firing resend of a resolved incident's episode does not reopen it",
        [alert("a", F)], None, {"a": [(T0, NOW)]}, False, False, {DUP: 1}, [],
    ),
    (
        "a resend of a resolved incident's resolution is a duplicate",
        [alert("a", R)], None, {"a": [(T0, NOW)]}, False, False, {DUP: 1}, [],
    ),
    (
        "a resolved alert never seen firing is ignored and opens nothing",
        [alert("a", R)], None, {}, False, False, {IGN: 1}, [],
    ),
    (
        "a new episode after the incident resolved opens a new incident",
        [alert("a", F, T1)], None, {"a": [(TA, T0)]}, True, False,
        {ADDED: 1}, [EventKind.OPENED, EventKind.ALERT_ADDED],
    ),
    (
        "a new episode of a resolved alert inside an open incident refires it",
        [alert("a", F, T1)], OpenGroup(7, {"a": KnownAlert(TA, R, T0), "b": KnownAlert(T0, F)}),
        {"a": [(TA, T0)]}, False, False, {REFIRED: 1}, [EventKind.ALERT_REFIRED],
    ),
]

# Every way a report can stand to the episode held for its fingerprint (point 1 of issue 12):
# held firing since T1, held resolved over [T1, T2], and held nowhere, each against firing and
# resolved reports that start before, at, inside and after the held range, with and without a
# past episode they fall into.
OVERLAP_CASES = [
    # held firing since T1: a firing report always overlaps it
    ("firing held, firing at the held start", held("a", F, T1), {}, alert("a", F, T1), DUP),
    ("firing held, firing later (a replica's start)", held("a", F, T1), {},
     alert("a", F, T2), DUP),
    ("firing held, firing earlier (Alertmanager's merge)", held("a", F, T1), {},
     alert("a", F, T0), MERGED),
    ("firing held, firing earlier but inside an episode that is over", held("a", F, T1),
     {"a": [(TA, T0)]}, alert("a", F, T0), DUP),
    ("firing held, firing earlier, after every past episode", held("a", F, T1),
     {"a": [(TA, TA + timedelta(minutes=1))]}, alert("a", F, T0), MERGED),
    # held firing since T1: a resolution ending at or after T1 ends it, whatever its start
    ("firing held, resolved with the held start", held("a", F, T1), {}, alert("a", R, T1),
     RESOLVED),
    ("firing held, resolved with an earlier start", held("a", F, T1), {},
     alert("a", R, T0), RESOLVED),
    ("firing held, resolved with a later start", held("a", F, T1), {}, alert("a", R, T2),
     RESOLVED),
    ("firing held, resolved ending exactly at the held start", held("a", F, T1), {},
     alert("a", R, T0, ends=T1), RESOLVED),
    ("firing held, resolution that ended before it began: old, never seen",
     held("a", F, T1), {}, alert("a", R, TA, ends=T0), IGN),
    ("firing held, resolution that ended before it began: old, seen",
     held("a", F, T1), {"a": [(TA, T0)]}, alert("a", R, TA, ends=T0), DUP),
    # held resolved over [T1, T2]
    ("resolved held, firing at its start (lagging replica)", held("a", R, T1, T2), {},
     alert("a", F, T1), DUP),
    ("resolved held, firing inside its range (lagging replica's start)",
     held("a", R, T1, T2), {}, alert("a", F, T1 + timedelta(seconds=20)), DUP),
    ("resolved held, firing before its start", held("a", R, T1, T2), {}, alert("a", F, T0),
     DUP),
    ("resolved held, firing after it ended: a new episode", held("a", R, T1, T2), {},
     alert("a", F, T2 + timedelta(seconds=1)), REFIRED),
    ("resolved held, its resolution again with another start", held("a", R, T1, T2), {},
     alert("a", R, T0, ends=NOW), DUP),
    ("resolved held, a resolution starting after it ended", held("a", R, T1, T2), {},
     alert("a", R, T2 + timedelta(seconds=1)), IGN),
    ("resolved held, a resolution that ended before it began", held("a", R, T1, T2), {},
     alert("a", R, TA, ends=T0), IGN),
    # held nowhere: the past decides
    ("not held, firing, no past", None, {}, alert("a", F, T1), ADDED),
    ("not held, firing inside a past episode", None, {"a": [(T0, T2)]}, alert("a", F, T1),
     DUP),
    ("not held, firing after every past episode", None, {"a": [(TA, T0)]},
     alert("a", F, T1), ADDED),
    ("not held, resolved, no past", None, {}, alert("a", R, T1), IGN),
    ("not held, resolved after every past episode", None, {"a": [(T0, T1)]},
     alert("a", R, T1 + timedelta(seconds=30)), IGN),
    ("not held, resolved overlapping a past episode's end", None, {"a": [(T0, T1)]},
     alert("a", R, T0 + timedelta(minutes=1)), DUP),
]


@pytest.mark.parametrize(
    ("incoming", "open_group", "past", "opens", "resolves", "outcomes", "kinds"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_apply(
    incoming: list[Alert],
    open_group: OpenGroup | None,
    past: dict[str, PastEpisodes],
    opens: bool,
    resolves: bool,
    outcomes: dict[AlertOutcome, int],
    kinds: list[EventKind],
) -> None:
    change = apply(incoming, open_group, past, NOW)
    assert change.opens is opens
    assert change.resolves is resolves
    assert change.outcomes == outcomes
    assert [e.kind for e in change.events] == kinds
    assert all(e.at == NOW for e in change.events)


@pytest.mark.parametrize(
    ("open_group", "past", "incoming", "outcome"),
    [case[1:] for case in OVERLAP_CASES],
    ids=[case[0] for case in OVERLAP_CASES],
)
def test_overlap(
    open_group: OpenGroup | None,
    past: dict[str, PastEpisodes],
    incoming: Alert,
    outcome: AlertOutcome,
) -> None:
    change = apply([incoming], open_group, past, NOW)
    assert change.outcomes == {outcome: 1}
    # Nothing but a new episode (opened or refired) can page: no merge or resolution opens.
    assert change.opens is (outcome is ADDED)
    assert bool(change.writes) is (outcome in (ADDED, REFIRED, RESOLVED, MERGED))


def test_an_earlier_start_moves_the_held_episode_back_and_pages_nobody() -> None:
    change = apply([alert("a", F, T0)], held("a", F, T1), {}, NOW)
    assert (change.opens, change.resolves) == (False, False)
    assert change.moves == [("a", T1, T0)]
    assert [a.starts_at for a in change.writes] == [T0]
    assert change.held["a"] == KnownAlert(T0, F)
    [event] = change.events
    assert event.kind is EventKind.ALERT_MERGED
    assert event.detail["starts_at"] == T0.isoformat()
    assert event.detail["previous_starts_at"] == T1.isoformat()
    # The held digest follows the new start: the merged report is now the resend it matches.
    assert held_digest(change.held) == webhook_digest([alert("a", F, T0)])
    assert held_digest(change.held) != webhook_digest([alert("a", F, T1)])


def test_a_resolution_with_another_start_is_stored_under_the_held_one() -> None:
    change = apply([alert("a", R, T0)], held("a", F, T1), {}, NOW)
    assert change.resolves
    assert change.moves == []
    [written] = change.writes
    assert (written.starts_at, written.status, written.ends_at) == (T1, R, NOW)
    assert change.events[0].detail["reported_starts_at"] == T0.isoformat()
    assert change.held["a"] == KnownAlert(T1, R, NOW)


def test_duplicates_write_nothing() -> None:
    change = apply([alert("a", F)], group(("a", F, T0)), {}, NOW)
    assert change.writes == []
    assert not change.changed


def test_events_name_the_alert() -> None:
    change = apply([alert("a", F)], None, {}, NOW)
    assert change.events[1].detail == {
        "fingerprint": "a", "alertname": "Aa", "starts_at": T0.isoformat(),
    }


_TIMES = [TA, T0, T1, T2, NOW]
_alerts = st.lists(
    st.tuples(st.sampled_from("abc"), st.sampled_from([F, R]), st.sampled_from(_TIMES[:4]),
              st.sampled_from(_TIMES)),
    min_size=1, max_size=6,
)
_held = st.dictionaries(
    st.sampled_from("abc"),
    st.tuples(st.sampled_from([F, R]), st.sampled_from(_TIMES[:4]), st.sampled_from(_TIMES)),
)
_past = st.dictionaries(
    st.sampled_from("abc"),
    st.lists(st.tuples(st.sampled_from(_TIMES), st.sampled_from(_TIMES)).map(sorted)
             .map(tuple), max_size=3),
)


def _open_group(held: dict[str, tuple[AlertStatus, datetime, datetime]]) -> OpenGroup | None:
    if not held:
        return None
    return OpenGroup(7, {fp: KnownAlert(s, st_, None if st_ is F else max(s, e))
                         for fp, (st_, s, e) in held.items()})


@given(incoming=_alerts, held=_held, history=_past)
def test_only_unsettled_episodes_need_the_history(
    incoming: list[tuple[str, AlertStatus, datetime, datetime]],
    held: dict[str, tuple[AlertStatus, datetime, datetime]],
    history: dict[str, list[tuple[datetime, datetime]]],
) -> None:
    """The ingest path looks up the past only for unsettled fingerprints: `apply` must decide
    exactly as it would with the group's whole history."""
    alerts = [alert(fp, status, starts, ends) for fp, status, starts, ends in incoming]
    open_group = _open_group(held)
    wanted = set(unsettled_episodes(alerts, open_group))
    narrowed = {fp: episodes for fp, episodes in history.items() if fp in wanted}
    full = apply(alerts, open_group, history, NOW)
    narrow = apply(alerts, open_group, narrowed, NOW)
    assert (narrow.opens, narrow.resolves, narrow.outcomes, narrow.writes, narrow.moves,
            narrow.events) == (
        full.opens, full.resolves, full.outcomes, full.writes, full.moves, full.events,
    )


@given(incoming=_alerts, held=_held.filter(bool))
def test_a_webhook_matching_the_held_digest_changes_nothing(
    incoming: list[tuple[str, AlertStatus, datetime, datetime]],
    held: dict[str, tuple[AlertStatus, datetime, datetime]],
) -> None:
    """The resend shortcut skips `apply` when the digests match: `apply` must then find every
    alert a duplicate; and a webhook that repeats the held alerts, in any order, must match."""
    alerts = [alert(fp, status, starts, ends) for fp, status, starts, ends in incoming]
    open_group = _open_group(held)
    assert open_group is not None
    if webhook_digest(alerts) == held_digest(open_group.alerts):
        change = apply(alerts, open_group, {}, NOW)
        assert (change.writes, change.moves, change.events) == ([], [], [])
        assert change.outcomes == {DUP: len(alerts)}
    repeat = [alert(fp, s, t, e) for fp, (s, t, e) in reversed(held.items())]
    assert webhook_digest(repeat) == held_digest(open_group.alerts)


@given(incoming=_alerts, held=_held)
# Found by Hypothesis: a resolution, then a later firing report in the same webhook, refires.
@example(incoming=[("a", R, T0, NOW), ("a", F, T1, NOW)], held={"a": (F, T0, NOW)})
def test_a_changed_start_is_never_taken_for_a_resend_or_a_new_episode(
    incoming: list[tuple[str, AlertStatus, datetime, datetime]],
    held: dict[str, tuple[AlertStatus, datetime, datetime]],
) -> None:
    """A firing report of a fingerprint held firing never opens or refires anything, and
    when its start is earlier than the held one it is written (never a duplicate). A webhook
    that also resolves the fingerprint may refire it after the resolution, so the first claim
    holds for webhooks that only report firing."""
    alerts = [alert(fp, status, starts, ends) for fp, status, starts, ends in incoming]
    open_group = _open_group(held)
    change = apply(alerts, open_group, {}, NOW)
    held_firing = {fp for fp, (s, _, _) in held.items() if s is F}
    reported = {a.fingerprint for a in alerts}
    if reported <= held_firing and all(a.status is F for a in alerts):
        assert AlertOutcome.REFIRED not in change.outcomes
        assert AlertOutcome.ADDED not in change.outcomes
    for fp in held_firing & reported:
        firing = [a for a in alerts if a.fingerprint == fp and a.status is F]
        if firing and len([a for a in alerts if a.fingerprint == fp]) == 1:
            merged = firing[0].starts_at < held[fp][1]
            assert ((fp, held[fp][1], firing[0].starts_at) in change.moves) is merged


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
    assert held.repeated("g1", webhook_digest([alert("a", F)])) == (1, 0)
    assert held.repeated("g1", webhook_digest([alert("a", R)])) is None
    assert held.repeated("g2", webhook_digest([alert("a", F)])) is None
    held.forget("g1")
    assert held.repeated("g1", webhook_digest([alert("a", F)])) is None


def test_held_groups_drop_the_least_recently_held_beyond_the_budget() -> None:
    digest = held_digest(group(("a", F, T0)).alerts)
    one = _held_bytes("g000", (1, digest, 0))
    held = HeldGroups(100 * one)  # room for a hundred keys of this length
    for n in range(100):
        held.hold(f"g{n:03}", n, digest)
    held.hold("g000", 0, digest)  # held again: now the newest
    held.hold("g100", 100, digest)
    assert (len(held), held.memo.bytes) == (100, 100 * one)
    resend = webhook_digest([alert("a", F)])
    assert held.repeated("g001", resend) is None
    kept = [held.repeated(k, resend) for k in ("g000", "g002", "g100")]
    assert kept == [(0, 0), (2, 0), (100, 0)]


def test_routed_bodies_are_named_by_content_under_a_key_of_their_own() -> None:
    bodies, other = RoutedBodies(), RoutedBodies()
    body = b'{"alerts": []}'
    assert bodies.name(body) == bodies.name(bytes(bytearray(body)))
    assert bodies.name(body) != bodies.name(body + b" ")
    assert 0 <= bodies.name(body) < 2**128  # 128 bits: no chance collision in any lifetime
    # Keyed, each half: a name says nothing outside, and neither half is the body's alone.
    assert _differ_in_both_halves(bodies.name(body), bodies.name(body + b" "))
    assert _differ_in_both_halves(bodies.name(body), other.name(body))


def _differ_in_both_halves(one: int, two: int) -> bool:
    low = 2**64 - 1
    return one >> 64 != two >> 64 and one & low != two & low


def test_routed_bodies_names_are_keyed_even_where_the_hash_seed_is_fixed() -> None:
    """PYTHONHASHSEED fixes the interpreter's hash key; the memo's own prefixes stay random."""
    code = ("from receiver.ingest.grouping import RoutedBodies;"
            " print(RoutedBodies().name(b'{\"alerts\": []}'))")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    names = [int(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                capture_output=True, text=True).stdout) for _ in range(2)]
    assert _differ_in_both_halves(*names)


def test_routed_bodies_are_forgotten_together_when_the_config_changes() -> None:
    """Incidents.use_config clears them: a reload may route the same bytes otherwise."""
    bodies = RoutedBodies()
    routed = [RoutedBody((("g", 1, 1),), 1, 1), RoutedBody((("g", 2, 1),), 1, 0)]
    bodies.put(1, routed[0])
    bodies.put(2, routed[1])
    assert (len(bodies), bodies.get(1)) == (2, routed[0])
    bodies.clear()
    assert (len(bodies), bodies.get(1), bodies.get(2)) == (0, None, None)
    assert bodies.memo.bytes == 0


def test_routed_bodies_drop_the_least_recently_put_beyond_the_budget() -> None:
    routed = RoutedBody((("g", 1, 1),), 1, 1)
    bodies = RoutedBodies(2 * MemoBytes.MAX_SHARE * _routed_bytes(0, routed))
    for n in range(2 * MemoBytes.MAX_SHARE):
        bodies.put(n, routed)
    bodies.put(0, routed)  # put again: now the newest
    bodies.put(2**100, routed)
    assert [bodies.get(n) is not None for n in (0, 1, 2**100)] == [
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
    bodies = RoutedBodies(budget)
    with traced() as grown:
        for n in range(200):
            bodies.put(bodies.name(str(n).encode()), _routed(1000, str(n)))
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
    bodies = RoutedBodies(1024 * MIB)
    with traced() as grown:
        for n in range(50):
            bodies.put(bodies.name(str(n).encode()), _routed(groups, str(n)))
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
    bodies = RoutedBodies(MIB)
    huge = _routed(1000, "huge")  # about 240 KiB, more than a 64th of the budget
    bodies.put(b"huge", huge)
    assert (bodies.get(b"huge"), bodies.memo.bytes) == (None, 0)

    held = HeldGroups(MIB)
    held.hold("g", 1, 11)
    held.hold("g" * (MIB // MemoBytes.MAX_SHARE), 2, 22)
    assert len(held) == 1
    held.hold("g", 1, 12)  # the new digest is kept; the old one never answers again
    assert (held.repeated("g", 11), held.repeated("g", 12)) == (None, (1, 0))
    held.memo.resize(0)
    assert (len(held), held.memo.bytes) == (0, 0)


def test_an_events_start_is_the_alerts_start_in_iso_8601_whatever_its_offset() -> None:
    """The start's text is remembered per UTC instant; an equal instant at another offset
    (equal as datetimes, so one key) keeps its own text."""
    plus_two = timezone(timedelta(hours=2))
    for starts in (T0, T0.astimezone(plus_two), T0, T1):
        [event] = [e for e in apply([alert("a", F, starts)], group(), {}, NOW).events
                   if e.kind is EventKind.ALERT_ADDED]
        assert event.detail["starts_at"] == starts.isoformat()

