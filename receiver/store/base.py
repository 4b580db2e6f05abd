"""The store's interface: what the rest of ackd may ask of durable state, whatever holds it.

Two protocols. `Store` is the store as a whole: open and close, `write` (run a job inside the
next commit and return once it is durable), and the reads that need no transaction.
`Transaction` is what a job gets: the reads and writes of one transaction, grouped by the
concept each serves, one protocol per seam (incidents, timeline, deadlines, outbox, on-call,
incident roles, noise control's channel histories).
An implementation keeps the same seams (the
SQLite one has a module per seam under store/sqlite/), so the SQL of a concept stays in one
place in each dialect.

Every method is async, so an implementation whose statements wait on the network (asyncpg)
fits as well as one whose statements run on the loop (sqlite3). Data in and out is plain
(store/records.py and the nouns of core/model.py); times are timezone-aware UTC.

What every implementation promises:
- A job's writes commit together or not at all; a job that raises is rolled back alone and
  its error goes to its caller; trouble with the store itself fails every job of the batch
  with StoreUnavailable. `write` returns only after the commit is durable.
- A job may run more than once before its commit, each run in a fresh transaction or rolled
  back to where it began (SQLite runs a batch again without a job that failed; PostgreSQL
  runs a batch again, each job in a savepoint, after any of its jobs failed, runs again in
  its savepoint a job that lost a race to another replica, and runs again job by job a
  batch that met a lock cycle). So a job reads and writes through its transaction only, and
  does what reaches beyond it (memos, timers, metrics, log lines) in
  `Transaction.after_commit`, which only the run that committed runs.
- `Transaction.after_commit` callbacks run once the commit is durable, never before, and not
  at all for a job that failed.
- A deadline is taken (`take_deadlines`) in the transaction of its effects, and only when its
  own stored due time has come: exactly once across crashes.
- An outbox row is leased by one caller at a time and leaves the outbox only in the commit
  that records its result; leases a stopped process left are undone when the store opens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from receiver.core.clockskew import Offset
from receiver.core.model import Alert, Incident, OpenGroup, TimelineEvent
from receiver.escalation.plan import PageFate
from receiver.incidents.roles import Role, RoleHolder
from receiver.maintenance.domain import Window
from receiver.oncall.overrides import Change, RuntimeOverride
from receiver.store.records import (
    ArmedDeadline,
    ChannelRecord,
    IncidentBrief,
    IncidentFacts,
    IncidentFilter,
    NewIncident,
    OutboxMessage,
    OutboxRow,
    PlannedNotice,
    StoreStats,
    Waiting,
)

T = TypeVar("T")


class IncidentRecords(Protocol):
    """Incidents and their alerts: what ingest reads and writes."""

    async def open_group(self, group_key: str) -> OpenGroup | None:
        """The group's open incident with the current episode of each fingerprint it holds."""
        ...

    async def past_episodes(
        self, group_key: str, fingerprints: Iterable[str]
    ) -> dict[str, list[tuple[datetime, datetime]]]:
        """The episodes of these fingerprints that are over, in any incident of the group."""
        ...

    async def last_incident_id(self, group_key: str) -> int | None: ...

    async def insert_incident(self, new: NewIncident, previous_id: int | None) -> int: ...

    async def incident(self, incident_id: int) -> Incident:
        """The incident; NotFound if there is none."""
        ...

    async def find_incident(self, incident_id: int) -> Incident | None: ...

    async def find_incidents(self, incident_ids: Sequence[int]) -> dict[int, Incident]:
        """The incidents of these ids that exist, by id, read at once (a dispatcher pass
        needs those of hundreds of outbox rows)."""
        ...

    async def incident_briefs(self, incident_ids: Sequence[int]) -> dict[int, IncidentBrief]:
        """The id, state and severity of the incidents of these ids that exist, by id, read at
        once as find_incidents reads them (PostgreSQL locks them as it does), without the
        rest of the row: a storm's message checked again at its turn decides on these for
        its thousands of rows, and reads whole only the incidents its text shows."""
        ...

    async def write_alerts(
        self, incident_id: int, alerts: Sequence[Alert], now: datetime
    ) -> None: ...

    async def move_alert_starts(
        self, incident_id: int, moves: Sequence[tuple[str, datetime, datetime]]
    ) -> None: ...

    async def update_incident(self, incident_id: int, now: datetime, **fields: Any) -> None: ...


