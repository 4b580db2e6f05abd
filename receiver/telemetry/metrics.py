"""Prometheus collectors, on a registry we own (tests get a fresh one each, no global state)."""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from receiver import __version__
from receiver.core.clockskew import Offset
from receiver.telemetry.loopmetrics import LoopCounter, LoopHistogram

M = TypeVar("M", bound=MetricWrapperBase)

# From half a minute to a day: MTTA lives in the first decades, MTTR in the later ones.
RESPONSE_BUCKETS = (
    30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, float("inf"),
)
FAST_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    float("inf"),
)


class ClockOffset(Collector):
    """`ackd_clock_offset_seconds` and its uncertainty: this replica's clock minus the
    database's (core/clockskew.py), as the store last measured it. No sample at all until
    then, nor ever on SQLite (one process, no other clock): a 0 would claim a measurement.
    No label: each process is one series, which Prometheus' `instance` already tells apart."""

    OFFSET = ("ackd_clock_offset_seconds",
              "This replica's clock minus the PostgreSQL server's, measured on the listening"
              " connection every second (the best of the last ten): replicas share deadlines"
              " by their own clocks, so one ahead fires every replica's steps that early")
    UNCERTAINTY = ("ackd_clock_offset_uncertainty_seconds",
                   "Half the round trip of the measurement ackd_clock_offset_seconds comes"
                   " from: the true offset lies within it")

    def __init__(self) -> None:
        self.offset: Offset | None = None

    def describe(self) -> Iterator[Metric]:
        """The families, without samples: what the registry checks names against."""
        yield GaugeMetricFamily(*self.OFFSET, labels=[])
        yield GaugeMetricFamily(*self.UNCERTAINTY, labels=[])

    def collect(self) -> Iterator[Metric]:
        if self.offset is None:
            return
        yield GaugeMetricFamily(*self.OFFSET, value=self.offset.seconds)
        yield GaugeMetricFamily(*self.UNCERTAINTY, value=self.offset.uncertainty)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
        r = self.registry
        # Those moved on the loop at every webhook, commit or resolution are counted in plain
        # Python (loopmetrics): all but the notifications' (the send's outcome), the gauges and
        # the acknowledgement's.
        self.webhooks = LoopCounter(
            "ackd_webhooks", "Webhook requests by result", ["result"], registry=r
        )
        self.webhook_duration = LoopHistogram(
            "ackd_webhook_duration_seconds",
            "Webhook request latency, from the handler's start to its answer, by result",
            ["result"], buckets=FAST_BUCKETS, registry=r,
        )
        # Alertmanager's names, so the same alert rules and panels read both.
        self.reload_successful = Gauge(
            "ackd_config_last_reload_successful",
            "Whether the last configuration reload attempt succeeded (1) or was refused (0)",
            registry=r,
        )
        self.reload_timestamp = Gauge(
            "ackd_config_last_reload_success_timestamp_seconds",
            "When the running configuration was loaded (Unix time)", registry=r,
        )
        self.config_hash = Gauge(
            "ackd_config_hash",
            "The running configuration's digest (the file, its variables' values and its "
            "*_file contents, keyed by the link secret), its first 48 bits as a number: "
            "replicas that report different values run different configurations", registry=r,
        )
        self.config_warning_count = Gauge(
            "ackd_config_warnings",
            "Warnings about the running configuration by kind (the log line's event): its "
            "file's, as ackd check-config gives them, and what it does to the open incidents, "
            "each as its latest check at start or reload found them", ["kind"], registry=r,
        )
        self.build_info = Gauge(
            "ackd_build_info", "Always 1; the labels say which ackd and Python run",
            ["version", "python"], registry=r,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.alerts_received = LoopCounter(
            "ackd_alerts_received", "Alerts received in webhooks", ["status"], registry=r
        )
        self.alerts_processed = LoopCounter(
            "ackd_alerts_processed",
            "Alerts by what they did: added, refired, resolved, merged, duplicate, ignored",
            ["outcome"],
            registry=r,
        )
        self.duplicates = LoopCounter(
            "ackd_alerts_duplicate", "Alert episodes seen again (resends, HA replicas)", registry=r
        )
        self.truncated = LoopCounter(
            "ackd_alerts_truncated", "Alerts Alertmanager left out (truncatedAlerts)", registry=r
        )
        self.incidents_opened = LoopCounter(
            "ackd_incidents_opened", "Incidents opened", ["team", "severity"], registry=r
        )
        self.incidents_resolved = LoopCounter(
            "ackd_incidents_resolved", "Incidents resolved", ["team", "severity"], registry=r
        )
        self.resolved_unacknowledged = LoopCounter(
            "ackd_incidents_resolved_unacknowledged",
            "Incidents resolved while nobody held them: never acknowledged, or acknowledged"
            " and let go since (an unack, a snooze's end)",
            ["team", "severity"],
            registry=r,
        )
        self.incidents_stale = Counter(
            "ackd_incidents_stale",
            "Open incidents whose alerts Alertmanager stopped reporting for stale_after",
            ["team", "severity", "action"],
            registry=r,
        )
        self.resolved_stale = LoopCounter(
            "ackd_incidents_resolved_stale",
            "Incidents resolved as stale (stale_action: resolve), not by Alertmanager or a person",
            ["team", "severity"],
            registry=r,
        )
        self.time_to_acknowledge = Histogram(
            "ackd_time_to_acknowledge_seconds",
            "From the incident's first page to its first acknowledgement",
            ["team", "severity"],
            buckets=RESPONSE_BUCKETS,
            registry=r,
        )
        self.time_to_resolve = LoopHistogram(
            "ackd_time_to_resolve_seconds",
            "From incident open to the end of its problem: its alerts' endsAt when Alertmanager"
            " resolved it, the resolution when a person or stale did",
            ["team", "severity"],
            buckets=RESPONSE_BUCKETS,
            registry=r,
        )
        self.escalation_steps = LoopCounter(
            "ackd_escalation_steps", "Escalation steps fired", ["team", "policy", "step"],
            registry=r,
        )
        self.escalations_exhausted = Counter(
            "ackd_escalations_exhausted",
            "Escalations that ran out: every step and repeat paged, nobody acknowledged",
            ["team", "severity"],
            registry=r,
        )
        self.open_incidents = Gauge(
            "ackd_open_incidents", "Open incidents", ["team", "severity", "state"], registry=r
        )
        self.store_commit = LoopHistogram(
            "ackd_store_commit_seconds", "Store group-commit latency", buckets=FAST_BUCKETS,
            registry=r,
        )
        self.store_batch = LoopHistogram(
            "ackd_store_commit_jobs", "Jobs per group commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, float("inf")), registry=r,
        )
        self.store_errors = Counter(
            "ackd_store_errors", "Group commits that failed (answered 503)", registry=r
        )
        self.auth_failures = Counter(
            "ackd_auth_failures", "Requests refused for bad credentials", ["endpoint"], registry=r
        )
        self.deadline_lateness = Histogram(
            "ackd_deadline_lateness_seconds", "How late escalation deadlines fired",
            buckets=FAST_BUCKETS, registry=r,
        )
        self.notifications = Counter(
            "ackd_notifications", "Notification attempts by channel type and result",
            ["scheme", "result"], registry=r,
        )
        self.notification_latency = Histogram(
            "ackd_notification_duration_seconds", "Delivery latency per attempt", ["scheme"],
            buckets=FAST_BUCKETS, registry=r,
        )
        self.notification_retries = Counter(
            "ackd_notification_retries", "Delivery attempts that were retries", ["scheme"],
            registry=r,
        )
        self.notifications_suppressed = Counter(
            "ackd_notifications_suppressed", "Notifications held back", ["reason"], registry=r
        )
        self.outbox_oldest_due = Gauge(
            "ackd_outbox_oldest_due_seconds",
            "Seconds since the oldest notification still waiting for its result fell due (due"
            " and not taken, or taken and its result not written); 0 when none waits. A send"
            " ends within its timeout: a value that keeps growing is a notification lost",
            registry=r,
        )
        self.outbox_leases_recovered = Counter(
            "ackd_outbox_leases_recovered",
            "Outbox rows the dispatcher's self-check found leased to this process with no send"
            " holding them, given back to be sent (a bug: each is logged)", registry=r,
        )
        self.memo_bytes = Gauge(
            "ackd_memo_bytes", "Estimated bytes of the webhook memos (config webhook.memo_bytes)",
            ["memo"], registry=r,
        )
        self.memo_entries = Gauge(
            "ackd_memo_entries", "Entries in the webhook memos", ["memo"], registry=r
        )

        self.heartbeat_age = Gauge(
            "ackd_heartbeat_age_seconds",
            "Seconds since each configured heartbeat last arrived (since ackd started, if never)",
            ["heartbeat"], registry=r,
        )
        self.heartbeat_interval = Gauge(
            "ackd_heartbeat_interval_seconds",
            "Each configured heartbeat's `every`: it is late once its age passes this",
            ["heartbeat"], registry=r,
        )
        self.clock_offset = ClockOffset()
        r.register(self.clock_offset)

    def child(self, metric: M, *values: str) -> M:
        """`metric.labels(*values)`, looked up once: labels() takes a lock and checks every
        value on each call, and the webhook path counts several per request."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found  # type: ignore[return-value]

    def teams_and_severities(self, teams: Iterable[str], severities: Iterable[str]) -> None:
        """Every team and severity of the config has its ackd_escalations_exhausted_total
        series from the start, at 0: a series that first appears at 1 is no increase to
        Prometheus's increase(), and the alert rule on it would miss the first one."""
        names = list(severities)
        for team in teams:
            for severity in names:
                self.child(self.escalations_exhausted, team, severity)

    def observe_commit(self, seconds: float, jobs: int) -> None:
        self.store_commit.observe(seconds)
        self.store_batch.observe(jobs)

    def config_loaded(self, ok: bool, at: float, digest: str) -> None:
        """A load or reload attempt at Unix time `at`, and the published digest (hex, see
        Config.published_digest) of the config that runs after it: a refused one keeps the
        old timestamp and digest, since the old configuration is what runs."""
        self.reload_successful.set(1 if ok else 0)
        if ok:
            self.reload_timestamp.set(at)
            # 48 bits: a float64 holds them exactly, so equal files give equal samples.
            self.config_hash.set(int(digest[:12], 16) if digest else 0)

    def config_warnings(self, kinds: Mapping[str, int]) -> None:
        """How many warnings of each kind the running config's latest checks found; kinds
        none of them found any more go."""
        self.config_warning_count.clear()
        for kind, count in kinds.items():
            self.config_warning_count.labels(kind).set(count)

    def set_heartbeats(self, rows: Iterable[tuple[str, float, float]]) -> None:
        """(name, age, every) of each configured heartbeat now; names a reload removed go."""
        self.heartbeat_age.clear()
        self.heartbeat_interval.clear()
        for name, age, every in rows:
            self.heartbeat_age.labels(name).set(age)
            self.heartbeat_interval.labels(name).set(every)

    def set_oldest_due(self, due: datetime | None, now: datetime) -> None:
        self.outbox_oldest_due.set(0.0 if due is None else max(0.0, (now - due).total_seconds()))

    def set_open(
        self, counts: Iterable[tuple[str, str, str, int]],
        known: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        """The open incidents as the store counts them now. Every `known` (team, severity,
        state) is 0 when none is open, so a panel shows 0 rather than no data, while label
        sets the config no longer has disappear."""
        self.open_incidents.clear()
        for team, severity, state in known:
            self.open_incidents.labels(team, severity, state).set(0)
        for team, severity, state, count in counts:
            self.open_incidents.labels(team, severity, state).set(count)
