"""Webhook load: 32 connections posting 10-alert Alertmanager payloads, a realistic mix.

Each connection plays its own Alertmanager groups, so no two requests race on one group and
the expected end state is known exactly: a group opens with 10 firing alerts, is resent
unchanged (Alertmanager's group_interval / repeat_interval), sometimes half resolves, and
finally resolves whole. The same seeded script is played against ackd and against the bare
parse-only server, so both see identical bytes.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.core.model import Alert, AlertStatus

ALERTS_PER_PAYLOAD = 10
MAX_OPEN_PER_CONNECTION = 12
# Mix of what each request does (cumulative thresholds over random()).
NEW, RESEND, PARTIAL = 0.25, 0.65, 0.75  # the rest resolves a group whole


@dataclass(slots=True)
class Group:
    labels: dict[str, str]
    alerts: list[Alert]


@dataclass(slots=True)
class Expected:
    """What the store must hold if every 200 meant committed."""

    opened: int = 0
    resolved: int = 0
    alerts: int = 0


class Script:
    """One connection's Alertmanager: its open groups and the next payload to send."""

    def __init__(self, connection: int, seed: int, now: datetime, mix: str = "mixed") -> None:
        self._connection = connection
        self._mix = mix
        self._seed = seed
        self._rng = random.Random(seed * 1000 + connection)
        self._now = now
        self._open: list[Group] = []
        self._made = 0

    def next(self) -> tuple[str, bytes, Callable[[Expected], None]]:
        """(kind, body, what a 200 for it adds to the expected store content)."""
        if self._mix == "new":
            return self._new(keep=False)
        if self._mix == "resend":
            # Open this connection's groups (in the warm-up), then only resend them.
            if len(self._open) < MAX_OPEN_PER_CONNECTION:
                return self._new()
            return "resend", self._body(self._rng.choice(self._open)), _nothing
        roll = self._rng.random()
        if not self._open or (roll < NEW and len(self._open) < MAX_OPEN_PER_CONNECTION):
            return self._new()
        if roll < RESEND:
            return "resend", self._body(self._rng.choice(self._open)), _nothing
        if roll < PARTIAL:
            return self._partial(self._rng.choice(self._open))
        return self._resolve(self._open[0])

    def _new(self, keep: bool = True) -> tuple[str, bytes, Callable[[Expected], None]]:
        self._made += 1
        labels = {
            "alertname": f"Bench{self._seed}c{self._connection}n{self._made}",
            "cluster": f"c{self._connection % 4}",
            "severity": "critical" if self._made % 3 == 0 else "warning",
        }
        starts = self._now - timedelta(seconds=30)
        alerts = [
            _alert({**labels, "instance": f"10.0.{self._connection}.{i}:9100"}, starts)
            for i in range(ALERTS_PER_PAYLOAD)
        ]
        group = Group(labels, alerts)
        if keep:
            self._open.append(group)

        def opened(expected: Expected) -> None:
            expected.opened += 1
            expected.alerts += ALERTS_PER_PAYLOAD

        return "new", self._body(group), opened

    def _partial(self, group: Group) -> tuple[str, bytes, Callable[[Expected], None]]:
        half = ALERTS_PER_PAYLOAD // 2
        group.alerts[:half] = [_resolved(a, self._now) for a in group.alerts[:half]]
        return "partial", self._body(group), _nothing

    def _resolve(self, group: Group) -> tuple[str, bytes, Callable[[Expected], None]]:
        self._open.remove(group)
        group.alerts = [_resolved(a, self._now) for a in group.alerts]

        def resolved(expected: Expected) -> None:
            expected.resolved += 1

        return "resolve", self._body(group), resolved

    def _body(self, group: Group) -> bytes:
        group_labels = {k: group.labels[k] for k in ("alertname", "cluster")}
        payload = build_webhook(group.alerts, group_labels=group_labels,
                                external_url="http://alertmanager.bench:9093")
        return json.dumps(payload).encode()


