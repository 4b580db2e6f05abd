"""Deduplication and grouping: what one webhook's alerts do to one incident group.

Alertmanager resends the whole group every group_interval/repeat_interval, and each replica of
an HA pair sends it too. An alert episode is a fingerprint over a time range, not a fixed
(fingerprint, startsAt): Alertmanager merges an alert posted again while active into the one
it holds and keeps the earliest start (`types.Alert.Merge`), Prometheus HA replicas post their
own starts, and the replicas of a clustered pair may each report theirs. So a report whose
range overlaps the episode we hold is that episode: a firing one with an earlier start moves
the start back, a resolved one that ended at or after the held start ends it, whatever start
it carries, and only a resolution that ended before the held episode began is an older one.
Seeing an episode again in the state we already hold is a duplicate and changes nothing. The
decision is pure; the store loads what it needs (the group's open incident, the past episodes
of the fingerprints the open incident cannot decide alone) and applies the returned
GroupChange in one transaction.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Generic, TypeVar

from receiver.core.frozen import frozen, replace
from receiver.core.model import (
    ALERTMANAGER_ACTOR,
    Alert,
    AlertStatus,
    EventKind,
    KnownAlert,
    OpenGroup,
    PastEpisodes,
    TimelineEvent,
)
from receiver.routing.tree import Match, Route, route_all

K = TypeVar("K")
V = TypeVar("V")

# What the two memos below may take together, by their estimate: 32 MiB each.
DEFAULT_MEMO_BYTES = 64 * 1024 * 1024


class AlertOutcome(StrEnum):
    ADDED = "added"
    REFIRED = "refired"
    RESOLVED = "resolved"
    MERGED = "merged"  # the held episode reported with an earlier start: the start moves back
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # resolved or stale, and never seen firing: nothing to act on


@dataclass(slots=True)
class GroupChange:
    """What the store must write. `opens` means a new incident begins with these alerts;
    `moves` re-keys held alerts whose episode start moved back (fingerprint, from, to) before
    `writes` are stored under the episode's start."""

    opens: bool = False
    resolves: bool = False
    writes: list[Alert] = field(default_factory=list)
    moves: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    events: list[TimelineEvent] = field(default_factory=list)
    outcomes: dict[AlertOutcome, int] = field(default_factory=dict)
    held: dict[str, KnownAlert] = field(default_factory=dict)  # by fingerprint, once written

    @property
    def changed(self) -> bool:
        return bool(self.writes)


def apply(
    alerts: Sequence[Alert],
    open_group: OpenGroup | None,
    past: Mapping[str, PastEpisodes],
    now: datetime,
) -> GroupChange:
    """Decide what `alerts` (all routed to one group) change.

    `past` holds, by fingerprint, the episodes of these fingerprints that are over in any
    incident of this group (open or resolved): a late resend from a lagging replica must not
    reopen anything. It is scoped to the group because a `continue` route puts the same
    episode into several groups, each with its own incident. Only the fingerprints
    `unsettled_episodes` names need it.
    """
    change = GroupChange()
    current = dict(open_group.alerts) if open_group else {}
    outcomes = change.outcomes
    for alert in alerts:
        fp = alert.fingerprint
        held = current.get(fp)
        outcome = _by_held(alert, held)
        if outcome is None:
            outcome = _by_history(alert, held, past.get(fp, ()))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome is AlertOutcome.DUPLICATE or outcome is AlertOutcome.IGNORED:
            continue
        if open_group is None and not change.opens:
            change.opens = True
            change.events.append(_event(now, EventKind.OPENED, alert))
        written = alert
        if outcome is AlertOutcome.MERGED:
            assert held is not None
            change.moves.append((fp, held.starts_at, alert.starts_at))
            event = _event(now, EventKind.ALERT_MERGED, alert,
                           previous_starts_at=held.starts_at.isoformat())
        elif outcome is AlertOutcome.RESOLVED:
            assert held is not None
            # Stored under the episode's start, whatever start this report carries.
            if alert.starts_at != held.starts_at:
                written = replace(alert, starts_at=held.starts_at)
                event = _event(now, EventKind.ALERT_RESOLVED, written,
                               reported_starts_at=alert.starts_at.isoformat())
            else:
                event = _event(now, EventKind.ALERT_RESOLVED, alert)
        else:
            event = _event(now, _EVENT_OF[outcome], alert)
        current[fp] = KnownAlert(written.starts_at, written.status, written.ends_at)
        change.writes.append(written)
        change.events.append(event)
    has_incident = open_group is not None or change.opens
    if has_incident and change.changed and _all_resolved(current):
        change.resolves = True
        change.events.append(TimelineEvent(now, EventKind.RESOLVED, ALERTMANAGER_ACTOR))
    change.held = current
    return change


