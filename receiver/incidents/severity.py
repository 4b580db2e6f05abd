"""How alerts change an open incident's severity: an alert more urgent than the incident's
severity that begins firing in it raises the incident, as a person's raise does
(assignment.py: escalation starts over under the new severity's steps, its stakeholders are
told). Alerts never lower a severity. Pure; the ingest path asks it only when a webhook
changed an open incident, where it reads the incident already, so a webhook that raises
nothing costs no store round trip."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from receiver.core.model import Alert, EventKind, Severity
from receiver.ingest.grouping import GroupChange

# The alert events of an episode that begins in the incident: a new alert, or one firing
# again after it ended. A merged start or a resend is the same episode, judged already.
_BEGINS = (EventKind.ALERT_ADDED, EventKind.ALERT_REFIRED)


def began(alerts: Sequence[Alert], severities: Sequence[str], change: GroupChange) -> set[str]:
    """The severity names of the alerts whose episode began in `change`: `severities` holds
    each alert's as routed (RoutedGroup)."""
    fingerprints = {e.detail["fingerprint"] for e in change.events if e.kind in _BEGINS}
    if not fingerprints:
        return set()
    return {severity for alert, severity in zip(alerts, severities, strict=True)
            if alert.fingerprint in fingerprints}


def raised_by_alerts(current: Severity, began: Iterable[Severity]) -> Severity | None:
    """The severity alerts that began firing in an open incident raise it to: the most urgent
    of theirs (rank 0 is the most severe), when it is more urgent than the incident's severity
    now; otherwise None, as alerts never lower a severity.

    Measured against the severity now, not the one it opened with: an incident a person
    lowered is raised again by a more urgent alert that begins firing after. They judged the
    alerts the incident held then; a new episode is news they have not seen (a resend of one
    they saw begins nothing and raises nothing), and a critical alert that pages nobody is
    the costlier mistake."""
    most = min(began, key=lambda s: s.rank, default=None)
    if most is None or most.rank >= current.rank:
        return None
    return most
