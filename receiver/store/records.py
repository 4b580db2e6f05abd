"""What the store takes and hands back: plain data, the same for every implementation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from receiver.core.model import IncidentState


@dataclass(frozen=True, slots=True)
class NewIncident:
    group_key: str
    route_id: str
    team: str
    severity: str
    policy: str
    group_labels: dict[str, str]
    opened_at: datetime
    external_url: str
    summary: str
    truncated_alerts: int = 0


@dataclass(frozen=True, slots=True)
class ArmedDeadline:
    id: int
    incident_id: int
    due: datetime
    kind: str
    key: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One notification waiting to go out (or to be retried)."""

    id: int
    incident_id: int
    created_at: datetime
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    state: IncidentState | None = None
    open_only: bool = False
    team: str | None = None
    severity: str | None = None
    limit: int = 100
    before_id: int | None = None


@dataclass(slots=True)
class StoreStats:
    commits: int = 0
    failures: int = 0
    last_error: str = ""
    failing: str = ""  # the error of the last batch, while no batch has committed since
    corrupt: str = ""  # the first damage found in the file; stays until restart
    on_commit: list[Callable[[float, int], None]] = field(default_factory=list)
