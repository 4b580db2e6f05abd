"""Which replicas are alive, as PostgreSQL itself knows it.

Each replica holds a session-level advisory lock on its listening connection, the one
connection it keeps for as long as it runs: (LOCK_CLASS, its number). The number is drawn at
random and taken with pg_try_advisory_lock, so no two live replicas share one. When a replica
dies, even by SIGKILL, its socket closes, PostgreSQL ends that session at once and the lock
goes with it: a lock in pg_locks is a replica alive, without a heartbeat to write or an
expiry to wait for. (A replica hung but still connected keeps its lock: the outbox's long
lease is the backstop for that.)

What a replica holds names it: an outbox row's lease carries the number (`leased_by`). Every
replica looks WATCH seconds apart (`sweep`): the numbers locked now, and the leases whose
holder holds no lock any more, which go back to the outbox due when they were leased, so the
next pass of any dispatcher sends them. The number list orders the replicas alive, which the
timer uses to share due deadlines among them (`share`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from receiver.store.postgres.statements import Connection

# The advisory locks' first key: "ackd" in ASCII. The second is the replica's number.
LOCK_CLASS = 0x61636B64
WATCH = 0.2  # seconds between two looks at who is alive
NUMBERS = 2**31 - 1  # numbers are positive int4s (pg_locks shows the key as an unsigned oid)

# The replicas alive: the advisory locks of LOCK_CLASS held in this database.
_LIVE = (
    "SELECT objid::bigint AS replica FROM pg_locks WHERE locktype = 'advisory'"
    f" AND classid = {LOCK_CLASS} AND objsubid = 2 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
# One statement: who is alive, and every lease held by one who is not given back, due when
# it was taken (leased_from). SKIP LOCKED: a row another replica is changing is its business.
SWEEP = (
    f"WITH live AS ({_LIVE}),"
    " orphans AS (UPDATE outbox SET next_attempt_at = leased_from, leased_by = NULL"
    "  WHERE id IN (SELECT id FROM outbox WHERE leased_by IS NOT NULL"
    "   AND leased_by NOT IN (SELECT replica FROM live) FOR UPDATE SKIP LOCKED)"
    "  RETURNING id)"
    " SELECT (SELECT coalesce(array_agg(replica ORDER BY replica), '{}') FROM live),"
    " (SELECT count(*) FROM orphans)"
)


@dataclass(frozen=True, slots=True)
class Sweep:
    alive: tuple[int, ...]  # the numbers of the replicas alive, ascending
    orphans: int  # leases given back, of replicas gone


async def claim(conn: Connection, wanted: int | None = None) -> int:
    """Take a replica number on this connection (its session holds the lock): `wanted` if
    it is free (a replica listening again keeps its number), else a random free one."""
    number = wanted
    while True:
        if number is not None and await conn.fetchval(
            "SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, number
        ):
            return number
        number = 1 + secrets.randbelow(NUMBERS)


async def sweep(conn: Connection) -> Sweep:
    row = await conn.fetchrow(SWEEP)
    assert row is not None
    return Sweep(tuple(int(n) for n in row[0]), int(row[1]))


def share(deadline_id: int, alive: tuple[int, ...], replica: int) -> bool:
    """Whether this replica is the one to try this deadline first: the replicas alive take
    the deadlines in turn, by id. A replica not in the list yet (just started) shares none;
    with nobody listed, every replica tries everything."""
    if not alive:
        return True
    return alive[deadline_id % len(alive)] == replica
