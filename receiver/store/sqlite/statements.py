"""What every seam of a SQLite transaction shares: one cursor, and the incidents the batch
has read or written."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from receiver.core.model import Incident


def _null(value: None) -> None:
    return value


# sqlite3 binds a None (NULL) only after it looked for a way to adapt it: two attribute
# look-ups that fail, each formatting an error message that is then dropped, 1,300
# instructions a NULL (a new incident's rows bind about 25). Registered, it is found at once.
sqlite3.register_adapter(type(None), _null)


class Statements:
    """The base of the transaction's seams (incidents, timeline, deadlines, outbox)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        # One cursor for every statement of the batch: a cursor per statement (what
        # Connection.execute makes) costs a third of a cheap statement's time.
        self._cur = conn.cursor()
        # Incidents as this batch last wrote or read them: a webhook reads its incident again
        # after each step of its change, and only this connection writes.
        self._incidents: dict[int, Incident] = {}
        # Their escalation state's JSON (None: none yet), where a statement of the batch read
        # it with the row or wrote it: the responder reads it after the ingest read the row.
        self._escalations: dict[int, str | None] = {}
        # The incidents this batch inserted, with the kinds of deadline armed for them since:
        # cancelling any other kind of theirs has nothing to delete, and needs no statement
        # (as on PostgreSQL).
        self._new_deadlines: dict[int, set[str]] = {}
        # For a group open_group found without an open incident, the group's last incident,
        # read in the same statement (last_incident_id).
        self._last_ids: dict[str, int | None] = {}
        # By incident, the keys (fingerprint, starts_at in µs) of alert rows this batch knows
        # exist: those open_group read (moved since, where moved). A known row is changed by
        # an UPDATE, without the labels an insert would need (write_alerts). Alert rows are
        # never deleted, but by a move onto their key.
        self._alert_keys: dict[int, set[tuple[str, int]]] = {}

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._cur.execute(sql, params).fetchall()
