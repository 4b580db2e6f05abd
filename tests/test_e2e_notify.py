"""Notifications through real Apprise to sinks on loopback, inside a real daemon: a hung or a
refusing endpoint slows down nothing else, and every outcome is on the timeline."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import Alert, AlertStatus
from receiver.testing import FakeClock
from tests.harness import API_TOKEN, TOKEN, wait_until
from tests.sinks import HttpSink, SinkMode

CONFIG = """
webhook: {{bearer_token: {token}}}
api: {{tokens: [{{name: t, token: {api}}}]}}
notifications: {{timeout: 1s, retry: {{attempts: 2, backoff: 100ms, max_backoff: 200ms}},
                bundle_window: 0s, workers: 4, rate_limit: {{max: 100, window: 1m}}}}
users:
  - {{name: hung, contacts: [{{url: "{hung}"}}]}}
  - {{name: refusing, contacts: [{{url: "{refusing}"}}]}}
  - {{name: good, contacts: [{{url: "{good}"}}]}}
teams: [{{name: ops}}]
policies:
  - name: everyone
    steps: [{{notify: [{{user: hung}}, {{user: refusing}}, {{user: good}}]}}]
route: {{team: ops, policy: everyone, severity: SEV1, group_by: [alertname]}}
"""


@dataclass
class Setup:
    daemon: Daemon
    url: str
    good: HttpSink
    hung: HttpSink


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with HttpSink() as good, HttpSink(SinkMode.HUNG) as hung, HttpSink(
        SinkMode.REFUSING
    ) as refusing:
        text = CONFIG.format(
            token=TOKEN, api=API_TOKEN, hung=hung.url(path="/hung"),
            refusing=refusing.url(path="/refusing"), good=good.url(path="/good"),
        )
        loaded = config_module.parse(str(tmp_path / "c.yaml"), text)
        loaded = replace(loaded, listen_port=0, data_dir=tmp_path / "data")
        daemon = Daemon(loaded)
        await daemon.start()
        yield Setup(daemon, f"http://127.0.0.1:{daemon.port}", good, hung)
        await daemon.stop()


async def post_alert(
    session: aiohttp.ClientSession, url: str, name: str, now: datetime | None = None
) -> float:
    labels = {"alertname": name}
    starts = (now or datetime.now(UTC)) - timedelta(seconds=10)
    alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, starts, None)
    started = time.perf_counter()
    async with session.post(
        f"{url}/api/v1/alerts", data=json.dumps(build_webhook([alert])),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 200
    return time.perf_counter() - started


async def timeline(session: aiohttp.ClientSession, url: str, number: int) -> list[Any]:
    async with session.get(
        f"{url}/api/v1/incidents/{number}", headers={"Authorization": f"Bearer {API_TOKEN}"}
    ) as response:
        events: list[Any] = (await response.json())["timeline"]
        return events


async def test_hung_and_refusing_sinks_do_not_hold_up_anything(setup: Setup) -> None:
    async with aiohttp.ClientSession() as session:
        await post_alert(session, setup.url, "First")
        await setup.hung.wait_for(1, within=5)  # a delivery is now stuck in the hung sink
        # While it hangs (and the refusing one fails and retries), webhooks stay fast. Held up
        # by it, they would wait for what is left of its timeout (1 s, again after each retry),
        # most of them hundreds of milliseconds; on a loaded machine one may take a scheduling
        # hiccup of over 100 ms without waiting for anything.
        latencies = [await post_alert(session, setup.url, f"Next{n}") for n in range(10)]
        assert statistics.median(latencies) < 0.1, latencies
        assert max(latencies) < 0.5, latencies
        # Every incident's good delivery arrives despite its two broken neighbours (pages to
        # one person that are due together may arrive as one bundle).
        async def all_good_delivered() -> bool:
            for number in range(1, 12):
                events = await timeline(session, setup.url, number)
                if not any(e["kind"] == "notification_sent" and e["detail"]["recipient"] == "good"
                           for e in events):
                    return False
            return True

        await wait_until(all_good_delivered, 10, "every incident's good delivery")
        arrived = " ".join(r.json["title"] + r.json["message"] for r in setup.good.requests)
        assert all(f"#{n}" in arrived for n in range(1, 12))

        async def failures_recorded() -> bool:
            events = await timeline(session, setup.url, 1)
            failed = {e["detail"]["recipient"]: e["detail"] for e in events
                      if e["kind"] == "notification_failed"}
            return {"hung", "refusing"} <= set(failed)

        await wait_until(failures_recorded, 10, "both failures on the timeline")
        events = await timeline(session, setup.url, 1)
        results = {
            (e["detail"]["recipient"], e["detail"]["result"])
            for e in events if e["kind"] in ("notification_failed", "notification_sent")
        }
        assert ("hung", "timeout") in results
        assert ("refusing", "failure") in results
        assert ("good", "success") in results
        async with session.get(f"{setup.url}/metrics") as response:
            metrics = await response.text()
        assert 'ackd_notifications_total{result="timeout",scheme="json"}' in metrics
        assert 'ackd_notifications_total{result="failure",scheme="json"}' in metrics
        assert 'ackd_notifications_total{result="success",scheme="json"}' in metrics


STORM = """
webhook: {{bearer_token: {token}}}
api: {{tokens: [{{name: t, token: {api}}}]}}
notifications: {{bundle_window: 30s, rate_limit: {{max: 5, window: 10m}}}}
users: [{{name: ana, contacts: [{{url: "{ana}"}}]}}]
channels: [{{name: ops-room, urls: [{{url: "{room}"}}]}}]
teams: [{{name: ops}}]
policies: [{{name: p, steps: [{{notify: [{{user: ana}}, {{channel: ops-room}}]}}]}}]
route: {{team: ops, policy: p, severity: SEV1, group_by: [alertname]}}
"""


async def test_storm_of_500_incidents_is_bounded_and_fully_recorded(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    async with HttpSink() as sink:
        text = STORM.format(token=TOKEN, api=API_TOKEN, ana=sink.url(path="/ana"),
                            room=sink.url(path="/room"))
        loaded = replace(config_module.parse(str(tmp_path / "c.yaml"), text),
                         listen_port=0, data_dir=tmp_path / "data")
        daemon = Daemon(loaded, clock=clock)
        await daemon.start()
        try:
            await _storm(daemon, sink, clock)
        finally:
            await daemon.stop()


async def _storm(daemon: Daemon, sink: HttpSink, clock: FakeClock) -> None:
    url = f"http://127.0.0.1:{daemon.port}"
    gate = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as session:

        async def one(n: int) -> None:
            async with gate:
                await post_alert(session, url, f"Storm{n}", clock.now())

        await asyncio.gather(*(one(n) for n in range(500)))
        async with session.get(f"{url}/api/v1/incidents?limit=1000",
                               headers={"Authorization": f"Bearer {API_TOKEN}"}) as response:
            assert len((await response.json())["incidents"]) == 500
        # Bundle windows and the rate window pass in virtual time, each stop's sends made and
        # recorded before the next (a fixed 50 ms let a loaded machine fall behind the clock).
        for _ in range(25):
            await clock.jump(timedelta(seconds=30))
            await wait_until(lambda: _handled(daemon, clock.now()), 20, "what is due now")
        await wait_until(lambda: _outbox_empty(daemon), 20, "the outbox to drain")

        per_channel = Counter(r.path for r in sink.requests)
        # The first page goes at once, the rest of the burst as one bundle per channel.
        assert set(per_channel) == {"/ana", "/room"}
        assert max(per_channel.values()) <= 5, per_channel  # never past the rate limit
        for number in range(1, 501):
            events = await timeline(session, url, number)
            assert any(e["kind"] == "step_fired" for e in events), number
            outcomes = {e["detail"]["recipient"] for e in events
                        if e["kind"] in ("notification_sent", "notification_suppressed")}
            assert outcomes == {"ana", "ops-room"}, (number, events)


async def _outbox_empty(daemon: Daemon) -> bool:
    return await _handled(daemon, daemon.clock.now() + timedelta(days=1))


async def _handled(daemon: Daemon, by: datetime) -> bool:
    """No row due by `by` waits, and no send is in flight."""
    return not await daemon.store.due_notifications(by, 1) and daemon.dispatcher.in_flight == 0
