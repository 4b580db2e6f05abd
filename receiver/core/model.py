"""The nouns of the domain: alerts, incidents and what happens to them.

Plain dataclasses and string enums, so they serialise to JSON and SQLite without ceremony.
Times are timezone-aware UTC datetimes everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from receiver.core.frozen import frozen


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


# A dict lookup: calling AlertStatus(text) costs a microsecond, on every alert of every webhook.
ALERT_STATUSES: Mapping[str, AlertStatus] = {status.value: status for status in AlertStatus}


@frozen(slots=True)
class GrafanaDetails:
    """What Grafana's webhook adds to an alert: where to silence it, the dashboard and panel
    (and a screenshot of it) it comes from, and the query values that made it fire. Kept with
    the alert so pages and the API can show them; routing and grouping never read them."""

    silence_url: str = ""
    dashboard_url: str = ""
    panel_url: str = ""
    image_url: str = ""
    values: Mapping[str, float | None] = field(default_factory=dict)  # by query ref: B, C
    value_string: str = ""  # the older form: "[ metric='' labels={} value=14151.3 ]"


@frozen(slots=True)
class Alert:
    """One alert as Alertmanager reports it. Its episode is the fingerprint over the range
    from starts_at to ends_at (open while firing); see grouping for when two reports are one."""

    fingerprint: str
    status: AlertStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None  # None while firing (Alertmanager sends the zero time)
    generator_url: str = ""
    grafana: GrafanaDetails | None = None  # only in Grafana's webhooks

    @property
    def episode(self) -> tuple[str, datetime]:
        return (self.fingerprint, self.starts_at)


@frozen(slots=True)
class Severity:
    """A severity level from config; rank 0 is the most severe (SEV1)."""

    name: str
    rank: int
    description: str = ""
    # "high" pages at any hour; "low" waits for the owning team's working hours.
    urgency: str = "high"
    # An open incident needs a status update this often; None: no cadence.
    status_every: timedelta | None = None


class IncidentState(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class EventKind(StrEnum):
    OPENED = "opened"
    ALERT_ADDED = "alert_added"
    ALERT_RESOLVED = "alert_resolved"
    ALERT_REFIRED = "alert_refired"
    ALERT_MERGED = "alert_merged"  # the held episode was reported with an earlier start
    ALERTS_TRUNCATED = "alerts_truncated"
    RESOLVED = "resolved"
    STALE = "stale"  # Alertmanager has not reported the incident's alerts for stale_after
    ACKNOWLEDGED = "acknowledged"
    UNACKNOWLEDGED = "unacknowledged"
    SNOOZED = "snoozed"
    SNOOZE_ENDED = "snooze_ended"
    STEP_FIRED = "step_fired"
    # A step came due for severities the incident no longer has (lowered since it was armed).
    STEP_SKIPPED = "step_skipped"
    ESCALATION_EXHAUSTED = "escalation_exhausted"
    ESCALATION_DEFERRED = "escalation_deferred"  # low urgency outside working hours
    RE_ESCALATED = "re_escalated"  # acknowledged but left alone too long
    NOTIFICATION_SENT = "notification_sent"
    NOTIFICATION_FAILED = "notification_failed"
    NOTIFICATION_SUPPRESSED = "notification_suppressed"  # rate limited or bundled
    PAGE_SUPPRESSED = "page_suppressed"  # held back by a maintenance window
    MAINTENANCE_ENDED = "maintenance_ended"  # no window holds it: escalation from the start
    # The incident layer (receiver/incidents/): people working the incident.
    ROLE_ASSIGNED = "role_assigned"  # detail: role, user, previous (a hand-over if not null)
    ROLE_CLEARED = "role_cleared"
    NOTE = "note"
    STATUS_UPDATE = "status_update"  # a note from whoever speaks for the incident
    STATUS_DUE = "status_due"  # no status update for the cadence: who was reminded
    REASSIGNED = "reassigned"  # to a team (its policy) or a person; escalation starts over
    RESPONDER_ADDED = "responder_added"  # paged into the incident; the owner is unchanged
    SEVERITY_CHANGED = "severity_changed"  # raised: escalation starts over; lowered: no page


class MessageReason(StrEnum):
    """Why a message goes out. A page asks someone to act; a note tells what happened."""

    TRIGGERED = "triggered"  # the first step this incident's severity reaches
    ESCALATED = "escalated"  # a later step
    REMINDER = "reminder"  # the steps again, in a repeat cycle
    RE_ESCALATED = "re_escalated"  # a new run: unacknowledged, snooze over, left alone
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    STAKEHOLDER_DECLARED = "stakeholder_declared"
    STAKEHOLDER_RESOLVED = "stakeholder_resolved"
    # The escalation ran out: every step (and repeat) of the policy fired, and nobody
    # acknowledged within the last one's wait.
    STAKEHOLDER_EXHAUSTED = "stakeholder_exhausted"
    STALE = "stale"  # Alertmanager stopped reporting the incident's alerts
    STATUS_DUE = "status_due"  # no status update for the severity's cadence (incidents/)
    RESPONDER_ADDED = "responder_added"  # a person paged into an open incident by another
    # A new run a person started by changing what the incident is (incidents/assignment.py):
    # its pages say why, not "acknowledged earlier" as a re_escalated page does.
    REASSIGNED = "reassigned"  # to another team or a person
    SEVERITY_RAISED = "severity_raised"  # under the steps of a more severe severity
    # The steps again from the first once a maintenance window that held the pages ended:
    # its pages say which window held them and since when, not a first page's nothing.
    AFTER_MAINTENANCE = "after_maintenance"
    # A note to whoever held an acknowledged incident that another person took over (took it
    # themselves, actor = changed_to) or reassigned to a person or a team (changed_to: the
    # person, or "team X"): not theirs now.
    TAKEN_OVER = "taken_over"

    @property
    def is_page(self) -> bool:
        return self in PAGE_REASONS


PAGE_REASONS = frozenset({
    MessageReason.TRIGGERED, MessageReason.ESCALATED, MessageReason.REMINDER,
    MessageReason.RE_ESCALATED, MessageReason.RESPONDER_ADDED, MessageReason.REASSIGNED,
    MessageReason.SEVERITY_RAISED, MessageReason.AFTER_MAINTENANCE,
})


class Action(StrEnum):
    """What a person does to an incident: the one list of the responder's action names. The
    API's route and its OpenAPI document, the signed links (notify/links), the web page's
    buttons (web/ui/pages) and the CLI's commands take their names from here, each the part
    of it that it offers, so none can offer a name the responder does not know."""

    ACK = "ack"
    RESOLVE = "resolve"
    SNOOZE = "snooze"
    UNACK = "unack"

    @property
    def verb(self) -> str:
        """The action as a verb, for whatever offers it: a link's button, the API's summary."""
        return _WORDS[self][0]

    @property
    def done(self) -> str:
        """The action in the past tense, for the log and the page a link's action ends on."""
        return _WORDS[self][1]