class TimelineRecords(Protocol):
    """The timeline, and what it says was paged."""

    async def append(self, incident_id: int, events: Iterable[TimelineEvent]) -> None: ...

    async def append_each(self, events: Sequence[tuple[int, TimelineEvent]]) -> None:
        """One event to each of several incidents, in their order, in one statement: a
        delivery's rows each get its result, a pass's suppressed rows each the reason (a
        storm's bundle: hundreds). An event given for several incidents is encoded once."""
        ...

    async def paged_recipients(self, incident_id: int) -> list[str]:
        """Users paged for this incident so far, in the order they were first paged: a page
        recorded sent, or one in flight (leased to a send whose result is not recorded yet:
        the person may have it already, so the resolution must reach them too)."""
        ...

    async def events_since(self, incident_id: int, since: datetime) -> list[TimelineEvent]:
        """The incident's events from `since` on, oldest first (what the incident layer reads
        to know whether someone spoke or acted since it messaged them)."""
        ...

    async def step_pages(
        self, incident_id: int, run: int, cycle: int, step: int
    ) -> list[tuple[str, PageFate]]:
        """What became of the pages of one step, of one run and cycle, to people (channels
        left out), once per person and fate: each recorded sent, failed or suppressed, and
        pending while still in the outbox (queued, in flight, waiting for a retry) or a
        delayed contact of the step is still armed. What `escalation.delivery_failed`
        decides on; pages of other runs and cycles are not counted."""
        ...


class DeadlineRecords(Protocol):
    """An incident's escalation state, its durable deadlines, the round-robin cursors."""

    async def escalation(self, incident_id: int) -> dict[str, Any] | None: ...

    async def set_escalation(self, incident_id: int, state: dict[str, Any]) -> None: ...

    async def arm(
        self, incident_id: int, deadlines: Iterable[tuple[datetime, str, str]]
    ) -> list[ArmedDeadline]:
        """Insert or move deadlines; the same (kind, key) is one deadline (idempotent)."""
        ...

    async def arm_once(
        self, incident_id: int, due: datetime, kind: str, key: str
    ) -> ArmedDeadline | None:
        """Arm a deadline of this kind unless the incident has one already, whatever its key."""
        ...

    async def cancel(self, incident_id: int, kinds: Iterable[str]) -> None: ...

    async def take_deadlines(
        self, deadline_ids: Sequence[int], now: datetime
    ) -> list[ArmedDeadline]:
        """Remove and return those of these deadlines whose stored due time has come, in
        the order asked (the others are left as they are)."""
        ...

    async def round_robin(
        self, keys: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], int]: ...

    async def advance_round_robin(self, keys: Iterable[tuple[str, int]]) -> None: ...


class OutboxRecords(Protocol):
    """The notification outbox: rows enqueued, leased, and their fate."""

    async def enqueue(
        self, incident_id: int, messages: Iterable[OutboxMessage], now: datetime
    ) -> None:
        """Rows created `now` and due at once. No ids: PostgreSQL's go with the batch's next
        statement (store/postgres/outbox.py)."""
        ...

    async def due_outbox(self, now: datetime, limit: int) -> list[OutboxRow]: ...

    async def lease_due_outbox(self, now: datetime, limit: int) -> list[OutboxRow]:
        """Take the rows due by `now`, oldest first, leased until their result is written."""
        ...

    async def release_outbox(self, outbox_id: int, due: datetime) -> None: ...

    async def renew_outbox(self, outbox_ids: Sequence[int], now: datetime) -> list[int]:
        """Of these rows, those whose lease the caller still holds, each leased anew from
        `now` (a row whose lease lapsed and another replica took, or that is gone, is not):
        a send that waited in its URL's lane sends only these (Store.outbox_lease)."""
        ...

    async def held_outbox(self) -> list[int]:
        """The rows whose lease the caller holds (a replica: those leased by its number; one
        SQLite process: every leased row), for the dispatcher's self-check."""
        ...

    async def finish_outbox(self, outbox_ids: Sequence[int]) -> None:
        """These rows' results are written: they leave the outbox, all in one statement (a
        storm's pass suppresses dozens, a bundle's record finishes RECORD_ROWS at a time)."""
        ...

    async def retry_outbox(self, outbox_id: int, attempts: int, next_at: datetime) -> None: ...

    async def defer_outbox(self, outbox_ids: Sequence[int], until: datetime) -> None:
        """These rows wait for their bundle: due again at `until`, their leases ended, no
        attempt counted (retry_outbox with 0 attempts, for all of them in one statement: a
        storm's pass defers every page it leases but the first)."""
        ...


