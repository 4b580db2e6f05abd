"""Reads and writes inside one batch on PostgreSQL (see store.py for the batching), on the
same seams as the SQLite store's: incidents and alerts, timeline, deadlines, outbox."""

from __future__ import annotations

from collections.abc import Callable

from receiver.store.postgres.deadlines import DeadlineStatements
from receiver.store.postgres.feeds import FeedStatements
from receiver.store.postgres.heartbeats import HeartbeatStatements
from receiver.store.postgres.incidents import IncidentStatements
from receiver.store.postgres.maintenance import MaintenanceStatements
from receiver.store.postgres.oncall import OnCallStatements
from receiver.store.postgres.outbox import OutboxStatements
from receiver.store.postgres.reports import ReportStatements
from receiver.store.postgres.roles import RoleStatements
from receiver.store.postgres.statements import Connection
from receiver.store.postgres.timeline import TimelineStatements


class PostgresTransaction(
    IncidentStatements, TimelineStatements, DeadlineStatements, OutboxStatements,
    OnCallStatements, HeartbeatStatements, MaintenanceStatements, RoleStatements,
    ReportStatements,
    FeedStatements,
):
    """One batch's statements: `store.Transaction` on PostgreSQL."""

    def __init__(self, conn: Connection, replica: int | None = None) -> None:
        super().__init__(conn)
        self.replica = replica  # what this replica's leases carry (replicas.py)
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the batch is durable (e.g. arm an in-memory timer)."""
        self._after_commit.append(callback)

    def mark(self) -> int:
        return len(self._after_commit)

    def rewind(self, mark: int) -> None:
        """A job failed and its writes were rolled back: forget what it did."""
        del self._after_commit[mark:]
        self._incidents.clear()
        self._outbox_announced = False  # the rolled-back job's notification went with it

    def run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()
