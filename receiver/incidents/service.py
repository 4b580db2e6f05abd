"""The incident use cases: alerts in, people acting on incidents.

A thin orchestration layer: it asks the pure modules (grouping, routing, escalation) what to
do and has the store write it in one transaction. Metrics are observed only after the commit,
so a failed write never counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Protocol

from receiver.alertmanager.webhook import WebhookMessage, parse_webhook
from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.model import (
    ALERTMANAGER_ACTOR,
    Alert,
    AlertStatus,
    EventKind,
    Incident,
    OpenGroup,
    Severity,
    TimelineEvent,
)
from receiver.escalation import staleness
from receiver.escalation.staleness import Reports, StaleRule
from receiver.heartbeats import domain as heartbeats
from receiver.incidents import facts, severity
from receiver.ingest import grouping
from receiver.ingest.grouping import (
    AlertOutcome,
    GroupChange,
    HeldGroups,
    RoutedBodies,
    RoutedBody,
    RoutedGroup,
)
from receiver.store import NewIncident, Store, Transaction
from receiver.telemetry.logformat import fields
from receiver.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


RaiseSeverity = Callable[[Transaction, Incident, Severity, str, datetime], Awaitable[Incident]]


class Lifecycle(Protocol):
    """What escalation does when an incident opens, changes or resolves (same transaction)."""

    async def opened(self, tx: Transaction, incident: Incident, now: datetime) -> None: ...

    async def updated(self, tx: Transaction, incident: Incident, now: datetime) -> None: ...

    async def resolved(
        self, tx: Transaction, incident: Incident, actor: str, now: datetime
    ) -> None: ...

    async def reported(
        self, tx: Transaction, incident_id: int, rule: StaleRule | None, now: datetime
    ) -> None: ...


@dataclass(slots=True)
class IngestResult:
    alerts: int = 0
    opened: list[Incident] = field(default_factory=list)
    resolved: list[Incident] = field(default_factory=list)
    # The ends (endsAt) of each resolved incident's alerts, by incident id: its time to
    # resolve ends at the latest (facts.problem_ended), not at this webhook's arrival.
    alert_ends: dict[int, list[datetime | None]] = field(default_factory=dict)
    outcomes: dict[AlertOutcome, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)  # group key -> incident id

    def add(self, other: IngestResult) -> None:
        """Take in what another part of the same webhook did (its `alerts` are not added:
        the whole webhook's count is set once)."""
        self.opened += other.opened
        self.resolved += other.resolved
        self.alert_ends.update(other.alert_ends)
        for outcome, count in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + count
        self.groups.update(other.groups)


class Incidents:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        config: Config,
        lifecycle: Lifecycle | None = None,
        reports: Reports | None = None,
        *,
        shared: bool = False,
    ) -> None:
        self._store = store
        # Other replicas write the store too: a memo answers only after the store confirms
        # that each incident's row is still at the version remembered (HeldGroups).
        self._shared = shared
        self._clock = clock
        self._metrics = metrics
        self._config = config
        self.lifecycle = lifecycle
        # When a webhook last reached each open incident: what stale_after is measured by.
        self.reports = reports if reports is not None else Reports(clock.now())
        budget = config.memo_bytes
        self.held = HeldGroups(budget // 2)
        self.bodies = RoutedBodies(budget - budget // 2)
        # Told the heartbeats that arrived in a webhook, before it is answered (heartbeats/).
        self.heartbeats: Callable[[frozenset[str]], Awaitable[object]] | None = None
        # Raises an open incident's severity in the ingest transaction, as a person's change
        # does (the incident desk's set_severity), when a more urgent alert joins it.
        self.raise_severity: RaiseSeverity | None = None
        # One thread: a large body's parsing and routing wait for it rather than add threads
        # that would each take the GIL from the loop.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ackd-webhook")

    def close(self) -> None:
        self._reader.shutdown(wait=True)

    def use_config(self, config: Config) -> None:
        """A new config (a reload): bodies routed by the old route tree are forgotten, and
        the memos share the new webhook.memo_bytes, half each."""
        self._config = config
        self.bodies.clear()
        budget = config.memo_bytes
        self.held.memo.resize(budget // 2)
        self.bodies.memo.resize(budget - budget // 2)

    async def ingest_body(self, body: bytes) -> IngestResult:
        """A webhook's body: a resend of a body parsed and routed before is answered from
        memory when it repeats what is committed; any other body is parsed and ingested.
        Raises PayloadError for a body that is not a webhook."""
        name = self.bodies.name(body)
        routed = self.bodies.get(name)
        if routed is not None:
            result = await self._repeated(routed)
            if result is not None:
                self._note_reports(result)
                self._observe(routed.alerts, routed.firing, 0, result)
                return result
        config = self._config
        if len(body) <= ON_LOOP_BYTES:
            message, beats, groups = _read(body, config)
        else:
            # Beside the loop: the loop takes the GIL back every switch interval (5 ms), so
            # other requests go on while a megabyte of alerts is parsed and routed.
            loop = asyncio.get_running_loop()
            message, beats, groups = await loop.run_in_executor(
                self._reader, _read, body, config)
        return await self._ingest(config, message, groups, name, beats)

    async def ingest(self, message: WebhookMessage) -> IngestResult:
        """Ingest a parsed webhook, within the config's webhook limits."""
        config = self._config
        config.limits.check_alerts(len(message.alerts), [len(a.labels) for a in message.alerts])
        beats = heartbeats.split(config.heartbeats, message.alerts)
        groups = grouping.partition(config.route, beats.rest)
        config.limits.check_groups(groups)
        return await self._ingest(config, message, groups, None, beats)

    async def ingest_routed(
        self, message: WebhookMessage, groups: dict[str, RoutedGroup]
    ) -> IngestResult:
        """Ingest alerts ackd made itself (a late heartbeat's) with their route decided."""
        return await self._ingest(self._config, message, groups, None, None)

    async def _ingest(
        self,
        config: Config,
        message: WebhookMessage,
        groups: dict[str, RoutedGroup],
        name: int | None,
        beats: heartbeats.Split | None,
    ) -> IngestResult:
        """`name` (RoutedBodies.name of the body) lets a resend of the same bytes skip the
        parsing and routing. `beats`: the heartbeats among the alerts, taken out of `groups`."""
        routed = grouping.routed_body(message.alerts, groups)
        # A webhook that says Alertmanager left alerts out is recorded on the incident; one
        # carrying a heartbeat must reach it each time, so neither is answered from memory.
        taken = beats is not None and beats.taken > 0
        repeatable = bool(groups) and not message.truncated_alerts and not taken
        result = await self._repeated(routed) if repeatable else None
        if result is None:
            result = await self._write(config, groups, message)
        if beats is not None and beats.arrived and self.heartbeats is not None:
            await self.heartbeats(beats.arrived)
        # Routed by a config a reload replaced meanwhile: not worth remembering.
        if repeatable and name is not None and not result.resolved and config is self._config:
            self.bodies.put(name, routed)
        self._note_reports(result)
        self._observe(routed.alerts, routed.firing, message.truncated_alerts, result)
        return result

    async def _write(
        self, config: Config, groups: dict[str, RoutedGroup], message: WebhookMessage
    ) -> IngestResult:
        """One store job per slice of groups (see _slices), each committed before the next is
        queued: other webhooks' writes come between them. A failure part-way answers 503 and
        Alertmanager's retry finds the slices before it committed, and changes nothing there.
        A store may run a job more than once (PostgreSQL, after a race lost to another
        replica): each run counts into a result of its own, and only the committed run's is
        taken in."""
        now = self._clock.now()
        result = IngestResult(alerts=len(message.alerts))

        async def job(tx: Transaction, part: list[tuple[str, RoutedGroup]]) -> IngestResult:
            done = IngestResult()
            for key, group in part:
                await self._ingest_group(tx, config, key, group, message, now, done)
            return done

        for part in _slices(groups):
            result.add(await self._store.write(partial(job, part=part)))
        return result

    def _note_reports(self, result: IngestResult) -> None:
        """Alertmanager reported these incidents' alerts now (see staleness)."""
        now = self._clock.now()
        for incident_id in result.groups.values():
            self.reports.seen(incident_id, now)
        for incident in result.resolved:
            self.reports.forget(incident.id)

    async def _repeated(self, routed: RoutedBody) -> IngestResult | None:
        """The result of a webhook that repeats, group by group, what the open incidents hold
        as committed: every alert a duplicate and nothing to write, so no transaction. None
        when any group may change. On a shared store, also None unless every incident is
        still open at the version remembered: another replica's commit may have changed it
        (one read, no lock: the answer is the one a transaction would have given at that
        instant, as on SQLite a resend racing a change gets the answer of a moment earlier)."""
        result = IngestResult(alerts=routed.alerts)
        versions: dict[int, int] = {}
        for key, digest, alerts in routed.groups:
            held = self.held.repeated(key, digest)
            if held is None:
                return None
            incident_id, version = held
            result.groups[key] = incident_id
            versions[incident_id] = version
            duplicates = result.outcomes.get(AlertOutcome.DUPLICATE, 0)
            result.outcomes[AlertOutcome.DUPLICATE] = duplicates + alerts
        if self._shared and await self._store.open_versions(list(versions)) != versions:
            return None
        return result

    async def _ingest_group(
        self,
        tx: Transaction,
        config: Config,
        key: str,
        group: RoutedGroup,
        message: WebhookMessage,
        now: datetime,
        result: IngestResult,
    ) -> None:
        open_group = await tx.open_group(key)
        # The group's last incident, when none is open: a new one links to it.
        previous = None if open_group is not None else await tx.last_incident_id(key)
        change = await _change(tx, key, group.alerts, open_group, previous, now)
        for outcome, count in change.outcomes.items():
            result.outcomes[outcome] = result.outcomes.get(outcome, 0) + count
        if open_group is None and not change.opens:
            return
        if change.opens:
            new = self._new_incident(config, key, group, change, message, now)
            incident_id = await tx.insert_incident(new, previous)
        else:
            assert open_group is not None
            incident_id = open_group.incident_id
        result.groups[key] = incident_id
        await self._remember(tx, key, incident_id, change, group, now)
        await self._record(tx, incident_id, change, message, now)
        if not change.changed:
            return
        incident = await tx.incident(incident_id)
        if change.opens:
            result.opened.append(incident)
        if change.resolves:
            await self._resolve(tx, incident, ALERTMANAGER_ACTOR, now)
            result.resolved.append(await tx.incident(incident_id))
            result.alert_ends[incident_id] = [k.ends_at for k in change.held.values()]
        elif not change.opens:
            await self._updated(tx, config, incident, group, change, now)
        if change.opens and self.lifecycle is not None and not change.resolves:
            await self.lifecycle.opened(tx, incident, now)

    async def _updated(
        self,
        tx: Transaction,
        config: Config,
        incident: Incident,
        group: RoutedGroup,
        change: GroupChange,
        now: datetime,
    ) -> None:
        """Alerts changed an open incident: one more urgent than it raises it (severity.py);
        otherwise escalation hears of the change."""
        raised = _raised(config, incident, group, change)
        if raised is not None and self.raise_severity is not None:
            # Escalation starts over under it: no reack to push as `updated` would.
            await self.raise_severity(tx, incident, raised, "alertmanager", now)
        elif self.lifecycle is not None:
            await self.lifecycle.updated(tx, incident, now)

    async def _remember(
        self,
        tx: Transaction,
        key: str,
        incident_id: int,
        change: GroupChange,
        group: RoutedGroup,
        now: datetime,
    ) -> None:
        """What the group's incident holds, for resends (HeldGroups), once committed; and for
        an incident still open, that Alertmanager reported it (its stale deadline)."""
        if change.resolves:
            tx.after_commit(partial(self.held.forget, key))
            return
        digest = grouping.held_digest(change.held)
        tx.after_commit_versioned(incident_id, partial(self.held.hold, key, incident_id, digest))
        if self.lifecycle is not None:
            await self.lifecycle.reported(tx, incident_id, group.match.route.stale, now)

    @staticmethod
    def _new_incident(
        config: Config,
        key: str,
        group: RoutedGroup,
        change: GroupChange,
        message: WebhookMessage,
        now: datetime,
    ) -> NewIncident:
        opening = {a.fingerprint for a in change.writes}
        # The opening alerts' severity names once each, in their order (a group's alerts
        # mostly share one): the most urgent, the first of them on a tie, as per alert.
        names = dict.fromkeys(
            s for a, s in zip(group.alerts, group.severities, strict=True)
            if a.fingerprint in opening
        )
        severity = min((config.severity(name) for name in names), key=lambda s: s.rank)
        first = change.writes[0]
        match = group.match
        return NewIncident(
            group_key=key,
            route_id=match.route.id,
            team=match.team,
            severity=severity.name,
            policy=match.policy,
            group_labels=dict(match.group_labels),
            opened_at=now,
            external_url=message.external_url,
            summary=_summary(first),
        )

    async def _record(
        self,
        tx: Transaction,
        incident_id: int,
        change: GroupChange,
        message: WebhookMessage,
        now: datetime,
    ) -> None:
        # The incident's own RESOLVED event, when there is one, goes last, after the truncation.
        events = [e for e in change.events if e.kind is not EventKind.RESOLVED]
        resolved = [e for e in change.events if e.kind is EventKind.RESOLVED]
        fields: dict[str, int] = {}
        if message.truncated_alerts:
            # Alertmanager left alerts out of this webhook (max_alerts): say so on the incident.
            fields["truncated_alerts"] = message.truncated_alerts
            events.append(
                TimelineEvent(
                    now, EventKind.ALERTS_TRUNCATED, "alertmanager",
                    {"truncated_alerts": message.truncated_alerts},
                )
            )
        if change.moves:
            await tx.move_alert_starts(incident_id, change.moves)
        if change.changed:
            await tx.write_alerts(incident_id, change.writes, now)
        # A new incident was inserted with updated_at = now, and resolving it sets updated_at in
        # its own update; any other change bumps it here.
        if fields or (change.changed and not change.opens and not change.resolves):
            await tx.update_incident(incident_id, now, **fields)
        if events or resolved:
            await tx.append(incident_id, [*events, *resolved])

    async def _resolve(
        self,
        tx: Transaction,
        incident: Incident,
        actor: str,
        now: datetime,
    ) -> None:
        await tx.update_incident(incident.id, now, **incident.resolution(actor, now))
        if self.lifecycle is not None:
            await self.lifecycle.resolved(tx, incident, actor, now)

    def _observe(self, alerts: int, firing: int, truncated: int, result: IngestResult) -> None:
        m = self._metrics
        # One increment per status, not per alert: label lookups are the expensive part.
        resolved = alerts - firing
        for status, count in ((AlertStatus.FIRING, firing), (AlertStatus.RESOLVED, resolved)):
            if count:
                m.alerts_received.labels(status).inc(count)
        for outcome, count in result.outcomes.items():
            m.alerts_processed.labels(outcome).inc(count)
        if duplicates := result.outcomes.get(AlertOutcome.DUPLICATE, 0):
            m.duplicates.inc(duplicates)
        if truncated:
            m.truncated.inc(truncated)
        for incident in result.opened:
            m.incidents_opened.labels(incident.team, incident.severity).inc()
            log.info("incident #%d opened: %s %s %s", incident.id, incident.severity,
                     incident.team, incident.summary,
                     extra=fields("incident_opened", incident.id, incident.team))
        for incident in result.resolved:
            observe_resolution(m, incident, result.alert_ends.get(incident.id, ()))
            log.info("incident #%d resolved by %s%s", incident.id, incident.resolved_by,
                     UNHELD if incident.resolved_unacknowledged else "",
                     extra=fields("incident_resolved", incident.id, incident.team))


# A body larger than this is parsed and routed beside the loop; a usual webhook (tens of
# alerts, a few KiB) is done on it, where it costs less than the hop to a thread.
ON_LOOP_BYTES = 64 * 1024
# Groups, and alerts, in one store job: about 5 ms of the loop at most.
SLICE_GROUPS = 16
SLICE_ALERTS = 256


def _read(
    body: bytes, config: Config
) -> tuple[WebhookMessage, heartbeats.Split, dict[str, RoutedGroup]]:
    """Parse and route a body, within the config's webhook limits, the heartbeats' alerts
    taken out first: pure, so it may run on any thread."""
    message = parse_webhook(body, config.limits)
    beats = heartbeats.split(config.heartbeats, message.alerts)
    groups = grouping.partition(config.route, beats.rest)
    config.limits.check_groups(groups)
    return message, beats, groups


def _slices(groups: dict[str, RoutedGroup]) -> list[list[tuple[str, RoutedGroup]]]:
    """The groups in runs of at most SLICE_GROUPS groups and SLICE_ALERTS alerts (a group
    with more alerts is a run of its own: webhook.max_alerts bounds it)."""
    slices: list[list[tuple[str, RoutedGroup]]] = [[]]
    alerts = 0
    for key, group in groups.items():
        current = slices[-1]
        if current and (len(current) >= SLICE_GROUPS
                        or alerts + len(group.alerts) > SLICE_ALERTS):
            current = []
            slices.append(current)
            alerts = 0
        current.append((key, group))
        alerts += len(group.alerts)
    return slices


async def _change(
    tx: Transaction,
    key: str,
    alerts: list[Alert],
    open_group: OpenGroup | None,
    previous: int | None,
    now: datetime,
) -> GroupChange:
    past: dict[str, list[tuple[datetime, datetime]]] = {}
    # A group that never had an incident has no episodes to look up.
    if open_group is not None or previous is not None:
        unsettled = grouping.unsettled_episodes(alerts, open_group)
        past = await tx.past_episodes(key, unsettled)
    return grouping.apply(alerts, open_group, past, now)


def _raised(
    config: Config, incident: Incident, group: RoutedGroup, change: GroupChange
) -> Severity | None:
    """The severity the alerts that began firing in `change` raise the open incident to."""
    names = severity.began(group.alerts, group.severities, change)
    if not names:
        return None
    return severity.raised_by_alerts(
        config.severity(incident.severity), [config.severity(name) for name in names])


# What a resolution's log line adds when nobody held the incident (never acknowledged, or
# let go since): it counts as resolved unacknowledged.
UNHELD = " while nobody held it (unacknowledged)"


def observe_resolution(
    m: Metrics, incident: Incident, alert_ends: Iterable[datetime | None]
) -> None:
    """Count a resolution and observe its time to resolve, which ends where the reports' and
    the post-mortem's do (facts.time_to_resolve): at the latest of `alert_ends` (its alerts'
    endsAt) when Alertmanager resolved it, at its resolution otherwise."""
    assert incident.resolved_at is not None
    if incident.is_drill:
        return  # drills are kept out of the real figures
    labels = (incident.team, incident.severity)
    m.incidents_resolved.labels(*labels).inc()
    m.time_to_resolve.labels(*labels).observe(
        facts.time_to_resolve(incident.opened_at, incident.resolved_at, incident.resolved_by,
                              alert_ends).total_seconds()
    )
    if incident.resolved_unacknowledged:
        m.resolved_unacknowledged.labels(*labels).inc()
    if incident.resolved_by == staleness.RESOLVED_BY:
        m.resolved_stale.labels(*labels).inc()


def _summary(alert: Alert) -> str:
    text = (
        alert.annotations.get("summary")
        or alert.annotations.get("description")
        or alert.labels.get("alertname", "")
    )
    return text[:500]