class OnCallRecords(Protocol):
    """Run-time schedule overrides and planned handoff notices."""

    async def add_overrides(
        self, schedule: str, change: Change, actor: str, now: datetime
    ) -> list[RuntimeOverride]: ...

    async def override_with_pair(
        self, schedule: str, override_id: int
    ) -> list[RuntimeOverride]:
        """The override and, for a swap, its other leg; NotFound if there is none."""
        ...

    async def delete_overrides(self, ids: Sequence[int]) -> None: ...

    async def current_overrides(self, now: datetime) -> list[RuntimeOverride]:
        """Every override that has not ended."""
        ...

    async def plan_notice(
        self, schedule: str, layer: str, at: datetime | None, user: str | None, now: datetime
    ) -> PlannedNotice | None:
        """Make (schedule, layer)'s one unsent notice the handoff to `user` at `at`."""
        ...

    async def take_notice(self, notice_id: int, now: datetime) -> PlannedNotice | None:
        """Mark a due, unsent notice sent and return it, else None."""
        ...

    async def drop_notice(self, notice_id: int) -> None: ...

    async def unsent_notices(self) -> list[PlannedNotice]: ...

    async def unplan_others(self, keep: Sequence[tuple[str, str]], now: datetime) -> None:
        """Drop unsent notices of layers not in `keep`, and sent ones older than a week."""
        ...

    async def open_incidents_of(self, teams: Sequence[str]) -> list[Incident]:
        """The open incidents of these teams, oldest first."""
        ...


class HeartbeatRecords(Protocol):
    """When each heartbeat last arrived (receiver/heartbeats/)."""

    async def heartbeats_arrived(self, names: Iterable[str], at: datetime) -> None:
        """Record an arrival at `at` (a later one already recorded stays)."""
        ...

    async def open_incident_ids(self, group_keys: Iterable[str]) -> dict[str, int]:
        """The open incident of each of these groups that has one."""
        ...


class MaintenanceRecords(Protocol):
    """Maintenance windows made through the API, and what a window's hold reads and moves."""

    async def firing_labels(self, incident_id: int) -> list[dict[str, str]]:
        """The labels of the incident's firing alerts (a window's matchers are tried on them)."""
        ...

    async def add_window(self, window: Window) -> int:
        """Store the window; its number."""
        ...

    async def delete_window(self, window_id: int) -> bool: ...

    async def bring_forward(self, kind: str, now: datetime) -> list[ArmedDeadline]:
        """Every deadline of `kind` due later than `now` is due now; those moved."""
        ...


class RoleRecords(Protocol):
    """Who holds each role of an incident now (the timeline keeps every change)."""

    async def roles(self, incident_id: int) -> dict[Role, RoleHolder]: ...

    async def set_role(self, incident_id: int, holder: RoleHolder) -> None: ...

    async def clear_role(self, incident_id: int, role: Role) -> None: ...


class ReportRecords(Protocol):
    """When Alertmanager last reported each open incident, for replicas sharing a store: the
    one that takes a webhook may not be the one that fires its stale deadline."""

    async def note_reports(self, reports: Mapping[int, datetime]) -> None:
        """Record each incident's report at its instant (a later one already recorded stays)."""
        ...

    async def take_report(self, incident_id: int) -> datetime | None:
        """The last report recorded since the last take, removed; None if none was."""
        ...


class FeedRecords(Protocol):
    """Calendar feed generations: a feed address is signed for one (notify/links.FeedLinks),
    and revoking the feed raises it, so older addresses stop."""

    async def feed_generation(self, kind: str, name: str) -> int:
        """The feed's generation now; 0 for a feed never revoked."""
        ...

    async def revoke_feed(self, kind: str, name: str) -> int:
        """Raise the feed's generation by one; the new one."""
        ...


