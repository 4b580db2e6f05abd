"""End to end: the real Alertmanager sends Prometheus' always-firing Watchdog every few seconds
to ackd, whose heartbeat matches it. Alertmanager is stopped: the heartbeat's incident opens
within `every`, pages its team, and resolves when Alertmanager is back with the Watchdog."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Alertmanager, ackd_for, alertmanager_binary, am_alert, wait_until
from tests.sinks import HttpSink

pytestmark = pytest.mark.alertmanager

WATCHDOG = {"alertname": "Watchdog", "severity": "none"}
EVERY = 6  # seconds; Alertmanager sends the Watchdog every 2s (repeat_interval)
HEARTBEAT = f"""heartbeats:
  - name: prometheus-watchdog
    every: {EVERY}s
    team: payments
    severity: SEV1
    matchers: ['alertname="Watchdog"']
"""


async def test_a_silent_alertmanager_opens_the_heartbeat_incident_and_its_return_resolves_it(
    tmp_path: Path, sink: HttpSink
) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    config = tmp_path / "ackd.yaml"
    config.write_text(config.read_text() + HEARTBEAT)
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url, name="am")
    back = Alertmanager(tmp_path, ackd.url, name="am-back")

    async def heartbeat() -> dict[str, Any]:
        [found] = (await ackd.get("/api/v1/heartbeats"))["heartbeats"]
        return dict(found)

    async def heartbeat_incidents() -> list[dict[str, Any]]:
        return [i for i in await ackd.incidents() if i["route_id"].startswith("heartbeat/")]

    try:
        await am.start_ready()
        watchdog = am_alert(WATCHDOG, datetime.now(UTC) - timedelta(hours=1))
        await am.post_alerts([watchdog])

        async def arrived() -> bool:
            return (await heartbeat())["state"] == "ok"

        await wait_until(arrived, 15, "the Watchdog to reach ackd")
        # While Alertmanager sends it, the heartbeat never goes late.
        await asyncio.sleep(EVERY + 3)
        assert (await heartbeat())["state"] == "ok"
        assert await heartbeat_incidents() == []
        assert await ackd.incidents() == []  # the Watchdog itself opens no incident

        am.stop()
        stopped_at = datetime.now(UTC)

        async def opened() -> bool:
            return len(await heartbeat_incidents()) == 1

        await wait_until(opened, EVERY + 10, "the heartbeat's incident")
        [incident] = await heartbeat_incidents()
        # On ackd's own clock, not by when this test's poll saw it: the Watchdog kept coming
        # until the stop (every 2s), and the incident opened `every` after its last arrival,
        # plus the timer's delay; so `every` to `every` + 2s after the stop, at most 3s less.
        last = datetime.fromisoformat((await heartbeat())["last_arrival"])
        assert stopped_at - last <= timedelta(seconds=3), (stopped_at, last)
        late = datetime.fromisoformat(incident["opened_at"]) - last
        assert timedelta(seconds=EVERY) <= late <= timedelta(seconds=EVERY + 2), late
        assert (incident["team"], incident["severity"], incident["state"]) == (
            "payments", "SEV1", "triggered")
        assert (await heartbeat())["state"] == "late"

        async def paged() -> bool:
            return any("heartbeat prometheus-watchdog is late" in r.json["title"]
                       for r in sink.requests)

        await wait_until(paged, 10, "the page")
        [page] = [r for r in sink.requests if "prometheus-watchdog" in r.json["title"]]
        assert page.path == "/ana"  # payments' primary on call, the policy's first step

        # Alertmanager back (a fresh one: alerts are not kept across restarts), and
        # Prometheus sends it the Watchdog again, as it does every evaluation.
        await back.start_ready()
        await back.post_alerts([watchdog])

        async def resolved() -> bool:
            return (await ackd.incident(incident["id"]))["state"] == "resolved"

        await wait_until(resolved, 10, "the heartbeat's incident to resolve")
        assert (await heartbeat())["state"] == "ok"
        assert (await ackd.incident(incident["id"]))["resolved_by"] == "alertmanager"
        metrics = await ackd.metrics()
        assert 'ackd_heartbeat_interval_seconds{heartbeat="prometheus-watchdog"} 6.0' in metrics
    finally:
        back.stop()
        am.stop()
        ackd.stop()
