"""Heartbeats: the dead man's switch, as pure functions of the config, arrivals and `now`.

A heartbeat is a signal expected at least every `every`: an always-firing alert such as
Prometheus' `Watchdog` (matched by the heartbeat's matchers, as kube-prometheus ships it, so
the whole pipeline Prometheus -> Alertmanager -> ackd is proven alive), or a plain
`POST /api/v1/heartbeats/{name}` from a cron job. When none arrived for `every`, the heartbeat
is late: ackd opens an incident for its team, with its severity and policy, by reporting a
synthetic alert (`missing_alert`) through the ordinary ingest path, so it is grouped, escalated,
acknowledged and measured like any other. When the heartbeat arrives again, the same alert is
reported resolved and the incident resolves.

The wait is counted from the last arrival, but never from before ackd started: while ackd was
down nobody could see arrivals, so a restart delays the verdict by up to `every`, and never
brings it early (as for stale incidents). An incident opened before the restart stays open
until the heartbeat arrives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from receiver.alertmanager.matchers import Matcher
from receiver.alertmanager.webhook import fingerprint_of
from receiver.core.durations import format_duration
from receiver.core.frozen import frozen
from receiver.core.model import Alert, AlertStatus
from receiver.routing.tree import Match, Route, group_key

ALERTNAME = "HeartbeatMissing"
LABEL = "heartbeat"  # the synthetic alert's label naming the heartbeat; its only group label
ROUTE_PREFIX = "heartbeat/"  # incidents of heartbeats carry route ids no route tree can make


class State(StrEnum):
    WAITING = "waiting"  # nothing arrived yet, and `every` has not passed since ackd started
    OK = "ok"
    LATE = "late"


@frozen
class Heartbeat:
    """A heartbeat as configured. Without matchers it is fed only by its API endpoint."""

    name: str
    every: timedelta
    team: str
    severity: str
    policy: str
    matchers: tuple[Matcher, ...] = ()
    summary: str = ""

    def __post_init__(self) -> None:
        if self.every <= timedelta(0):
            raise ValueError(f"every must be longer than 0s, got {self.every}")

    def matches(self, labels: Mapping[str, str]) -> bool:
        return bool(self.matchers) and all(m.matches(labels) for m in self.matchers)


def due(every: timedelta, last: datetime | None, started_at: datetime) -> datetime:
    """When the heartbeat becomes late unless it arrives: `every` after the last arrival or
    after ackd started, whichever is later."""
    since = started_at if last is None else max(last, started_at)
    return since + every


def state(heartbeat: Heartbeat, last: datetime | None, started_at: datetime,
          now: datetime) -> State:
    if now >= due(heartbeat.every, last, started_at):
        return State.LATE
    return State.WAITING if last is None else State.OK


@frozen
class Split:
    """A webhook's alerts: the heartbeats they are arrivals of, and every other alert."""

    arrived: frozenset[str]
    rest: list[Alert]
    taken: int  # alerts a heartbeat took (firing or resolved): they open no incident


def split(heartbeats: Sequence[Heartbeat], alerts: Sequence[Alert]) -> Split:
    """Alerts a heartbeat matches are the heartbeat's, not incidents: a firing one is an
    arrival; a resolved one (Prometheus stopped it on purpose) is taken without counting,
    so the heartbeat goes late when nothing else comes."""
    if not heartbeats:
        return Split(frozenset(), list(alerts), 0)
    arrived: set[str] = set()
    rest: list[Alert] = []
    for alert in alerts:
        names = [h.name for h in heartbeats if h.matches(alert.labels)]
        if not names:
            rest.append(alert)
        elif alert.status is AlertStatus.FIRING:
            arrived.update(names)
    return Split(frozenset(arrived), rest, len(alerts) - len(rest))


def labels(heartbeat: Heartbeat) -> dict[str, str]:
    return {"alertname": ALERTNAME, LABEL: heartbeat.name, "team": heartbeat.team}


def missing_alert(heartbeat: Heartbeat, late_since: datetime, last: datetime | None) -> Alert:
    """The alert that stands for a late heartbeat, firing since it became late."""
    seen = "never arrived" if last is None else f"last arrived {last.isoformat()}"
    summary = heartbeat.summary or f"heartbeat {heartbeat.name} is late: {seen}"
    every = format_duration(heartbeat.every)
    annotations = {"summary": summary, "description": f"expected at least every {every}; {seen}"}
    return Alert(fingerprint_of(labels(heartbeat)), AlertStatus.FIRING, labels(heartbeat),
                 annotations, late_since, None)


def returned_alert(heartbeat: Heartbeat, at: datetime) -> Alert:
    """The same alert, resolved at `at`: a resolution ends whatever episode is held, whatever
    start it carries (see grouping), so it need not know when the heartbeat went late."""
    return Alert(fingerprint_of(labels(heartbeat)), AlertStatus.RESOLVED, labels(heartbeat),
                 {}, at, at)


def route_of(heartbeat: Heartbeat) -> Route:
    return Route(
        id=ROUTE_PREFIX + heartbeat.name, name=heartbeat.name, matchers=(),
        team=heartbeat.team, policy=heartbeat.policy, severity=heartbeat.severity,
        severity_rule=None, group_by=(LABEL,), group_by_all=False, continue_=False,
    )


def match_of(heartbeat: Heartbeat) -> Match:
    """Where the heartbeat's incident goes: its own team, policy and severity, and a group of
    its own that no route of the tree can share."""
    route = route_of(heartbeat)
    group = {LABEL: heartbeat.name}
    return Match(route, heartbeat.team, heartbeat.policy, heartbeat.severity, group,
                 group_key(route.id, group))


def by_name(heartbeats: Iterable[Heartbeat]) -> dict[str, Heartbeat]:
    return {h.name: h for h in heartbeats}


