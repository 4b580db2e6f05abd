"""Durable state behind a narrow interface: the SQLite implementation is the default."""

from receiver.store.sqlite import IncidentFilter, SqliteStore
from receiver.store.transaction import ArmedDeadline, NewIncident, Transaction

__all__ = ["ArmedDeadline", "IncidentFilter", "NewIncident", "SqliteStore", "Transaction"]