class ChannelRecords(Protocol):
    """Noise control's history of each channel URL (delivery/noise.py), shared by every
    process on the store: the dispatcher reads the histories it gates against, decides, and
    writes them back in one transaction."""

    async def lock_channels(
        self, channels: Sequence[str], now: datetime
    ) -> list[ChannelRecord]:
        """The records of these channels (those that have one) and of every channel whose
        held-back summary is due by `now`, each locked until the transaction ends: another
        process locking one of them waits for this commit and then reads what it wrote. (On
        SQLite the one writer is the lock.)"""
        ...

    async def save_channels(self, records: Sequence[ChannelRecord]) -> None:
        """Write these records, replacing each channel's."""
        ...

    async def drop_channels(self, channels: Sequence[str]) -> None:
        """Forget these channels' histories and held-back incidents."""
        ...

    async def hold_back(self, channel: str, incident_ids: Sequence[int], at: datetime) -> None:
        """Messages about these incidents were held back from the channel at `at` (an
        incident already held back from it keeps its place)."""
        ...

    async def held_back(self, channels: Sequence[str]) -> dict[str, list[int]]:
        """The incidents held back from each of these channels, in the order first held."""
        ...

    async def forget_held_back(self, channels: Sequence[str]) -> None:
        """Their summary went: nothing is held back from these channels any more."""
        ...

    async def passed_gate(self, outbox_ids: Sequence[int]) -> None:
        """These outbox rows passed the gate and are being sent: should their result never
        be written, they go again without being counted twice (OutboxRow.gated)."""
        ...

    async def next_summary_at(self) -> datetime | None:
        """When the earliest held-back summary of any channel may go."""
        ...


class Transaction(
    IncidentRecords, TimelineRecords, DeadlineRecords, OutboxRecords, OnCallRecords,
    HeartbeatRecords, MaintenanceRecords, RoleRecords, ReportRecords, FeedRecords,
    ChannelRecords, Protocol,
):
    """What one job of `Store.write` may do."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the batch is durable (e.g. arm an in-memory timer)."""
        ...

    def after_commit_versioned(self, incident_id: int, callback: Callable[[int], None]) -> None:
        """Run `callback` once the batch is durable, with the version of the incident's row
        it committed: what a webhook memo remembers, to be checked with `open_versions`
        before it answers. SQLite: always 0 (one writer keeps its memos exact)."""
        ...


