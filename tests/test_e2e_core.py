"""End to end: the real Alertmanager posts real webhooks to a real ackd process over loopback."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.core.model import Alert, AlertStatus
from tests.harness import (
    TOKEN,
    Ackd,
    Alertmanager,
    alertmanager_binary,
    am_alert,
    free_port,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.alertmanager

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
PAYMENTS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
            "severity": "critical"}
PLATFORM = {"alertname": "DiskFull", "cluster": "eu1", "severity": "warning"}


@pytest.fixture
async def ackd(tmp_path: Path) -> AsyncIterator[Ackd]:
    alertmanager_binary()  # fail (CI) or skip (local) before starting anything
    config = write_config(tmp_path / "ackd.yaml", f"127.0.0.1:{free_port()}")
    daemon = Ackd(tmp_path, config)
    await daemon.start_ready()
    yield daemon
    daemon.stop()


async def started(tmp_path: Path, ackd: Ackd, name: str = "am") -> Alertmanager:
    am = Alertmanager(tmp_path, ackd.url, name=name)
    await am.start_ready()
    return am


ALERT_EVENTS = {"opened", "alert_added", "alert_resolved", "alert_refired", "resolved"}


def kinds(incident: dict[str, object]) -> Counter[str]:
    """What the alerts did to the incident (escalation adds its own events meanwhile)."""
    events = incident["timeline"]
    assert isinstance(events, list)
    return Counter(str(e["kind"]) for e in events if e["kind"] in ALERT_EVENTS)


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def firing() -> list[dict[str, object]]:
    return [
        am_alert({**PAYMENTS, "instance": "a"}, START),
        am_alert({**PAYMENTS, "instance": "b"}, START),
        am_alert(PLATFORM, START),
    ]


async def test_alertmanager_groups_dedups_and_resolves(tmp_path: Path, ackd: Ackd) -> None:
    am = await started(tmp_path, ackd)
    try:
        await am.post_alerts(firing())

        async def two_incidents() -> bool:
            found = await ackd.incidents()
            if len(found) != 2 or sum(len(i["summary"]) > 0 for i in found) != 2:
                return False
            # On a loaded machine Alertmanager may flush a group before it took every alert
            # of the post: the other comes with the next group_interval.
            details = [await ackd.incident(i["id"]) for i in found]
            return sum(len(d["alerts"]) for d in details) == 3

        await wait_until(two_incidents, 15, "two incidents holding the three alerts")
        by_team = {i["team"]: i for i in await ackd.incidents()}
        assert by_team["payments"]["severity"] == "SEV1"
        assert by_team["platform"]["severity"] == "SEV3"
        payments = await ackd.incident(by_team["payments"]["id"])
        assert len(payments["alerts"]) == 2
        assert {a["fingerprint"] for a in payments["alerts"]} == {
            fingerprint_of({**PAYMENTS, "instance": i}) for i in "ab"
        }  # Alertmanager's fingerprints are ours
        before = kinds(payments)

        # Alertmanager resends the unchanged groups every repeat_interval (2s): nothing changes.
        await wait_until(
            lambda: _duplicates_at_least(ackd, 6), 20, "Alertmanager's resends to arrive"
        )
        assert len(await ackd.incidents()) == 2
        assert kinds(await ackd.incident(payments["id"])) == before

        resolved_at = datetime.now(UTC)
        await am.post_alerts(
            [am_alert({**PAYMENTS, "instance": i}, START, resolved_at=resolved_at) for i in "ab"]
        )

        async def payments_resolved() -> bool:
            return (await ackd.incident(payments["id"]))["state"] == "resolved"

        await wait_until(payments_resolved, 20, "the payments incident to resolve")
        final = await ackd.incident(payments["id"])
        assert final["resolved_by"] == "alertmanager"
        assert kinds(final)["resolved"] == 1
        assert (await ackd.incident(by_team["platform"]["id"]))["state"] != "resolved"
        assert metric(await ackd.metrics(), "ackd_incidents_resolved_total") == 1
    finally:
        am.stop()
    # Log lines leave through a thread of their own; a graceful stop writes every one.
    ackd.stop()
    log = ackd.log()
    assert "ackd listening on" in log
    assert f"incident #{payments['id']} opened: SEV1 payments" in log


async def _duplicates_at_least(ackd: Ackd, count: int) -> bool:
    return metric(await ackd.metrics(), "ackd_alerts_duplicate_total") >= count


async def test_ha_pair_sends_twice_and_ackd_records_once(tmp_path: Path, ackd: Ackd) -> None:
    first, second = await started(tmp_path, ackd, "am1"), await started(tmp_path, ackd, "am2")
    try:
        alerts = firing()[:2]
        await asyncio.gather(first.post_alerts(alerts), second.post_alerts(alerts))
        # Both replicas deliver, and keep re-delivering: wait for well over two webhooks' worth.
        await wait_until(lambda: _duplicates_at_least(ackd, 6), 20, "both replicas' webhooks")
        found = await ackd.incidents()
        assert len(found) == 1
        incident = await ackd.incident(found[0]["id"])
        assert kinds(incident)["opened"] == 1
        assert kinds(incident)["alert_added"] == 2
        assert len(incident["alerts"]) == 2
        webhooks = metric(await ackd.metrics(), 'ackd_webhooks_total{result="accepted"}')
        assert webhooks >= 4  # two replicas, at least two sends each
    finally:
        first.stop()
        second.stop()


async def post(url: str, body: dict[str, object]) -> int:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session, session.post(
        f"{url}/api/v1/alerts", data=json.dumps(body), headers=headers
    ) as response:
        return response.status


async def test_sigkill_after_200_loses_nothing(tmp_path: Path, ackd: Ackd) -> None:
    accepted: list[str] = []
    for n in range(40):
        labels = {"alertname": f"Crash{n}", "cluster": "eu1", "severity": "critical"}
        alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, START, None)
        if await post(ackd.url, build_webhook([alert])) == 200:
            accepted.append(labels["alertname"])
    assert len(accepted) == 40
    ackd.kill()  # no graceful shutdown: only what was committed survives

    await ackd.start_ready()
    found = await ackd.incidents(limit="1000")
    names = {re.sub(r"\s.*", "", i["summary"]) for i in found}
    assert names == set(accepted)