def unsettled_episodes(alerts: Sequence[Alert], open_group: OpenGroup | None) -> list[str]:
    """Fingerprints for which `apply` needs the past episodes: those whose report the open
    incident's own record cannot decide. The episode the open incident holds decides every
    report that overlaps it, and that is every alert of a resend, Alertmanager's most
    frequent webhook, so a resend needs no look-up through the group's history. A
    fingerprint reported twice in one webhook is looked up too: its first report may change
    what the second is measured against."""
    current = open_group.alerts if open_group is not None else {}
    unsettled = []
    seen = Counter(alert.fingerprint for alert in alerts)
    for alert in alerts:
        fp = alert.fingerprint
        if seen[fp] > 1 or _by_held(alert, current.get(fp)) is None:
            unsettled.append(fp)
    return unsettled


_EVENT_OF = {
    AlertOutcome.ADDED: EventKind.ALERT_ADDED,
    AlertOutcome.REFIRED: EventKind.ALERT_REFIRED,
    AlertOutcome.RESOLVED: EventKind.ALERT_RESOLVED,
}


def _by_held(alert: Alert, held: KnownAlert | None) -> AlertOutcome | None:
    """The outcome the held episode alone decides, or None when the past must be read: a
    firing report that starts before the held firing episode may belong to an episode that
    is over (a lagging replica), and a report of a fingerprint not held, or a resolution that
    ended before the held episode began, is the past's to judge."""
    if held is None:
        return None
    start = alert.starts_at
    if held.status is AlertStatus.FIRING:
        if alert.status is AlertStatus.FIRING:
            # Both ranges run on: they overlap. A later start is the same episode as held.
            return AlertOutcome.DUPLICATE if start >= held.starts_at else None
        # A resolution ending at or after the held start ends the held episode.
        return AlertOutcome.RESOLVED if _end(start, alert.ends_at) >= held.starts_at else None
    end = held.end
    if alert.status is AlertStatus.FIRING:
        # Firing again after the held episode ended is a new episode; before, a lagging view.
        return AlertOutcome.REFIRED if start > end else AlertOutcome.DUPLICATE
    if start > end:
        return AlertOutcome.IGNORED  # the resolution of an episode never seen firing
    return AlertOutcome.DUPLICATE if _end(start, alert.ends_at) >= held.starts_at else None


def _by_history(alert: Alert, held: KnownAlert | None, past: PastEpisodes) -> AlertOutcome:
    """The outcome of a report the held episode could not decide, read against the past."""
    start = alert.starts_at
    if alert.status is AlertStatus.FIRING:
        # `past and`: a fingerprint new to the group (each alert of a new one) has no past,
        # and any() over none still makes its generator, 2,400 instructions an alert.
        if past and any(start <= end for _, end in past):
            # An episode that is over, seen firing by a lagging replica.
            return AlertOutcome.DUPLICATE
        if held is None:
            return AlertOutcome.ADDED
        # Only a firing held episode leaves a firing report undecided: it starts earlier.
        return AlertOutcome.MERGED
    end = _end(start, alert.ends_at)
    seen = any(start <= e and end >= s for s, e in past)
    return AlertOutcome.DUPLICATE if seen else AlertOutcome.IGNORED


def _end(starts_at: datetime, ends_at: datetime | None) -> datetime:
    return starts_at if ends_at is None or ends_at < starts_at else ends_at


def _all_resolved(alerts: Mapping[str, KnownAlert]) -> bool:
    resolved = AlertStatus.RESOLVED
    return all(a.status is resolved for a in alerts.values())


def _event(now: datetime, kind: EventKind, alert: Alert, **more: str) -> TimelineEvent:
    detail = {
        "fingerprint": alert.fingerprint,
        "alertname": alert.labels.get("alertname", ""),
        "starts_at": _iso(alert.starts_at),
        **more,
    }
    return TimelineEvent(now, kind, "alertmanager", detail)




def _iso(when: datetime) -> str:
    """`when.isoformat()`, remembered for UTC instants: the alerts of a group mostly share one
    start, resent for as long as they fire, and the text of an aware datetime costs about
    10,000 instructions, as much as the rest of its event. Measured when it came (131043c):
    3% of the loop's instructions on the ingest path, where runs of one tree agree within
    0.2%. escalation/codec.py keeps a memo of its own for the states' times."""
    return _utc_iso(when) if when.tzinfo is UTC else when.isoformat()


