"""Durable state behind a narrow interface: the SQLite implementation is the default."""

from receiver.store.sqlite.store import IncidentFilter, SqliteStore, private_dir
from receiver.store.sqlite.transaction import ArmedDeadline, NewIncident, OutboxRow, Transaction

__all__ = [
    "ArmedDeadline", "IncidentFilter", "NewIncident", "OutboxRow", "SqliteStore", "Transaction",
    "private_dir",
]
