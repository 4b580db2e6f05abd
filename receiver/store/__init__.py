"""Durable state behind a narrow interface: the SQLite implementation is the default."""

from receiver.store.records import ArmedDeadline, IncidentFilter, NewIncident, OutboxRow
from receiver.store.sqlite.store import SqliteStore, private_dir
from receiver.store.sqlite.transaction import Transaction

__all__ = [
    "ArmedDeadline", "IncidentFilter", "NewIncident", "OutboxRow", "SqliteStore", "Transaction",
    "private_dir",
]
