"""Heartbeats at the edge: arrivals into the store, late heartbeats into incidents.

The decisions are domain.py's; this adapter keeps when each heartbeat last arrived (in the
store, and a copy in memory), waits for each one's deadline on a timer loop of its own (the
same `Scheduler` escalation uses, its ids standing for heartbeat names), and hands the
synthetic alerts of late and returned heartbeats to `Incidents.ingest_routed`, so their
incidents are grouped, escalated and resolved like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from receiver.alertmanager.webhook import WebhookMessage
from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.durations import format_duration
from receiver.core.frozen import frozen
from receiver.core.model import Alert
from receiver.escalation.timer import Scheduler
from receiver.heartbeats import domain
from receiver.heartbeats.domain import Heartbeat, State
from receiver.incidents.service import Incidents
from receiver.ingest.grouping import RoutedGroup
from receiver.store import Store, Transaction
from receiver.telemetry.logformat import fields
from receiver.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


@frozen
class Status:
    """A heartbeat as the API, the CLI and /metrics show it."""

    heartbeat: Heartbeat
    last_arrival: datetime | None
    due: datetime
    state: State
    incident: int | None  # its open incident, if one is open


class Heartbeats:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        config: Callable[[], Config],
        incidents: Incidents,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._config = config
        self._incidents = incidents
        self.started_at = clock.now()
        self._last: dict[str, datetime] = {}
        # The timer's ids: one per name ever configured in this process (a reload may drop
        # a name while its deadline still waits in the heap; firing it then does nothing).
        self._ids: dict[str, int] = {}
        self._names: list[str] = []
        # No lateness observed: ackd_deadline_lateness_seconds counts escalation deadlines,
        # once each across replicas, and every replica checks every heartbeat.
        self.timer = Scheduler(clock, self._fire)

    def _id(self, name: str) -> int:
        if name not in self._ids:
            self._ids[name] = len(self._names)
            self._names.append(name)
        return self._ids[name]

    def _configured(self) -> dict[str, Heartbeat]:
        return domain.by_name(self._config().heartbeats)

    async def load(self) -> None:
        """At start: the arrivals the store kept, and every heartbeat's deadline armed."""
        self._remember(await self._store.heartbeat_arrivals())
        self.rearm()

    async def refresh(self) -> None:
        """Take the arrivals the store holds: on replicas sharing one, a heartbeat may have
        arrived through another (what the API and /metrics show must not depend on which)."""
        self._remember(await self._store.heartbeat_arrivals())

    def _remember(self, arrivals: dict[str, datetime]) -> None:
        for name, at in arrivals.items():
            self._last[name] = max(self._last.get(name, at), at)

    def rearm(self) -> None:
        """Arm each configured heartbeat's deadline (at start and after a reload, which may
        change `every`): an earlier entry left in the heap finds the heartbeat not late."""
        for heartbeat in self._config().heartbeats:
            self._arm(heartbeat)

    def _arm(self, heartbeat: Heartbeat) -> None:
        due = domain.due(heartbeat.every, self._last.get(heartbeat.name), self.started_at)
        self.timer.arm(self._id(heartbeat.name), due)

    async def arrived(self, names: Iterable[str]) -> list[str]:
        """These heartbeats arrived now: committed before the caller answers, and a late
        one's incident resolved. The names that are configured heartbeats."""
        configured = self._configured()
        beats = [configured[name] for name in sorted(set(names)) if name in configured]
        if not beats:
            return []
        now = self._clock.now()
        keys = {domain.match_of(h).group_key: h for h in beats}

        async def job(tx: Transaction) -> dict[str, int]:
            await tx.heartbeats_arrived([h.name for h in beats], now)
            return await tx.open_incident_ids(keys)

        still_open = await self._store.write(job)
        for heartbeat in beats:
            self._last[heartbeat.name] = max(self._last.get(heartbeat.name, now), now)
            self._arm(heartbeat)
        returned = [keys[key] for key in still_open]
        for key, incident_id in still_open.items():
            log.info("heartbeat %s arrived again", keys[key].name,
                     extra=fields("heartbeat_returned", incident_id, keys[key].team))
        if returned:
            await self._report([domain.returned_alert(h, now) for h in returned], returned)
        return [h.name for h in beats]

    async def _fire(self, ids: list[int]) -> None:
        """Deadlines came due: each heartbeat still without an arrival is late. The store is
        asked first: another replica on the same database may have taken the arrival."""
        known = dict(self._last)
        self._remember(await self._store.heartbeat_arrivals())
        now = self._clock.now()
        configured = self._configured()
        late: list[tuple[Heartbeat, datetime]] = []
        for name in dict.fromkeys(self._names[i] for i in ids):
            heartbeat = configured.get(name)
            if heartbeat is None:
                continue  # removed by a reload
            last = self._last.get(name)
            if domain.state(heartbeat, last, self.started_at, now) is State.LATE:
                late.append((heartbeat, domain.due(heartbeat.every, last, self.started_at)))
            elif last != known.get(name):
                self._arm(heartbeat)  # it arrived through another replica: wait from there
        if not late:
            return
        for heartbeat, _ in late:
            # It said "nothing since" ackd's start, to the microsecond, for one that never
            # came, while the incident said "never arrived".
            last = self._last.get(heartbeat.name)
            log.warning(
                "heartbeat %s is late: %s, expected every %s", heartbeat.name,
                f"never arrived since ackd started at {_second(self.started_at)}"
                if last is None else f"last arrived at {_second(last)}",
                format_duration(heartbeat.every),
                extra=fields("heartbeat_late", None, heartbeat.team),
            )
        alerts = [domain.missing_alert(h, since, self._last.get(h.name)) for h, since in late]
        await self._report(alerts, [h for h, _ in late])

    async def _report(self, alerts: list[Alert], beats: list[Heartbeat]) -> None:
        groups = {}
        for alert, heartbeat in zip(alerts, beats, strict=True):
            match = domain.match_of(heartbeat)
            groups[match.group_key] = RoutedGroup(match, [alert], [heartbeat.severity])
        await self._incidents.ingest_routed(WebhookMessage(tuple(alerts)), groups)

    async def statuses(self) -> list[Status]:
        """Every configured heartbeat now, in config order."""
        await self.refresh()
        beats = self._config().heartbeats
        now = self._clock.now()
        keys = [domain.match_of(h).group_key for h in beats]
        open_ids = await self._store.open_incidents_by_group(keys)
        return [
            Status(h, self._last.get(h.name),
                   domain.due(h.every, self._last.get(h.name), self.started_at),
                   State.LATE if key in open_ids
                   else domain.state(h, self._last.get(h.name), self.started_at, now),
                   open_ids.get(key))
            for h, key in zip(beats, keys, strict=True)
        ]

    def observe(self) -> None:
        """Each configured heartbeat's age on /metrics: the time since it last arrived (since
        ackd started, when it never did), and its `every`."""
        now = self._clock.now()
        self._metrics.set_heartbeats(
            (h.name, (now - self._last.get(h.name, self.started_at)).total_seconds(),
             h.every.total_seconds())
            for h in self._config().heartbeats
        )


def _second(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
