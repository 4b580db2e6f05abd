"""End to end: Alertmanager restarted without its data forgets a firing alert, so neither a
resend nor a resolution ever comes again; ackd flags the incident stale after stale_after."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.harness import Alertmanager, ackd_for, alertmanager_binary, am_alert, wait_until
from tests.sinks import HttpSink

pytestmark = pytest.mark.alertmanager

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
PAYMENTS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
            "severity": "critical"}
STALE_AFTER = 5  # seconds; Alertmanager resends every 2s (repeat_interval)


async def test_alertmanager_restarted_without_its_data_leaves_the_incident_stale(
    tmp_path: Path, sink: HttpSink
) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    config = tmp_path / "ackd.yaml"
    config.write_text(config.read_text().replace(
        "route:\n  team: platform\n", f"route:\n  stale_after: {STALE_AFTER}s\n  team: platform\n"
    ))
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url, name="am")
    fresh = Alertmanager(tmp_path, ackd.url, name="am-fresh")  # its own, empty storage path
    try:
        await am.start_ready()
        await am.post_alerts([am_alert(PAYMENTS, START)])

        async def opened() -> bool:
            return len(await ackd.incidents()) == 1

        await wait_until(opened, 15, "the incident")
        [incident] = await ackd.incidents()
        # While Alertmanager resends the group, the incident never goes stale.
        await asyncio.sleep(STALE_AFTER + 3)
        found = await ackd.incident(incident["id"])
        assert [e for e in found["timeline"] if e["kind"] == "stale"] == []

        killed_at = asyncio.get_running_loop().time()
        am.kill()
        await fresh.start_ready()  # up again, without its data: it knows no alert

        async def stale() -> bool:
            timeline = (await ackd.incident(incident["id"]))["timeline"]
            return any(e["kind"] == "stale" for e in timeline)

        await wait_until(stale, STALE_AFTER + 15, "the incident to be flagged stale")
        # Flagged stale_after past the last resend, which came at most ~3s before the kill.
        assert asyncio.get_running_loop().time() - killed_at >= STALE_AFTER - 4
        found = await ackd.incident(incident["id"])
        assert found["state"] == "triggered"  # stale_action notify: told, not resolved

        async def told() -> bool:
            return any("not reported for" in r.json["title"] for r in sink.requests)

        await wait_until(told, 10, "the stale message")
        [message] = [r for r in sink.requests if "not reported for" in r.json["title"]]
        assert message.path == "/ana"  # the one paged so far
        assert f"Alertmanager has not reported these alerts for {STALE_AFTER}s; still firing?" \
            in message.json["message"]
        metrics = await ackd.metrics()
        assert 'ackd_incidents_stale_total{action="notify",severity="SEV1",team="payments"} 1.0' \
            in metrics
    finally:
        fresh.stop()
        am.stop()
        ackd.stop()
