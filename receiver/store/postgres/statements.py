"""What every seam of a PostgreSQL transaction shares: the batch's connection, and the
incidents the batch has read or written (locked, so no other replica changes them before the
batch commits)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from receiver.core.model import Incident
from receiver.store.codec import to_us
from receiver.store.postgres.held import Held
from receiver.store.records import ArmedDeadline, Shared

# The channel on which a commit that changed run-time state tells the other replicas: the
# Shared member's value ("maintenance", "oncall").
CHANGES_CHANNEL = "ackd_changes"

# The channel on which a batch that armed or moved deadlines tells the other replicas'
# timers, once it committed: "id:due_us" (see Statements.announce).
DEADLINES_CHANNEL = "ackd_deadlines"

# Escalation states set with no other column of their incidents, all in one UPDATE
# (Statements._writes). Its arrays are read through sub-selects so that the planner sees
# them alike in a prepared statement's generic plan and in a custom one: it counts an unnest
# of a bare parameter as 10 rows in the generic plan but as the array's true length in a
# custom plan (planned for the values at hand), so for the usual one state the generic plan
# looked seven times as dear (86 against 12) and PostgreSQL kept planning the statement
# anew at every execution (the one that arms a new incident's first deadline: 867 plans for
# 866 calls, 80 µs of its CPU a webhook). A sub-select's value is unknown to both plans: 10
# rows, the same plan (a nested loop over incidents' primary key), planned once.
_STATES = (
    "held_states AS (UPDATE incidents SET escalation = s.escalation"
    " FROM unnest((SELECT {}::bigint[]), (SELECT {}::text[])) AS s(id, escalation)"
    " WHERE incidents.id = s.id)"
)
# Outbox rows enqueued, created now and due at once, their identities rising in the order
# enqueued.
_OUTBOX = (
    "held_outbox AS (INSERT INTO outbox (incident_id, created_at, payload, next_attempt_at)"
    " SELECT i, t, p, t FROM unnest({}::bigint[], {}::bigint[], {}::text[])"
    " WITH ORDINALITY AS m(i, t, p, n) ORDER BY n)"
)

# A connection of its own or one lent by the pool: the statements do not care which.
Connection = asyncpg.Connection | PoolConnectionProxy


class Sender:
    """The batch's connection for a statement that does not carry the held writes: they are
    sent first (held.py), so that the statement sees them and the order of effects holds."""

    def __init__(self, conn: Connection, send_held: Callable[[], Awaitable[None]]) -> None:
        self._raw = conn
        self._send_held = send_held

    async def execute(self, sql: str, *params: Any) -> str:
        await self._send_held()
        return str(await self._raw.execute(sql, *params))

    async def executemany(self, sql: str, args: Any) -> None:
        await self._send_held()
        await self._raw.executemany(sql, args)

    async def fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        await self._send_held()
        return list(await self._raw.fetch(sql, *params))

    async def fetchval(self, sql: str, *params: Any) -> Any:
        await self._send_held()
        return await self._raw.fetchval(sql, *params)


class Statements:
    """The base of the transaction's seams (incidents, timeline, deadlines, outbox)."""

    def __init__(self, conn: Connection) -> None:
        self._raw = conn  # for the statements that carry the held writes
        self._conn = Sender(conn, self.send_held)
        # Alerts, timeline events and incident columns written but not sent yet (held.py).
        self._held = Held()
        # Incidents as this batch last wrote or read them. Unlike SQLite's single writer,
        # other replicas write too: every incident read here is read FOR NO KEY UPDATE, so
        # what is remembered stays true until the batch commits.
        self._incidents: dict[int, Incident] = {}
        # Their escalation state as stored (JSON text, None for none), read with the incident
        # or written by the batch; and, for a group open_group found without an open incident,
        # the group's last incident, read in the same statement (last_incident_id).
        self._escalations: dict[int, str | None] = {}
        self._last_ids: dict[str, int | None] = {}
        # The incidents this batch inserted, with the kinds of deadline armed for them since:
        # cancelling any other kind of theirs has nothing to delete (no other transaction
        # sees them before the commit), and needs no statement.
        self._new_deadlines: dict[int, set[str]] = {}
        # The number of the replica running the batch (store/postgres/replicas.py), which
        # its leases carry; None outside a replica (tools, some tests).
        self.replica: int | None = None
        # Outbox rows enqueued and not sent yet, in order: (incident, created and due in
        # µs, payload). Sent with the held writes (_writes).
        self._outbox: list[tuple[int, int, str]] = []
        # What the batch's commit reports as its incidents' row versions (transaction.py's
        # read_versions): the batch's transaction id (low 32 bits, as xmin shows it), the
        # xmin of the incidents read by open_group (locked: it stays until the commit unless
        # the batch writes the row), and the incidents whose row the batch wrote (inserted,
        # columns set, escalation set). Every statement here that writes an incident's row
        # adds it; one left out would only cost a read of its version (a version wrong either
        # way is never one the row has, so a memo holding it is never taken: grouping.py).
        self._xid: int | None = None
        self._xmins: dict[int, int] = {}
        self._written: set[int] = set()
        # Whether the writes held now include an earlier job's (a batch without savepoints
        # sends a job's held writes with a later statement, not at the job's end): the
        # statement that carries them may fail for that job's writes, not for the job
        # running (store.py's _run_optimistic). Set at each job's start, cleared once the
        # held writes went out.
        self.inherited = False
        # The deadlines the batch armed, as their notifications' payloads ("id:due_us"):
        # sent once it committed, in a statement of their own (store.py, `announce`).
        self.announcements: list[str] = []

    @property
    def holding(self) -> bool:
        """Whether writes are held, not sent yet."""
        return bool(self._held or self._outbox)

    async def send_held(self) -> None:
        """Send the held writes, if any, in a statement of their own (the end of a job)."""
        if self._held or self._outbox:
            sql, params = self._writes(1)
            await self._raw.execute(sql + "SELECT", *params)
            self.inherited = False

    def _carrying(self, sql: str, params: tuple[Any, ...]) -> tuple[str, list[Any]]:
        """`sql`, a statement that touches none of the held rows, with the held writes in
        front (when any): one round trip for both."""
        if not (self._held or self._outbox):
            return sql, list(params)
        ctes, more = self._writes(len(params) + 1)
        return ctes + sql, [*params, *more]

    def _writes(self, first: int) -> tuple[str, list[Any]]:
        """A WITH of what is held (held.py), of the escalation states set alone in one
        UPDATE, and of the outbox rows enqueued, its parameters numbered from `first`; then
        nothing is held. Each kind of write is one sub-statement whatever the number of its
        rows, so that firing a batch of steps (an escalation state, timeline events and a
        page each) writes all of them in one statement of a text that repeats (asyncpg
        prepares each text once per connection): an incident's columns set otherwise are an
        UPDATE each (held.py), and its escalation state goes with them (one WITH must not
        write a row twice)."""
        updates = self._held.updates
        states = {incident_id: values["escalation"] for incident_id, values in updates.items()
                  if len(values) == 1 and "escalation" in values}
        for incident_id in states:
            del updates[incident_id]
        parts: list[str] = []
        params: list[Any] = []
        if self._held:
            sql, params = self._held.ctes(first)
            parts.append(sql.removeprefix("WITH ").rstrip())
        n = first + len(params)
        if states:
            parts.append(_STATES.format(f"${n}", f"${n + 1}"))
            params.extend((list(states), list(states.values())))
            n += 2
        if self._outbox:
            rows, self._outbox = self._outbox, []
            parts.append(_OUTBOX.format(f"${n}", f"${n + 1}", f"${n + 2}"))
            params.extend(([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))
        return "WITH " + ", ".join(parts) + " ", params

    async def _carry_rows(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        sql, args = self._carrying(sql, params)
        rows = list(await self._raw.fetch(sql, *args))
        self.inherited = False
        return rows

    async def _carry_value(self, sql: str, *params: Any) -> Any:
        sql, args = self._carrying(sql, params)
        value = await self._raw.fetchval(sql, *args)
        self.inherited = False
        return value

    async def _carry_into_with(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        """As _carry_rows, for a statement that is a WITH of its own: the held writes join
        its list of CTEs (a WITH cannot follow another)."""
        if not (self._held or self._outbox):
            return list(await self._raw.fetch(sql, *params))
        ctes, more = self._writes(len(params) + 1)
        sql = ctes.rstrip() + ", " + sql.removeprefix("WITH ")
        rows = list(await self._raw.fetch(sql, *params, *more))
        self.inherited = False
        return rows

    async def _all(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        return await self._conn.fetch(sql, *params)

    async def _run(self, sql: str, *params: Any) -> None:
        await self._conn.execute(sql, *params)

    def announce(self, armed: Iterable[ArmedDeadline]) -> None:
        """Tell the other replicas' timers of these deadlines once the batch committed, not
        in its COMMIT (store.py sends them): a rolled-back job's are forgotten with it."""
        self.announcements.extend(f"{d.id}:{to_us(d.due)}" for d in armed)

    async def _changed(self, what: Shared) -> None:
        """Tell the other replicas, at commit (a rolled-back NOTIFY is never sent), that
        `what` changed: they read it again."""
        await self._run("SELECT pg_notify($1, $2)", CHANGES_CHANNEL, what.value)
