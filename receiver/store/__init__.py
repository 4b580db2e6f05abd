"""Durable state behind a narrow interface (base.py: the `Store` and `Transaction` protocols);
the SQLite implementation (sqlite/) is the default."""

from receiver.store.base import Store, Transaction
from receiver.store.records import (
    ArmedDeadline,
    IncidentFilter,
    NewIncident,
    OutboxMessage,
    OutboxRow,
    PlannedNotice,
)
from receiver.store.sqlite.store import SqliteStore, private_dir
from receiver.store.sqlite.transaction import SqliteTransaction

__all__ = [
    "ArmedDeadline", "IncidentFilter", "NewIncident", "OutboxMessage", "OutboxRow",
    "PlannedNotice", "SqliteStore", "SqliteTransaction", "Store", "Transaction", "private_dir",
]
