"""Which replicas are alive, as PostgreSQL itself knows it.

Each replica holds a session-level advisory lock on its listening connection, the one
connection it keeps for as long as it runs: (LOCK_CLASS, its number). The number is drawn at
random and taken with pg_try_advisory_lock, so no two live replicas share one. When a replica
dies, even by SIGKILL, its socket closes, PostgreSQL ends that session at once and the lock
goes with it: a lock in pg_locks is a replica alive, without a heartbeat to write or an
expiry to wait for. A replica hung but still connected (SIGSTOP, a blocked loop, a paused
VM) keeps its lock; its listening connection says it is hung: the replica sends a statement on
it every BEAT seconds (store.py), and PostgreSQL keeps, in pg_stat_activity, when that session
last changed state, by the database's own clock (no replica's clock is read, and a database
restart ends the session, so no beat is ever judged across one). A listener idle for HUNG
seconds is a replica hung: the others give back the leases it took more than HUNG ago (a
lease it renewed later is never taken from it), and send those pages. The outbox's long lease
stays the backstop where pg_stat_activity cannot say (another database role without
pg_read_all_stats sees no state; a replica of an earlier release does not mark its listener).

What a replica holds names it: an outbox row's lease carries the number (`leased_by`). Every
replica looks WATCH seconds apart (`sweep`): the numbers locked now, and the numbers that hold
leases but no lock. A number unlocked is not yet a replica gone: a restart of PostgreSQL (or a
failover, or a network blip between one replica and the database) ends every session and so
every lock, and the replicas take their numbers again as their listeners come back (store.py),
one after another. So a number's leases go back to the outbox, due when they were leased, only
once this replica has seen that number unlocked in every sweep for GRACE seconds (`Unlocked`),
and the next pass of any dispatcher sends them: a page in flight when the database restarts
is sent once, and one in flight on a replica that died goes again GRACE (and a sweep) after
its death. A replica never gives its own number's leases back. The number list orders the
replicas alive, at once (no grace), which the timer uses to share due deadlines among them
(`share`): a deadline is taken by one replica whatever the list says, so a list short of a
replica for a moment costs nothing, and a replica gone has its deadlines tried by the others
within a second.

When the hung replica resumes, a send of its own that starts HUNG or more after its lease
checks first that it still holds the rows (delivery/dispatch.py), so what the others took is
not sent twice.

The same statement says whether any outbox row has been due for longer than OVERDUE and is
not leased. Rows are not announced (the replica that enqueues them sends them), so a row its
replica did not take, hung while still connected or killed before its pass, would otherwise
wait for the next thing that wakes another replica's dispatcher: the store wakes its own
dispatcher then.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from receiver.core.frozen import frozen
from receiver.store.codec import to_us
from receiver.store.postgres.outbox import LEASE
from receiver.store.postgres.statements import Connection

# The advisory locks' first key: "ackd" in ASCII. The second is the replica's number.
LOCK_CLASS = 0x61636B64
WATCH = 0.2  # seconds between two looks at who is alive
# Seconds a number holding leases stays unlocked before its leases are given back: well over
# the time replicas take to listen again after PostgreSQL restarted (store.RELISTEN apart,
# the restart itself a second or two), well under the lease (outbox.LEASE).
GRACE = 5.0
NUMBERS = 2**31 - 1  # numbers are positive int4s (pg_locks shows the key as an unsigned oid)
# How long a row may be due and not leased before every replica's dispatcher looks (its own
# takes it at once; within a second, with WATCH and a pass, if not).
OVERDUE = timedelta(milliseconds=500)
# A replica's listening connection runs a statement every BEAT seconds; one idle for HUNG
# seconds is a replica hung, and the leases it took HUNG ago or more go to the others. Well
# over the longest stall of a live replica's loop measured (a reload with 100,000 open
# incidents: 6 s), since a page such a stall kept from being recorded would go twice; well
# under the lease (60 s) and the systemd watchdog (30 s).
BEAT = 1.0
HUNG = 10.0
# The listening connection's application_name: the sessions whose silence says something.
LISTENER_NAME = "ackd-listener"

# The replicas alive: the advisory locks of LOCK_CLASS held in this database.
_LIVE = (
    "SELECT objid::bigint AS replica FROM pg_locks WHERE locktype = 'advisory'"
    f" AND classid = {LOCK_CLASS} AND objsubid = 2 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
# The replicas other than this one ($3) whose listening connection has been idle for $4
# seconds: hung, still connected.
_HUNG = (
    "SELECT l.objid::bigint AS replica FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    f" WHERE l.locktype = 'advisory' AND l.classid = {LOCK_CLASS} AND l.objsubid = 2"
    " AND l.granted"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    f" AND a.application_name = '{LISTENER_NAME}' AND a.state = 'idle'"
    " AND a.state_change < now() - make_interval(secs => $4::float8)"
    " AND l.objid::bigint IS DISTINCT FROM $3"
)
# One statement: who is alive; the leases of the numbers given ($2: unlocked for GRACE) that
# are still unlocked given back, due when they were taken (leased_from); the leases of the
# replicas hung that end before $5 (taken or renewed $4 seconds ago or more) given back so too;
# and the numbers other than this replica's ($3) that hold leases and no lock now (the
# sub-selects see the outbox as it was before the give-back). SKIP LOCKED: a row another
# replica is changing is its business (and a row a hung replica renews as it resumes is
# checked again once that commits: its lease then ends after $5, and it keeps it).
SWEEP = (
    f"WITH live AS ({_LIVE}), hung AS ({_HUNG}),"
    " orphans AS (UPDATE outbox SET next_attempt_at = leased_from, leased_by = NULL"
    "  WHERE id = ANY(ARRAY(SELECT id FROM outbox WHERE leased_by = ANY($2::bigint[])"
    "   AND leased_by NOT IN (SELECT replica FROM live) FOR UPDATE SKIP LOCKED))"
    "  RETURNING id),"
    " stalled AS (UPDATE outbox SET next_attempt_at = leased_from, leased_by = NULL"
    "  WHERE id = ANY(ARRAY(SELECT id FROM outbox WHERE leased_by IN (SELECT replica FROM hung)"
    "   AND leased_from IS NOT NULL AND next_attempt_at < $5 FOR UPDATE SKIP LOCKED))"
    "  RETURNING id)"
    " SELECT (SELECT coalesce(array_agg(replica ORDER BY replica), '{}') FROM live),"
    " (SELECT count(*) FROM orphans),"
    " EXISTS (SELECT 1 FROM outbox WHERE next_attempt_at <= $1),"
    " (SELECT coalesce(array_agg(DISTINCT leased_by), '{}') FROM outbox"
    "  WHERE leased_by IS NOT NULL AND leased_by NOT IN (SELECT replica FROM live)"
    "  AND leased_by IS DISTINCT FROM $3),"
    " (SELECT count(*) FROM stalled),"
    " (SELECT coalesce(array_agg(replica ORDER BY replica), '{}') FROM hung)"
)


@frozen(slots=True)
class Sweep:
    alive: tuple[int, ...]  # the numbers of the replicas alive, ascending
    orphans: int  # leases given back, of replicas gone
    overdue: bool  # a row due for longer than OVERDUE and not leased (a lease moves it later)
    unlocked: tuple[int, ...] = ()  # other numbers holding leases and no lock, as swept
    stalled: int = 0  # leases given back, of replicas hung (their listener silent for HUNG)
    hung: tuple[int, ...] = ()  # the numbers of the replicas hung, ascending


class Unlocked:
    """Since when this replica has seen each number hold leases and no lock, sweep after
    sweep (monotonic seconds); which of them have been so for GRACE."""

    def __init__(self) -> None:
        self._since: dict[int, float] = {}

    def expired(self, now: float) -> list[int]:
        return [n for n, since in self._since.items() if now - since >= GRACE]

    def seen(self, numbers: Iterable[int], now: float) -> None:
        """A sweep's numbers: a number not among them was locked again (or holds nothing)."""
        self._since = {n: self._since.get(n, now) for n in numbers}

    def forget(self) -> None:
        """A sweep failed: what was not seen is not known to have lasted."""
        self._since.clear()


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


async def sweep(
    conn: Connection, now: datetime, expired: Iterable[int] = (), own: int | None = None,
    unlocked: Unlocked | None = None,
) -> Sweep:
    """Who is alive, and the leases of the `expired` numbers still unlocked given back; the
    numbers holding leases and no lock go to `unlocked` (this replica's `own` never does)."""
    row = await conn.fetchrow(SWEEP, to_us(now - OVERDUE), list(expired), own, HUNG,
                              to_us(now + LEASE - timedelta(seconds=HUNG)))
    assert row is not None
    found = Sweep(tuple(int(n) for n in row[0]), int(row[1]), bool(row[2]),
                  tuple(int(n) for n in row[3]), int(row[4]), tuple(int(n) for n in row[5]))
    if unlocked is not None:
        unlocked.seen(found.unlocked, time.monotonic())
    return found


def share(deadline_id: int, alive: tuple[int, ...], replica: int) -> bool:
    """Whether this replica is the one to try this deadline first: the replicas alive take
    the deadlines in turn, by id. A replica not in the list yet (just started) shares none;
    with nobody listed, every replica tries everything."""
    if not alive:
        return True
    return alive[deadline_id % len(alive)] == replica
