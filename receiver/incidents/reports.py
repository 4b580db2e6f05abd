"""Reports over a window of incidents: a pure function of their records and the window.

- MTTD, MTTA and MTTR per team and severity, each as mean, p50 and p90 in seconds: time to
  detect runs from the earliest alert start to the incident's opening (incidents raised by
  alerts only), to acknowledge from the first page to the first acknowledgement (facts.first_page:
  a low-urgency incident's wait for working hours and a maintenance window's hold are nobody's
  response time; one acknowledged before any page is left out), to resolve from opening to
  resolution. Percentiles are nearest-rank: p90 of n values is the
  ceil(0.9 n)-th smallest, always a value that occurred.
- Incidents per severity per ISO week (UTC).
- Repeat-incident rate: the share of incidents holding an alert (a fingerprint) that an
  earlier incident held, opened at most REPEAT_WINDOW before it.
- Escalation rate: the share of incidents that needed step 2 or later (or a repeat of the
  policy). Steps are the policy's own, as ackd_escalation_steps counts them: the page to a
  person an incident was reassigned to is `reassigned`, no step of the policy, and the policy's
  steps behind them keep their numbers, so a person who did not answer is no escalation.
  Acknowledgement by step: how many were first acknowledged while each step's page was the
  last one out (`reassigned`: the person's).
- Resolved unacknowledged: the share of resolved incidents that nobody held when they were
  resolved (never acknowledged, or let go since: Incident.resolution), as
  ackd_incidents_resolved_unacknowledged_total counts them.
- Detected versus reported: raised by an alert, or declared by a person.
Drills are counted apart and kept out of every figure.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, field
from datetime import datetime, timedelta
from typing import Any

from receiver.core.frozen import frozen
from receiver.escalation.policy import REASSIGNED_STEP
from receiver.incidents.facts import Facts

REPEAT_WINDOW = timedelta(days=30)


@frozen(slots=True)
class Stats:
    """Seconds: how many values, their mean, p50 and p90 (None without values)."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None


@frozen(slots=True)
class TeamSeverity:
    team: str
    severity: str
    incidents: int
    detect: Stats
    acknowledge: Stats
    resolve: Stats


@frozen(slots=True)
class Share:
    part: int
    whole: int

    @property
    def rate(self) -> float | None:
        return self.part / self.whole if self.whole else None


@frozen(slots=True)
class Report:
    since: datetime
    until: datetime
    incidents: int
    drills: int
    by_team_severity: tuple[TeamSeverity, ...]
    per_week: dict[str, dict[str, int]]  # ISO week -> severity -> incidents
    repeats: Share
    escalated: Share
    resolved_unacknowledged: Share  # of the resolved ones
    acknowledged_by_step: dict[str, int]  # step name (facts.StepFired.name) -> incidents
    detected: int
    reported: int
    severities: tuple[str, ...] = field(default=())


def stats(values: Iterable[float]) -> Stats:
    ordered = sorted(values)
    if not ordered:
        return Stats(0, None, None, None)
    return Stats(len(ordered), sum(ordered) / len(ordered), _rank(ordered, 0.5),
                 _rank(ordered, 0.9))


def _rank(ordered: Sequence[float], q: float) -> float:
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def week_of(at: datetime) -> str:
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


