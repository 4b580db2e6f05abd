"""Domain-level reads and writes inside one writer batch (see store.py for the batching).

The statements live by what they serve, each seam a module: incidents and alerts, the
timeline, escalation state and deadlines, the outbox, on-call overrides and notices,
heartbeats, maintenance windows, incident roles. A second
store (PostgreSQL) follows the same seams.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial

from receiver.store.sqlite.channels import ChannelStatements
from receiver.store.sqlite.deadlines import DeadlineStatements
from receiver.store.sqlite.feeds import FeedStatements
from receiver.store.sqlite.heartbeats import HeartbeatStatements
from receiver.store.sqlite.incidents import IncidentStatements
from receiver.store.sqlite.maintenance import MaintenanceStatements
from receiver.store.sqlite.oncall import OnCallStatements
from receiver.store.sqlite.outbox import OutboxStatements
from receiver.store.sqlite.reports import ReportStatements
from receiver.store.sqlite.roles import RoleStatements
from receiver.store.sqlite.timeline import TimelineStatements


class SqliteTransaction(
    IncidentStatements, TimelineStatements, DeadlineStatements, OutboxStatements,
    OnCallStatements, HeartbeatStatements, MaintenanceStatements, RoleStatements,
    ReportStatements, FeedStatements, ChannelStatements,
):
    """One writer batch's statements: `store.Transaction` on SQLite."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self._after_commit: list[Callable[[], None]] = []

    # -- bookkeeping for the writer -------------------------------------------------------

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the batch is durable (e.g. arm an in-memory timer)."""
        self._after_commit.append(callback)

    def after_commit_versioned(self, incident_id: int, callback: Callable[[int], None]) -> None:
        """As after_commit; the version is 0: this process is the store's only writer, and
        its memos are told of every change as it commits."""
        self._after_commit.append(partial(callback, 0))

    def mark(self) -> int:
        return len(self._after_commit)

    def rewind(self, mark: int) -> None:
        """A job failed and its writes were rolled back to its savepoint: forget what it
        did. (A batch run again without a failed job takes a new transaction instead.)"""
        del self._after_commit[mark:]
        self._incidents.clear()
        self._escalations.clear()
        self._new_deadlines.clear()
        self._last_ids.clear()
        self._alert_keys.clear()

    def run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()