def _nothing(expected: Expected) -> None:
    return None


def _alert(labels: dict[str, str], starts: datetime) -> Alert:
    return Alert(
        fingerprint=fingerprint_of(labels), status=AlertStatus.FIRING, labels=labels,
        annotations={"summary": f"{labels['alertname']} on {labels['instance']}",
                     "runbook_url": "https://runbooks.bench/" + labels["alertname"]},
        starts_at=starts, ends_at=None, generator_url="http://prometheus.bench:9090/graph",
    )


def _resolved(alert: Alert, now: datetime) -> Alert:
    if alert.status is AlertStatus.RESOLVED:
        return alert
    return Alert(alert.fingerprint, AlertStatus.RESOLVED, alert.labels, alert.annotations,
                 alert.starts_at, now, alert.generator_url)


@dataclass(slots=True)
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    # Each kind's latencies (new, resend, partial, resolve): which requests make the tail.
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    expected: Expected = field(default_factory=Expected)
    unconfirmed: int = 0  # requests not answered 200: their effect on the store is unknown

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def alerts_per_s(self) -> float:
        return self.rps * ALERTS_PER_PAYLOAD

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)

    def add(self, other: LoadResult) -> None:
        """`other`'s requests counted in this one (its seconds are the caller's to sum)."""
        self.latencies.extend(other.latencies)
        self.statuses.update(other.statuses)
        self.kinds.update(other.kinds)
        for kind, latencies in other.by_kind.items():
            self.by_kind.setdefault(kind, []).extend(latencies)
        self.unconfirmed += other.unconfirmed
        self.expected.opened += other.expected.opened
        self.expected.resolved += other.expected.resolved
        self.expected.alerts += other.expected.alerts

    def by_kind_p99(self) -> str:
        """"new 25.1 / resend 18.3 ms ...": each kind's p99, kinds by name."""
        return " / ".join(f"{kind} {percentile(latencies, 99) * 1e3:.1f}"
                          for kind, latencies in sorted(self.by_kind.items())) + " ms"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass(frozen=True, slots=True)
class LoadPlan:
    url: str
    token: str
    connections: int = 32
    warmup: float = 2.0
    duration: float = 15.0
    max_requests: int = 200_000
    seed: int = 1
    # mixed: new groups, resends, partial and whole resolutions; new: every request opens a
    # new group (a storm); resend: each connection opens its groups, then only resends them.
    mix: str = "mixed"


async def run_load(plan: LoadPlan) -> LoadResult:
    """Drive `plan.connections` keep-alive connections; measure after the warm-up only."""
    now = datetime.now(UTC)
    scripts = [Script(c, plan.seed, now, plan.mix) for c in range(plan.connections)]
    connector = aiohttp.TCPConnector(limit=plan.connections, force_close=False)
    headers = {"Authorization": f"Bearer {plan.token}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    started = time.perf_counter()
    measure_from = started + plan.warmup
    stop_at = measure_from + plan.duration
    result = LoadResult(seconds=plan.duration)
    async with aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=timeout) as session:
        await asyncio.gather(*(
            _connection(session, plan, script, result, measure_from, stop_at)
            for script in scripts
        ))
    return result


async def _connection(
    session: aiohttp.ClientSession,
    plan: LoadPlan,
    script: Script,
    result: LoadResult,
    measure_from: float,
    stop_at: float,
) -> None:
    sent = 0
    limit = plan.max_requests // plan.connections
    while sent < limit:
        kind, body, effect = script.next()
        began = time.perf_counter()
        if began >= stop_at:
            return
        status = await _post(session, plan.url, body)
        ended = time.perf_counter()
        sent += 1
        if status == 200:
            effect(result.expected)
        else:
            result.unconfirmed += 1
        if began >= measure_from and ended <= stop_at:
            result.latencies.append(ended - began)
            result.statuses[status] += 1
            result.kinds[kind] += 1
            result.by_kind.setdefault(kind, []).append(ended - began)


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    try:
        async with session.post(url, data=body) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0