# (verb, past tense) beside the names, so an action added without its words fails at once.
# "un-acknowledge" but "unacknowledged": the API's summary and the log have long said so.
_WORDS: Mapping[Action, tuple[str, str]] = {
    Action.ACK: ("acknowledge", "acknowledged"),
    Action.RESOLVE: ("resolve", "resolved"),
    Action.SNOOZE: ("snooze", "snoozed"),
    Action.UNACK: ("un-acknowledge", "unacknowledged"),
}


@frozen(slots=True)
class TimelineEvent:
    at: datetime
    kind: EventKind
    actor: str = "ackd"
    detail: Mapping[str, Any] = field(default_factory=dict)


# A drill's incident is opened under a group key of its own (see incidents.drills): no alert
# can join it, and the response-time metrics and reports leave it out.
DRILL_KEY_PREFIX = "drill:"
# An incident declared by hand (customer-reported or observed; see incidents.declare) is
# opened under a group key of its own too: no alert joins it, and it counts as reported.
DECLARED_KEY_PREFIX = "declared:"


@frozen(slots=True)
class Incident:
    """A group of alerts that share a route and its group_by label values, and its response."""

    id: int
    group_key: str
    route_id: str
    team: str
    severity: str
    policy: str
    group_labels: dict[str, str]
    state: IncidentState
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    previous_id: int | None = None
    truncated_alerts: int = 0
    external_url: str = ""
    summary: str = ""

    @property
    def is_open(self) -> bool:
        return self.state is not IncidentState.RESOLVED

    @property
    def acknowledgement_stands(self) -> bool:
        """Whether `acknowledged_by` and `acknowledged_at` still say who holds the incident,
        since when: not while it is triggered again (after an unack, a snooze's end, an
        acknowledgement that ran out), when nobody holds it. The fields keep the last
        acknowledgement even then; the first, MTTA's, is on the timeline."""
        return self.acknowledged_by is not None and self.state is not IncidentState.TRIGGERED

    def resolution(self, actor: str, now: datetime) -> dict[str, Any]:
        """The fields its resolution by `actor` at `now` sets. Resolved while triggered
        (never acknowledged, or let go since: an unack, a snooze's end, an acknowledgement
        that ran out), nobody held it: its acknowledgement fields are cleared too, so that
        the resolved incident names no holder (`acknowledgement_stands`, the API, the page)
        and counts as resolved unacknowledged (ackd_incidents_resolved_unacknowledged_total,
        the reports), the last holder's ack having stood only until they let it go. The
        first acknowledgement, MTTA's, stays on the timeline."""
        fields: dict[str, Any] = {
            "state": IncidentState.RESOLVED, "resolved_at": now, "resolved_by": actor}
        if self.state is IncidentState.TRIGGERED and self.acknowledged_by is not None:
            fields.update(acknowledged_by=None, acknowledged_at=None)
        return fields

    @property
    def resolved_unacknowledged(self) -> bool:
        """Resolved while nobody held it (see `resolution`)."""
        return self.state is IncidentState.RESOLVED and self.acknowledged_at is None

    @property
    def is_drill(self) -> bool:
        return self.group_key.startswith(DRILL_KEY_PREFIX)

    @property
    def is_declared(self) -> bool:
        return self.group_key.startswith(DECLARED_KEY_PREFIX)

    @property
    def detection(self) -> str:
        """How it came to be: `detected` (an alert raised it), `reported` (declared by a
        person) or `drill`."""
        if self.is_drill:
            return "drill"
        return "reported" if self.is_declared else "detected"


