"""Reads and writes inside one batch on PostgreSQL (see store.py for the batching), on the
same seams as the SQLite store's: incidents and alerts, timeline, deadlines, outbox."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from receiver.core.model import IncidentState
from receiver.store.postgres.channels import ChannelStatements
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
    ReportStatements, FeedStatements, ChannelStatements,
):
    """One batch's statements: `store.Transaction` on PostgreSQL."""

    def __init__(self, conn: Connection, replica: int | None = None, *,
                 savepoints: bool = False) -> None:
        super().__init__(conn)
        self.replica = replica  # what this replica's leases carry (replicas.py)
        # Whether the batch runs its jobs in savepoints: a row a job writes there carries
        # its savepoint's own transaction id, not the batch's (see read_versions).
        self._savepoints = savepoints
        self._after_commit: list[Callable[[], None]] = []
        # The incidents whose row version the batch's commit must report (after_commit_
        # versioned), and those versions, read once all its jobs ran (read_versions).
        self._versioned: set[int] = set()
        self._versions: dict[int, int] = {}

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the batch is durable (e.g. arm an in-memory timer)."""
        self._after_commit.append(callback)

    def after_commit_versioned(self, incident_id: int, callback: Callable[[int], None]) -> None:
        """Run `callback` once the batch is durable with the incident row's xmin as the batch
        commits it. The row is locked by the batch (read FOR NO KEY UPDATE or written), so no
        one else changes it between read_versions and the commit."""
        self._versioned.add(incident_id)
        self._after_commit.append(partial(self._with_version, incident_id, callback))

    def _with_version(self, incident_id: int, callback: Callable[[int], None]) -> None:
        version = self._versions.get(incident_id)
        if version is not None:  # None: the row is gone (a job rolled back its insert)
            callback(version)

    async def read_versions(self) -> None:
        """The versions after_commit_versioned asked for, once all the batch's jobs ran (a
        later job may write the same row again). In a batch without savepoints they are known
        without a statement: a row the batch wrote carries its transaction id as xmin, a row
        it only read keeps the xmin read with it (locked, no one else writes it); an incident
        the batch resolved has none (it holds no memo), as the read says. Otherwise (a row
        known neither way, or savepoints) they are read in one statement, the last of the
        batch before COMMIT."""
        if not self._versioned:
            return
        if not self._savepoints:
            known: dict[int, int] = {}
            for incident_id in self._versioned:
                incident = self._incidents.get(incident_id)
                if incident is None:
                    break
                if incident_id in self._written and self._xid is not None:
                    version = self._xid
                elif incident_id not in self._written and incident_id in self._xmins:
                    version = self._xmins[incident_id]
                else:
                    break
                if incident.state is not IncidentState.RESOLVED:
                    known[incident_id] = version
            else:
                self._versions = known
                return
        self._versions = await self._versions_of(sorted(self._versioned))

    def mark(self) -> tuple[int, int]:
        return len(self._after_commit), len(self.announcements)

    def rewind(self, mark: tuple[int, int]) -> None:
        """A job failed and its writes were rolled back: forget what it did."""
        del self._after_commit[mark[0]:]
        del self.announcements[mark[1]:]  # deadlines it armed are not there to announce
        self._incidents.clear()
        self._escalations.clear()
        self._last_ids.clear()
        self._new_deadlines.clear()
        self._held.clear()
        self._outbox.clear()

    def run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()
