"""Incidents that Alertmanager stopped talking about.

Alertmanager sends every firing group again each `repeat_interval`. If it restarts and loses
its notification log, or a route is edited away, the `resolved` never comes and the incident
would stay open forever. A route's `stale_after` (inherited like Alertmanager's timers, and
longer than its repeat_interval) bounds that: an open incident none of whose alerts was in any
webhook for that long is stale. ackd then tells whoever holds it and, where the route says
`stale_action: resolve`, resolves it as `stale`.

Whether an incident was reported lately is known at two speeds. Each webhook that reaches an
incident's group notes the instant in memory (`Reports`), including the resends answered
without a transaction. A durable deadline (kind `stale`, its key the rule) waits in the store,
armed when the incident is first seen by a transaction; when it comes due, `check` reads the
memory: reported since, it is moved to the last report plus `stale_after`; not, the incident is
stale. After a restart the memory is empty and counts from the start, so a restart can only
delay the verdict, never bring it early.

Replicas sharing a database also save the reports to the store (`stale_reports`), since the
replica whose timer takes the deadline may not be the one a load balancer sent the webhooks
to: each replica writes the reports it noted, once a second, in one statement (a write per
webhook cost a quarter of a resend's throughput), and the check takes the stored report out
and counts the later of it and its own memory. A report reaches the store up to that second
late, so on a shared store an incident is called stale only `SAVE_GRACE` past its due time
(later, never earlier). The deadline is taken by one replica, so the note is sent once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from receiver.core.frozen import frozen
from receiver.core.model import STALE_ACTOR


class StaleAction(StrEnum):
    NOTIFY = "notify"  # a timeline event and one message to whoever holds the incident
    RESOLVE = "resolve"  # that, and the incident is resolved by `stale`


RESOLVED_BY = STALE_ACTOR
# Replicas sharing a store save their reports this often, and a stale verdict waits this much
# longer than stale_after for the reports another replica may not have saved yet.
SAVE_EVERY = timedelta(seconds=1)
SAVE_GRACE = 2 * SAVE_EVERY


@frozen(slots=True)
class StaleRule:
    """A route's staleness setting, carried in its deadline's key: the incident keeps the rule
    it was armed with, as it keeps its policy."""

    after: timedelta
    action: StaleAction = StaleAction.NOTIFY

    def __post_init__(self) -> None:
        if self.after <= timedelta(0):
            raise ValueError(f"stale_after must be longer than 0s, got {self.after}")

    @property
    def key(self) -> str:
        return f"{self.after // timedelta(microseconds=1)}:{self.action.value}"

    @classmethod
    def from_key(cls, key: str) -> StaleRule:
        try:
            micros, action = key.split(":")
            return cls(timedelta(microseconds=int(micros)), StaleAction(action))
        except ValueError as exc:
            raise ValueError(f"stale deadline key {key!r} is not MICROSECONDS:ACTION") from exc


def check(last_reported: datetime, rule: StaleRule, now: datetime) -> datetime | None:
    """When to look again, or None if the incident is stale at `now`."""
    due = last_reported + rule.after
    return due if due > now else None


class Reports:
    """When a webhook last reached each open incident, since `started_at` (in memory)."""

    def __init__(self, started_at: datetime) -> None:
        self.started_at = started_at
        self._last: dict[int, datetime] = {}
        # Reports not yet saved to a store other replicas share (only filled there), and the
        # incidents whose reports are saved: those with a stale deadline, once one of their
        # webhooks went through a transaction here (later resends may be answered from memory).
        self._unsaved: dict[int, datetime] = {}
        self._saved: set[int] = set()

    def __len__(self) -> int:
        return len(self._last)

    def seen(self, incident_id: int, at: datetime) -> None:
        self._last[incident_id] = at
        if incident_id in self._saved:
            self.to_save(incident_id, at)

    def last(self, incident_id: int) -> datetime:
        """The last report, or the start when none came since: after a restart, what came
        before it is not known."""
        return max(self._last.get(incident_id, self.started_at), self.started_at)

    def forget(self, incident_id: int) -> None:
        self._last.pop(incident_id, None)
        self._unsaved.pop(incident_id, None)
        self._saved.discard(incident_id)

    def save(self, incident_id: int, at: datetime) -> None:
        """From now on this incident's reports are saved for the other replicas (`seen`
        queues each); this one too."""
        self._saved.add(incident_id)
        self.to_save(incident_id, at)

    def to_save(self, incident_id: int, at: datetime) -> None:
        """A report the other replicas should know of (saved by the next `unsaved`)."""
        self._unsaved[incident_id] = max(self._unsaved.get(incident_id, at), at)

    def unsaved(self) -> dict[int, datetime]:
        """The reports to save now, taken out (`save_failed` puts them back)."""
        pending, self._unsaved = self._unsaved, {}
        return pending

    def save_failed(self, pending: Mapping[int, datetime]) -> None:
        for incident_id, at in pending.items():
            self.to_save(incident_id, at)
