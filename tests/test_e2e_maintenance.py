"""End to end: a maintenance window made through the API holds the pages of what the real
Alertmanager sends; real Apprise delivers nothing to the local sink until the window ends, then
the incident still firing escalates from its first step, and the one resolved meanwhile pages
nobody."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness import (
    API_TOKEN,
    Alertmanager,
    ackd_for,
    alertmanager_binary,
    am_alert,
    wait_until,
)
from tests.sinks import HttpSink

pytestmark = pytest.mark.alertmanager

WINDOW = 6  # seconds
STILL = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
         "severity": "critical"}
GONE = {"alertname": "PaymentQueueSlow", "cluster": "eu1", "team": "payments",
        "severity": "critical"}


async def test_a_window_holds_real_pages_until_it_ends(tmp_path: Path, sink: HttpSink) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    loop = asyncio.get_running_loop()
    try:
        await am.start_ready()
        async with aiohttp.ClientSession() as session, session.post(
            f"{ackd.url}/api/v1/maintenance", json={"team": "payments", "for": f"{WINDOW}s"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as response:
            assert response.status == 201, await response.text()
            window: dict[str, Any] = await response.json()
        opened_at = loop.time()
        started = datetime.now(UTC) - timedelta(minutes=1)
        await am.post_alerts([am_alert(STILL, started), am_alert(GONE, started)])

        async def both() -> bool:
            return len(await ackd.incidents()) == 2

        await wait_until(both, 15, "the two incidents")
        await am.post_alerts([am_alert(GONE, started, resolved_at=datetime.now(UTC))])
        by_name = {i["summary"]: i for i in await ackd.incidents()}

        async def held() -> bool:
            timeline = (await ackd.incident(by_name["PaymentApiDown"]["id"]))["timeline"]
            return any(e["kind"] == "page_suppressed" for e in timeline)

        await wait_until(held, 10, "the held page on the timeline")
        end = opened_at + WINDOW
        await asyncio.sleep(max(0.0, end - loop.time() - 1))
        assert sink.requests == []  # nobody paged inside the window

        async def paged() -> bool:
            return any(r.path == "/ana" for r in sink.requests)

        await wait_until(paged, WINDOW + 10, "the page after the window")
        assert loop.time() >= end - 0.5  # not before the window's end
        [page] = sink.requests
        assert page.json["title"].startswith(
            f"[SEV1] AFTER MAINTENANCE #{by_name['PaymentApiDown']['id']}")
        assert page.json["message"].startswith("AFTER MAINTENANCE: held by maintenance window #")
        number = by_name["PaymentApiDown"]["id"]

        async def recorded() -> bool:  # the sink may hear it before ackd records the send
            timeline = (await ackd.incident(number))["timeline"]
            return any(e["kind"] == "notification_sent" for e in timeline)

        await wait_until(recorded, 10, "the send on the timeline")
        still = await ackd.incident(number)
        events = [e["kind"] for e in still["timeline"]]
        assert events.index("page_suppressed") < events.index("maintenance_ended") \
            < events.index("notification_sent")
        assert [e["detail"]["window"] for e in still["timeline"]
                if e["kind"] == "maintenance_ended"] == [f"#{window['id']}"]
        gone = await ackd.incident(by_name["PaymentQueueSlow"]["id"])
        assert gone["state"] == "resolved"
        assert "maintenance_ended" not in [e["kind"] for e in gone["timeline"]]
        await asyncio.sleep(1)
        assert len(sink.requests) == 1  # the resolved one paged nobody
    finally:
        am.stop()
        ackd.stop()