@lru_cache(maxsize=1024)
def _utc_iso(when: datetime) -> str:
    return when.isoformat()


def held_digest(held: Mapping[str, KnownAlert]) -> int:
    """The digest of what an open incident holds (see HeldGroups)."""
    return _digest(frozenset((fp, known.starts_at, known.status) for fp, known in held.items()))


def webhook_digest(alerts: Sequence[Alert]) -> int:
    """The digest of one group's alerts in a webhook: equal to its incident's held_digest
    when the webhook repeats that incident's alerts, each in the episode and status held, so
    that every alert of it is a duplicate."""
    return _digest(frozenset((a.fingerprint, a.starts_at, a.status) for a in alerts))


def _digest(episodes: frozenset[tuple[str, datetime, AlertStatus]]) -> int:
    # Python hashes strings and datetimes with SipHash under a key drawn at start, so no one
    # can make two states collide on purpose, and by chance a real change passes for a resend
    # once in 2**64 comparisons. An alert sent twice counts once: both copies are duplicates.
    return hash(episodes)


class HeldGroups:
    """For the groups webhooks reached lately: the open incident, the digest of the alerts it
    holds, as committed, and the incident row's version then (see `Store.open_versions`).

    Alertmanager sends every group again each group_interval, and each replica of an HA pair
    does, so most webhooks repeat what is already stored. A group whose webhook digest matches
    is known to change nothing (see `apply`: an episode held in the same status is a duplicate),
    and a webhook whose every group matches needs no transaction at all. Entries are only ever
    set after their transaction committed and dropped when the incident resolves; the oldest
    go first beyond `budget` bytes (an estimate, see MemoBytes), and a missing one only costs
    the ordinary path. Where other replicas write the same database, an entry answers only
    while its incident's row still has the version remembered: every change a resend's answer
    depends on (its alerts, its state, a stale verdict) writes that row.
    """

    def __init__(self, budget: int = DEFAULT_MEMO_BYTES // 2) -> None:
        self._groups: MemoBytes[str, tuple[int, int, int]] = MemoBytes(budget, _held_bytes)

    def __len__(self) -> int:
        return len(self._groups)

    @property
    def memo(self) -> MemoBytes[str, tuple[int, int, int]]:
        return self._groups

    def hold(self, group_key: str, incident_id: int, digest: int, version: int = 0) -> None:
        self._groups.put(group_key, (incident_id, digest, version))

    def forget(self, group_key: str) -> None:
        self._groups.pop(group_key)

    def repeated(self, group_key: str, digest: int) -> tuple[int, int] | None:
        """The open incident's id and row version if the alerts whose webhook_digest is
        `digest` repeat exactly what it holds, else None."""
        entry = self._groups.get(group_key)
        if entry is None or entry[1] != digest:
            return None
        return entry[0], entry[2]


@frozen(slots=True)
class RoutedBody:
    """A webhook body parsed and routed: each group's key, webhook digest and alert count, and
    the webhook's own alert counts. What a resend needs to be answered (see RoutedBodies)."""

    groups: tuple[tuple[str, int, int], ...]
    alerts: int
    firing: int


class RoutedBodies:
    """Webhook bodies parsed and routed before, under the current config, by their name.

    An Alertmanager sends an unchanged group as the same bytes each time, so a resend need not
    be parsed and routed again: routing is a function of the labels and the config, and the
    memo is emptied when the config changes. Whether the groups still repeat what is committed
    is HeldGroups' to say, at each use. A body is named by 128 bits: Python's hash (SipHash-1-3
    under a key drawn at start, as the held digests) of the body behind each of two prefixes of
    16 random bytes drawn for the memo. No one can make two bodies share a name without the
    prefixes, which never leave the process (even where PYTHONHASHSEED fixes the interpreter's
    key), and by chance it never happens. It is the body's one pass over all its bytes besides
    the parse, so it is the cheapest keyed hash at hand: a keyed BLAKE2b (the reference C
    implementation in 3.11) took 66,000 instructions for a 4 KiB body, these two 32,000. The
    oldest go first beyond `budget` bytes; a body routed to so many groups that it alone would
    take a large share is not remembered (see MemoBytes).
    """

    def __init__(self, budget: int = DEFAULT_MEMO_BYTES // 2) -> None:
        self._high = os.urandom(16)
        self._low = os.urandom(16)
        self._bodies: MemoBytes[int, RoutedBody] = MemoBytes(budget, _routed_bytes)

    def __len__(self) -> int:
        return len(self._bodies)

    @property
    def memo(self) -> MemoBytes[int, RoutedBody]:
        return self._bodies

    def name(self, body: bytes) -> int:
        """The body's name, an int of 128 bits."""
        return (hash(self._high + body) & _BITS64) << 64 | hash(self._low + body) & _BITS64

    def get(self, name: int) -> RoutedBody | None:
        return self._bodies.get(name)

    def put(self, name: int, routed: RoutedBody) -> None:
        self._bodies.put(name, routed)

    def clear(self) -> None:
        """Forget every body: they were routed by a route tree a reload replaced."""
        self._bodies.clear()


_BITS64 = (1 << 64) - 1

# The memos' size estimates, in bytes, from what CPython 3.11 allocates on 64 bits (pymalloc
# rounds every object up to 16 bytes). A dict slot costs its entry and index, and a dict grows
# by doubling. tests/test_grouping.py holds each estimate above what tracemalloc measures.
_SLOT = 64
_HELD_ENTRY = _SLOT + 64 + 32 + 48 + 32  # (id, digest, version) tuple, id, digest, version
# The name is an int of 128 bits (48 bytes; 64 counted, as for the 16-byte digest it was).
_BODY_ENTRY = _SLOT + 64 + 80 + 48 + 2 * 32  # name, RoutedBody, groups tuple, counts
_BODY_GROUP = 8 + 64 + 48 + 32  # slot in groups, (key, digest, count) tuple, digest, count


def _str_bytes(text: str) -> int:
    return -(-sys.getsizeof(text) // 16) * 16


def _held_bytes(group_key: str, _: tuple[int, int, int]) -> int:
    return _HELD_ENTRY + _str_bytes(group_key)


def _routed_bytes(_: int, routed: RoutedBody) -> int:
    return _BODY_ENTRY + sum(_BODY_GROUP + _str_bytes(key) for key, _, _ in routed.groups)


class MemoBytes(Generic[K, V]):
    """Entries newest last, bounded by an estimate of the bytes they take: beyond `budget` the
    oldest go. An entry estimated at more than 1/MAX_SHARE of the budget is not kept at all:
    it would push out many others to save the work of one request, and an attacker could
    flush the memo with a few of them."""

    MAX_SHARE = 64

    def __init__(self, budget: int, size_of: Callable[[K, V], int]) -> None:
        self.budget = budget
        self.bytes = 0
        self._size_of = size_of
        self._entries: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Set `key` as the newest entry, unless it is too large to keep (then it is gone)."""
        self.pop(key)  # re-entered last, so evicted last; and never left stale
        size = self._size_of(key, value)
        if size > self.budget // self.MAX_SHARE:
            return
        self._entries[key] = value
        self.bytes += size
        self._shrink()

    def pop(self, key: K) -> None:
        value = self._entries.pop(key, None)
        if value is not None:
            self.bytes -= self._size_of(key, value)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def resize(self, budget: int) -> None:
        self.budget = budget
        self._shrink()

    def _shrink(self) -> None:
        entries = self._entries
        while self.bytes > self.budget and entries:
            self.pop(next(iter(entries)))


def routed_body(alerts: Sequence[Alert], groups: Mapping[str, RoutedGroup]) -> RoutedBody:
    firing = sum(1 for a in alerts if a.status is AlertStatus.FIRING)
    return RoutedBody(
        tuple((key, webhook_digest(g.alerts), len(g.alerts)) for key, g in groups.items()),
        len(alerts),
        firing,
    )


@dataclass(slots=True)
class RoutedGroup:
    """The alerts of one webhook that fall into one group, each with its route match."""

    match: Match
    alerts: list[Alert] = field(default_factory=list)
    severities: list[str] = field(default_factory=list)


def partition(root: Route, alerts: Sequence[Alert]) -> dict[str, RoutedGroup]:
    """Route every alert and collect them by group key; `continue` routes add more groups."""
    groups: dict[str, RoutedGroup] = {}
    routed = route_all(root, [alert.labels for alert in alerts])
    for alert, matches in zip(alerts, routed, strict=True):
        for match in matches:
            group = groups.get(match.group_key)
            if group is None:
                group = groups[match.group_key] = RoutedGroup(match)
            group.alerts.append(alert)
            group.severities.append(match.severity)
    return groups
