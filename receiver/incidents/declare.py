"""Declaring an incident by hand: one no alert raised (a customer reported it, or someone saw
it), with a team, a severity and a summary.

It is opened under a group key of its own (`declared:TEAM:N`), so no alert joins it, and it
escalates like any other through the policy of the team's first route (as drills do). It
counts as reported, not detected (`Incident.detection`, incidents.facts.is_reported).
"""

from __future__ import annotations

from datetime import datetime
from secrets import token_hex
from typing import Any

from receiver.config.model import Config
from receiver.core.errors import PayloadError
from receiver.core.frozen import frozen
from receiver.core.model import DECLARED_KEY_PREFIX, EventKind, TimelineEvent
from receiver.incidents.drills import route_for
from receiver.store.records import NewIncident

MAX_SUMMARY_CHARS = 300
SOURCES = ("customer", "observed")
_FIELDS = ("team", "severity", "summary", "source")


@frozen(slots=True)
class Declaration:
    team: str
    severity: str
    summary: str
    source: str  # customer (reported to us) or observed (seen by one of us)


def parse(body: Any, config: Config) -> Declaration:
    """The declaration a request body asks for, checked against the config; PayloadError
    naming the field otherwise."""
    if not isinstance(body, dict):
        raise PayloadError("body", "must be a JSON object with team, severity and summary")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise PayloadError(unknown[0], f"unknown field; known: {', '.join(_FIELDS)}")
    team = _text(body, "team")
    route_for(config, team)  # an unknown team, or one no route leads to, is named here
    severity = _text(body, "severity")
    names = [s.name for s in config.severities]
    if severity not in names:
        raise PayloadError("severity",
                           f"unknown severity {severity!r}; one of {', '.join(names)}")
    summary = " ".join(_text(body, "summary").split())  # one line, as pages show it
    if len(summary) > MAX_SUMMARY_CHARS:
        raise PayloadError("summary", f"must be at most {MAX_SUMMARY_CHARS} characters")
    source = body.get("source", "observed")
    if source not in SOURCES:
        raise PayloadError("source", f"must be one of {', '.join(SOURCES)}")
    return Declaration(team, severity, summary, str(source))


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(name, "must be a non-empty string")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise PayloadError(name, "holds an unpaired surrogate")
    return value.strip()


def new_incident(config: Config, d: Declaration, now: datetime) -> NewIncident:
    route = route_for(config, d.team)
    # Random too: two people declaring at the same instant open two incidents.
    key = f"{DECLARED_KEY_PREFIX}{d.team}:{int(now.timestamp() * 1_000_000)}:{token_hex(4)}"
    return NewIncident(
        group_key=key, route_id=route.id, team=d.team, severity=d.severity,
        policy=route.policy, group_labels={}, opened_at=now, external_url="",
        summary=d.summary,
    )


def opened_event(d: Declaration, actor: str, now: datetime) -> TimelineEvent:
    detail = {"declared": True, "source": d.source, "severity": d.severity,
              "summary": d.summary}
    return TimelineEvent(now, EventKind.OPENED, actor, detail)
