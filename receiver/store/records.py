"""What the store takes and hands back: plain data, the same for every implementation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

import msgspec

from receiver.core.frozen import frozen
from receiver.core.model import IncidentState, MessageReason
from receiver.delivery.noise import ChannelHistory


class Shared(StrEnum):
    """State that the API changes at run time and every replica holds in memory, so that no
    decision waits for a read: a commit that changes it tells the other replicas sharing the
    store (PostgreSQL's NOTIFY), which read it again. On SQLite there are no others."""

    MAINTENANCE = "maintenance"  # the API's maintenance windows
    ONCALL = "oncall"  # run-time on-call overrides and swaps


@frozen(slots=True)
class NewIncident:
    group_key: str
    route_id: str
    team: str
    severity: str
    policy: str
    group_labels: dict[str, str]
    opened_at: datetime
    external_url: str
    summary: str
    truncated_alerts: int = 0


class IncidentFacts(Protocol):
    """What a dispatcher pass reads of a leased row's incident to decide about the row: an
    Incident is one; the SQLite store hands a lighter IncidentBrief (see lease_and_decide)."""

    @property
    def id(self) -> int: ...

    @property
    def state(self) -> IncidentState: ...

    @property
    def severity(self) -> str: ...


@frozen(slots=True)
class IncidentBrief:
    """An incident's id, state and severity: all a pass decides by. Decoding the whole row
    (its labels' JSON, five times, two enums) was 50,000 instructions a leased row, of about
    180,000, and most leased rows are deferred to a bundle, never rendered."""

    id: int
    state: IncidentState
    severity: str


@frozen(slots=True)
class ArmedDeadline:
    id: int
    incident_id: int
    due: datetime
    kind: str
    key: str


class OutboxMessage(msgspec.Struct, frozen=True, kw_only=True):
    """What an outbox row asks for: one message to one contact of one recipient.

    Written by the responder, read by the dispatcher; store/codec.py is the one place that
    encodes and decodes it. It names the contact (the index in the user's `contacts` or the
    channel's `urls`, and its URL's digest), never its URL: a URL carries credentials (see
    notify's contacts). The keys are those of the JSON ackd has always written: rows of every
    earlier release decode, a key they lack takes its default, a key no longer used is ignored.
    """

    recipient: str
    recipient_kind: Literal["user", "channel"]
    contact: int | None = None  # None: a row from before contacts whose URL was not found
    # The contact's URL's digest (escalation.keys.contact_digest): a reload that moves the
    # contact leaves the row its contact; "" in rows from before, which go by `contact`.
    url_digest: str = ""
    reason: MessageReason
    short: bool = False
    step: int | None = None  # pages only: the index of the policy step that sent it
    cycle: int = 0
    run: int | None = None  # pages only, so a late failure of an older run moves nothing
    actor: str = ""  # notes: who acknowledged or resolved; pages: who reassigned or raised
    changed_to: str = ""  # reassigned, severity_raised pages: the team, person or severity
    stale_after: float | None = None  # stale notes: seconds Alertmanager was silent
    status_every: float | None = None  # status_due notes: the cadence, in seconds


@frozen(slots=True)
class Waiting:
    """What a reload looks up in the new config of the messages still to go that name their
    recipient (Store.waiting_messages, read by the daemon's look at the open incidents)."""

    # (incident, its FOLLOW deadline's key) of every open incident: a person the incident
    # layer messaged, whose delayed contact waits (incidents/follow.py)
    follow_ups: list[tuple[int, str]] = field(default_factory=list)
    # (incident, severity, commander, acknowledged_by) of every open incident whose status
    # cadence is armed: whom its next reminder goes to (incidents/cadence.py)
    reminders: list[tuple[int, str, str | None, str | None]] = field(default_factory=list)
    # (incident, message) of every outbox row, in flight or not, whose payload reads
    queued: list[tuple[int, OutboxMessage]] = field(default_factory=list)
    # (incident, channel, addressee) of each incident held back from a channel URL by the
    # rate limit, whose summary waits for its turn: the addressee is whom it goes to, and
    # the channel the digest of the URL it goes to (delivery/channels.py)
    summaries: list[tuple[int, str, OutboxMessage]] = field(default_factory=list)


@frozen(slots=True)
class OutboxRow:
    """One notification waiting to go out (or to be retried). `message` is None when the
    stored payload cannot be read; `unreadable` then says why. `gated`: it passed noise
    control once and counts in its URL's budget already (a send whose result was never
    written, by a process that stopped or a write the store refused, goes again ungated)."""

    id: int
    incident_id: int
    created_at: datetime
    message: OutboxMessage | None
    attempts: int
    next_attempt_at: datetime
    unreadable: str = ""
    gated: bool = False


@frozen(slots=True)
class ChannelRecord:
    """What noise control knows of one channel URL, kept in the store so that every replica
    gates against one budget (and a restart keeps it). `channel` is a digest of the URL, never
    the URL: it holds credentials."""

    channel: str
    history: ChannelHistory
    addressee: OutboxMessage | None = None  # one of the held-back messages: whom they were to
    summary_at: datetime | None = None  # when their summary may go; None: nothing held back


@frozen(slots=True)
class IncidentFilter:
    state: IncidentState | None = None
    open_only: bool = False
    team: str | None = None
    severity: str | None = None
    limit: int = 100
    before_id: int | None = None


@dataclass(slots=True)
class StoreStats:
    commits: int = 0
    failures: int = 0
    last_error: str = ""
    failing: str = ""  # the error of the last batch, while no batch has committed since
    corrupt: str = ""  # the first damage found in the file; stays until restart
    on_commit: list[Callable[[float, int], None]] = field(default_factory=list)


@frozen
class PlannedNotice:
    """A handoff notice: who hears at `at` that they come on call in (schedule, layer)."""

    id: int
    schedule: str
    layer: str
    at: datetime
    user: str
    sent_at: datetime | None = None
