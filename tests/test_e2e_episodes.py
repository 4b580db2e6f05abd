"""End to end: an alert's episode as Alertmanager defines it. Alertmanager merges an alert
posted again into the one it holds and keeps the earliest start, and the replicas of a
clustered pair each report their own start: the incident must still resolve when Alertmanager
says it is over, and nobody may be paged after that."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.alertmanager.webhook import fingerprint_of
from tests.harness import (
    Ackd,
    Alertmanager,
    ackd_for,
    alertmanager_binary,
    am_alert,
    free_port,
    wait_until,
)
from tests.sinks import HttpSink

pytestmark = pytest.mark.alertmanager

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
PAYMENTS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
            "severity": "critical"}
PLATFORM = {"alertname": "DiskFull", "cluster": "eu1", "severity": "critical"}


def _start(alert: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(alert["startsAt"]))


async def held_start(ackd: Ackd, labels: dict[str, str]) -> datetime | None:
    """The start ackd holds for the alert with these labels, in its open incident."""
    fingerprint = fingerprint_of(labels)
    for incident in await ackd.incidents(state="open"):
        for alert in (await ackd.incident(incident["id"]))["alerts"]:
            if alert["fingerprint"] == fingerprint:
                return _start(alert)
    return None


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


async def test_an_earlier_start_then_the_resolution_resolves_and_pages_nobody_after(
    tmp_path: Path, sink: HttpSink
) -> None:
    alertmanager_binary()
    # Step 2 comes 8s after the first page: well after the resolution, and within the wait.
    ackd = ackd_for(tmp_path, sink.port, step_delay="8s")
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        await am.start_ready()
        later, earlier = START, START - timedelta(minutes=3)
        await am.post_alerts([am_alert(PAYMENTS, later)])

        async def holds(start: datetime) -> bool:
            return await held_start(ackd, PAYMENTS) == start

        await wait_until(lambda: holds(later), 15, "the incident with the first start")
        [incident] = await ackd.incidents()
        # Posted again with an earlier start: Alertmanager keeps the earliest and reports it.
        await am.post_alerts([am_alert(PAYMENTS, earlier)])
        await wait_until(lambda: holds(earlier), 15, "ackd to record the earlier start")
        assert len(await ackd.incidents()) == 1  # the same episode: no new incident
        # Prometheus resolves the alert with the start it posted first.
        await am.post_alerts([am_alert(PAYMENTS, later, resolved_at=datetime.now(UTC))])

        async def resolved() -> bool:
            return (await ackd.incident(incident["id"]))["state"] == "resolved"

        await wait_until(resolved, 15, "the incident to resolve")
        seen = len(sink.requests)
        # The next step would have fired by now had the escalation gone on.
        await asyncio.sleep(10)
        final = await ackd.incident(incident["id"])
        assert final["resolved_by"] == "alertmanager"
        kinds = [e["kind"] for e in final["timeline"]]
        assert "alert_merged" in kinds
        assert "step_fired" not in kinds[kinds.index("resolved"):]
        after = [r.json["title"] for r in sink.requests[seen:]]
        assert all("resolved" in title for title in after), after
        assert len(await ackd.incidents()) == 1
        text = await ackd.metrics()
        assert metric(text, 'ackd_alerts_processed_total{outcome="merged"}') >= 1
    finally:
        am.stop()
        ackd.stop()


async def test_a_clustered_pair_reporting_different_starts_resolves(
    tmp_path: Path, sink: HttpSink
) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="30s")
    await ackd.start_ready()
    ports = free_port(), free_port()
    replicas = [
        Alertmanager(tmp_path, ackd.url, name=f"am{i + 1}", cluster_port=ports[i],
                     peers=[ports[1 - i]])
        for i in range(2)
    ]
    early, late = START - timedelta(seconds=20), START
    # Each replica holds its own start for each alert, crossed between the two alerts.
    starts = {"payments": (early, late), "platform": (late, early)}
    labels = {"payments": PAYMENTS, "platform": PLATFORM}
    try:
        await asyncio.gather(*(am.start_ready() for am in replicas))
        for name, (first, second) in starts.items():
            await replicas[0].post_alerts([am_alert(labels[name], first)])
            await replicas[1].post_alerts([am_alert(labels[name], second)])

        async def both_open() -> bool:
            found = [await held_start(ackd, labels[n]) for n in labels]
            return all(s is not None for s in found)

        await wait_until(both_open, 30, "an incident for each alert")
        incidents = {i["team"]: i["id"] for i in await ackd.incidents()}
        assert len(incidents) == 2
        # Resolve each alert through the replica whose start ackd does not hold: its
        # resolution carries a start ackd never recorded.
        for name in labels:
            held = await held_start(ackd, labels[name])
            index = 1 if starts[name][0] == held else 0
            own = starts[name][index]
            assert own != held
            await replicas[index].post_alerts(
                [am_alert(labels[name], own, resolved_at=datetime.now(UTC))]
            )

        async def all_resolved() -> bool:
            states = [(await ackd.incident(n))["state"] for n in incidents.values()]
            return states == ["resolved", "resolved"]

        await wait_until(all_resolved, 30, "both incidents to resolve")
        # The other replica still reports its alerts firing until it hears otherwise: a
        # lagging view of an episode that is over opens nothing.
        now = datetime.now(UTC)
        for name, (first, second) in starts.items():
            for am, own in zip(replicas, (first, second), strict=True):
                await am.post_alerts([am_alert(labels[name], own, resolved_at=now)])
        await asyncio.sleep(3)
        assert sorted(i["id"] for i in await ackd.incidents()) == sorted(incidents.values())
        assert all(i["state"] == "resolved" for i in await ackd.incidents())
    finally:
        for am in replicas:
            am.stop()
        ackd.stop()