class Store(Protocol):
    """Durable state: incidents, alerts, timelines, deadlines and the outbox."""

    @property
    def stats(self) -> StoreStats: ...

    @property
    def outbox_lease(self) -> timedelta | None:
        """How long a lease on an outbox row lasts before the row is due again, for any
        replica to take; None: a lease lasts until its result is written (one process)."""
        ...

    @property
    def outbox_handover(self) -> timedelta | None:
        """How long after a lease the others may take its rows from a replica they see hung
        (PostgreSQL: replicas.HUNG); None: nobody else takes them (one process)."""
        ...

    @property
    def clock_offset(self) -> Offset | None:
        """This replica's clock minus the database's, as last measured (PostgreSQL, whose
        replicas share deadlines by their own clocks: core/clockskew.py); None before the
        first measurement and where there is no other clock (SQLite: one process)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None:
        """Finish every queued write, then close. Nothing accepted is dropped."""
        ...

    async def write(self, run: Callable[[Transaction], Awaitable[T]]) -> T:
        """Run `run` inside the next commit; return its result once that is durable. `run`
        may run more than once (see the module's promises): its effects beyond the
        transaction go through `Transaction.after_commit`."""
        ...

    async def writable(self) -> None:
        """Raise StoreUnavailable if writes fail now."""
        ...

    async def ping(self) -> None: ...

    async def incident(self, incident_id: int) -> Incident: ...

    async def incidents(self, where: IncidentFilter) -> list[Incident]: ...

    async def alerts(self, incident_id: int) -> list[Alert]: ...

    async def timeline(self, incident_id: int) -> list[TimelineEvent]: ...

    async def deadlines(self) -> list[tuple[int, datetime]]:
        """Every armed deadline (id, due), for the timer loop to index at start."""
        ...

    async def due_notifications(
        self, now: datetime, limit: int = 100
    ) -> list[tuple[OutboxRow, Incident | None]]: ...

    async def lease_due_notifications(
        self, now: datetime, limit: int
    ) -> list[tuple[OutboxRow, Incident | None]]:
        """The rows due by `now`, each with its incident (None if gone), leased to the
        caller: no later call returns them until their result is written or released."""
        ...

    async def lease_and_decide(
        self, now: datetime, limit: int,
        decide: Callable[
            [Transaction, list[tuple[OutboxRow, IncidentFacts | None]]], Awaitable[T]],
    ) -> T:
        """lease_due_notifications and `decide` on the rows it leased, in one writer job: the
        lease and what `decide` writes about the rows commit together or not at all (a
        failure, or a crash before the commit, leaves every row as it was, due and unleased).
        `decide` may run more than once (a job retried after losing a lock race, or its
        batch run again without a batch-mate that failed): it reads and writes only through
        its transaction and returns what it decided. Each row comes with what `decide` needs
        of its incident (None if it is gone): the whole Incident (PostgreSQL: read unlocked,
        see peek_incidents, so a second read could see a later commit), or an IncidentBrief
        (SQLite: `decide` reads the whole incidents of the rows it sends with find_incidents,
        in the same transaction)."""
        ...

    async def next_outbox_at(self, after: datetime) -> datetime | None:
        """When the earliest row due later than `after` is due (leased rows left out)."""
        ...

    async def count_open(self) -> list[tuple[str, str, str, int]]:
        """(team, severity, state, count) of every open incident (drills left out)."""
        ...

    async def oldest_due_outbox(self, now: datetime) -> datetime | None:
        """When the oldest row still waiting for its result fell due: a row due by `now`
        and not taken, or taken (in flight, or its lease lapsed) and its result not written;
        None if there is none. The gauge ackd_outbox_oldest_due_seconds."""
        ...

    async def open_escalations(self) -> list[tuple[int, dict[str, Any]]]:
        """(incident id, escalation state as stored) of every open incident that has one,
        oldest first: what a reload looks at (escalation/unreached.py)."""
        ...

    async def open_firing_alerts(self) -> list[tuple[int, str, dict[str, str]]]:
        """(incident id, group key, labels) of each firing alert of every open incident,
        by incident: what a reload routes again (ingest/regroup.py)."""
        ...

    async def open_contacts(self) -> list[tuple[int, str]]:
        """(incident id, deadline key) of each delayed contact still waiting of every
        triggered incident, by incident: what a reload looks up (escalation/unreached.py)."""
        ...

    async def waiting_messages(self) -> Waiting:
        """The messages still to go that name their recipient: the incident layer's delayed
        ones (follow-ups, status reminders) of every open incident, and every outbox row, in
        one read: what a reload looks up in the new config."""
        ...

    async def earlier_incidents(self, incident_id: int, limit: int = 20) -> list[Incident]:
        """Incidents before this one that held any of its alerts, newest first."""
        ...

    async def history(
        self, since: datetime
    ) -> list[tuple[Incident, list[Alert], list[TimelineEvent]]]:
        """Every incident opened since `since` with its alerts and its timeline less the
        delivery events, oldest first (what reports read)."""
        ...

    async def maintenance_windows(self) -> list[Window]:
        """The maintenance windows made through the API, oldest first."""
        ...

    async def heartbeat_arrivals(self) -> dict[str, datetime]:
        """When each heartbeat last arrived."""
        ...

    async def open_incidents_by_group(self, group_keys: Sequence[str]) -> dict[str, int]:
        """The open incident of each of these groups that has one."""
        ...

    async def open_versions(self, incident_ids: Sequence[int]) -> dict[int, int]:
        """The row version of each of these incidents that is still open (a resolved or
        missing one is left out): a memo entry that remembers another version is out of
        date. Every write to an incident's row gives it a new version (PostgreSQL's xmin);
        SQLite answers 0, its memos being kept exact by the one writer."""
        ...