# The actor of what Alertmanager's webhooks did: an incident resolved because it reported every
# alert resolved (its time to resolve ends at the alerts' end: incidents.facts.problem_ended).
ALERTMANAGER_ACTOR = "alertmanager"

# The actor of a resolution nobody made: Alertmanager stopped reporting the incident's alerts
# (see escalation's staleness), so nobody judged its episodes over.
STALE_ACTOR = "stale"


@frozen(slots=True)
class KnownAlert:
    """The current episode of one fingerprint inside an open incident."""

    starts_at: datetime
    status: AlertStatus
    ends_at: datetime | None = None  # when a resolved episode ended, as Alertmanager said

    @property
    def end(self) -> datetime:
        """The end of a resolved episode: never before its start (an odd sender may omit it)."""
        ends_at = self.ends_at
        return self.starts_at if ends_at is None or ends_at < self.starts_at else ends_at


@frozen(slots=True)
class OpenGroup:
    """A group's open incident and the episodes it holds, as the store read them."""

    incident_id: int
    alerts: Mapping[str, KnownAlert]  # by fingerprint


# The episodes of one fingerprint that are over, in any incident of the group, as
# (start, end): resolved by Alertmanager, or still firing in an incident a person resolved
# (over for us when they resolved it).
PastEpisodes = Sequence[tuple[datetime, datetime]]