def build(
    records: Sequence[Facts],
    since: datetime,
    until: datetime,
    *,
    is_drill: Callable[[Facts], bool],
    is_reported: Callable[[Facts], bool],
    severity_order: Sequence[str] = (),
) -> Report:
    """The report on incidents opened in [since, until]. `records` may reach back further
    (up to REPEAT_WINDOW before `since`): those only tell whether an alert repeated."""
    window = [f for f in records if since <= f.incident.opened_at <= until]
    drills = [f for f in window if is_drill(f)]
    real = [f for f in window if not is_drill(f)]
    repeats = _repeat_test([f for f in records if not is_drill(f)])
    acked = Counter(f.ack_step for f in real if f.ack_step is not None)
    reported = sum(1 for f in real if is_reported(f))
    resolved = [f.incident for f in real if not f.incident.is_open]
    return Report(
        since=since,
        until=until,
        incidents=len(real),
        drills=len(drills),
        by_team_severity=_by_team_severity(real, severity_order),
        per_week=_per_week(real),
        repeats=Share(sum(1 for f in real if repeats(f)), len(real)),
        escalated=Share(sum(1 for f in real if f.escalated), len(real)),
        resolved_unacknowledged=Share(
            sum(1 for i in resolved if i.resolved_unacknowledged), len(resolved)),
        acknowledged_by_step=dict(sorted(acked.items(), key=_step_order)),
        detected=len(real) - reported,
        reported=reported,
        severities=tuple(severity_order),
    )


def _by_team_severity(
    facts: Sequence[Facts], severity_order: Sequence[str]
) -> tuple[TeamSeverity, ...]:
    groups: dict[tuple[str, str], list[Facts]] = defaultdict(list)
    for f in facts:
        groups[(f.incident.team, f.incident.severity)].append(f)
    rank = {name: i for i, name in enumerate(severity_order)}
    keys = sorted(groups, key=lambda k: (k[0], rank.get(k[1], len(rank)), k[1]))
    return tuple(
        TeamSeverity(
            team, severity, len(groups[(team, severity)]),
            stats(_seconds(f.time_to_detect for f in groups[(team, severity)])),
            stats(_seconds(f.time_to_acknowledge for f in groups[(team, severity)])),
            stats(_seconds(f.time_to_resolve for f in groups[(team, severity)])),
        )
        for team, severity in keys
    )


def _step_order(item: tuple[str, int]) -> tuple[int, int]:
    """The reassigned person first (paged first), then the policy's steps in order."""
    return (0, 0) if item[0] == REASSIGNED_STEP else (1, int(item[0]))


def _seconds(lengths: Iterable[timedelta | None]) -> list[float]:
    return [d.total_seconds() for d in lengths if d is not None]


def _per_week(facts: Sequence[Facts]) -> dict[str, dict[str, int]]:
    weeks: dict[str, Counter[str]] = defaultdict(Counter)
    for f in facts:
        weeks[week_of(f.incident.opened_at)][f.incident.severity] += 1
    return {week: dict(sorted(counts.items())) for week, counts in sorted(weeks.items())}


def _repeat_test(history: Sequence[Facts]) -> Callable[[Facts], bool]:
    """Whether an earlier incident, opened at most REPEAT_WINDOW before one, held any of its
    alerts; each fingerprint's incidents are indexed once."""
    held: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for f in history:
        for fingerprint in f.fingerprints:
            held[fingerprint].append((f.incident.opened_at, f.incident.id))

    def repeats(f: Facts) -> bool:
        start = f.incident.opened_at - REPEAT_WINDOW
        return any(
            start <= opened <= f.incident.opened_at and number < f.incident.id
            for fingerprint in f.fingerprints
            for opened, number in held.get(fingerprint, ())
        )

    return repeats


def to_json(report: Report) -> dict[str, Any]:
    """The report as the API answers it: seconds as numbers, rates as fractions."""
    return {
        "since": report.since,
        "until": report.until,
        "incidents": report.incidents,
        "drills": report.drills,
        "by_team_severity": [
            {"team": r.team, "severity": r.severity, "incidents": r.incidents,
             "mttd": asdict(r.detect), "mtta": asdict(r.acknowledge), "mttr": asdict(r.resolve)}
            for r in report.by_team_severity
        ],
        "per_week": report.per_week,
        "repeat_rate": _share(report.repeats),
        "escalation_rate": _share(report.escalated),
        "resolved_unacknowledged": _share(report.resolved_unacknowledged),
        "acknowledged_by_step": report.acknowledged_by_step,
        "detected": report.detected,
        "reported": report.reported,
    }


def _share(share: Share) -> dict[str, Any]:
    return {"count": share.part, "incidents": share.whole, "rate": share.rate}
