"""A storm through the real Alertmanager: 200 incidents opened and resolved. Each person and
the stakeholder channel get at most the rate limit's budget of messages, and every message
ackd meant to send is on its incident's timeline: sent (alone or in a bundle) or suppressed.
The storm is of low urgency: a high-urgency page is never held back, only bundled (its bound
is max_hold, tested in test_dispatch and test_noise)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    API_TOKEN,
    TOKEN,
    Ackd,
    Alertmanager,
    alertmanager_binary,
    am_alert,
    free_port,
    wait_until,
)
from tests.sinks import HttpSink

pytestmark = pytest.mark.alertmanager

INCIDENTS = 200
WAVES = 5  # each wave comes after the bundle window: it demands a message of its own
BUDGET = 4  # fewer than the waves: the budget must hold messages back, however timing falls
PEOPLE = ("ana", "bo", "cy")
CHANNEL = "exec-status"
FINAL = ("notification_sent", "notification_suppressed")
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

CONFIG = """
external_url: http://127.0.0.1:{port}
webhook: {{bearer_token: {token}}}
api: {{tokens: [{{name: e2e, token: {api}}}]}}
links: {{secret: e2e-link-secret, ttl: 1h}}
notifications: {{timeout: 2s, retry: {{attempts: 2, backoff: 200ms, max_backoff: 1s}},
                bundle_window: 2s, max_hold: 1s, rate_limit: {{max: {budget}, window: 10m}}}}
severities:
  - {{name: SEV3, urgency: low, stakeholders: [{channel}]}}
users:
  - {{name: ana, contacts: [{{url: "json://{sink}/ana"}}]}}
  - {{name: bo, contacts: [{{url: "json://{sink}/bo"}}]}}
  - {{name: cy, contacts: [{{url: "json://{sink}/cy"}}]}}
channels: [{{name: {channel}, urls: [{{url: "json://{sink}/{channel}"}}]}}]
teams: [{{name: ops}}]
policies: [{{name: all-hands, steps: [{{notify: [{{user: ana}}, {{user: bo}}, {{user: cy}}]}}]}}]
route: {{team: ops, policy: all-hands, severity: SEV3, group_by: [alertname]}}
"""


def wave(number: int, resolved_at: datetime | None = None) -> list[dict[str, Any]]:
    size = INCIDENTS // WAVES
    return [am_alert({"alertname": f"Storm{n}", "cluster": "eu1"}, START,
                     resolved_at=resolved_at) for n in range(number * size, (number + 1) * size)]


async def storm(am: Alertmanager, *, resolved: bool = False) -> None:
    for number in range(WAVES):
        if number:
            await asyncio.sleep(3)  # past the bundle window (2s) of the wave before
        await am.post_alerts(wave(number, datetime.now(UTC) if resolved else None))


async def test_a_storm_opened_and_resolved_stays_within_the_budget(tmp_path: Path) -> None:
    alertmanager_binary()
    async with HttpSink() as sink:
        port = free_port()
        config = tmp_path / "ackd.yaml"
        config.write_text(CONFIG.format(
            port=port, token=TOKEN, api=API_TOKEN, budget=BUDGET, channel=CHANNEL,
            sink=f"127.0.0.1:{sink.port}",
        ))
        ackd = Ackd(tmp_path, config, port)
        await ackd.start_ready()
        am = Alertmanager(tmp_path, ackd.url)
        try:
            await am.start_ready()
            await storm(am)
            await wait_until(lambda: _count(ackd, "open"), 60, f"{INCIDENTS} open incidents")
            await wait_until(lambda: _pages_settled(ackd), 60, "every page to be settled")
            await storm(am, resolved=True)
            await wait_until(lambda: _count(ackd, "resolved"), 60, "every incident resolved")
            await wait_until(lambda: _notes_settled(ackd), 60, "every note to be settled")
            timelines = [(await ackd.incident(i["id"]))["timeline"]
                         for i in await ackd.incidents(limit="1000")]
        finally:
            am.stop()
            ackd.stop()

    arrived = Counter(r.path.lstrip("/") for r in sink.requests)
    assert set(arrived) == {*PEOPLE, CHANNEL}, arrived
    assert max(arrived.values()) <= BUDGET, arrived  # the storm stayed within the budget

    # Every message that arrived is on the timelines, once per incident it spoke for.
    delivered: Counter[str] = Counter()
    for events in timelines:
        for e in events:
            if e["kind"] == "notification_sent" and e["detail"]["reason"] != "held_back_summary":
                delivered[e["detail"]["recipient"]] += Fraction(1, e["detail"].get("bundled", 1))
    assert delivered == arrived
    # And every message meant is on its timeline, sent or suppressed, exactly once.
    suppressed = Counter[str]()
    for events in timelines:
        outcomes = Counter((e["detail"]["recipient"], _reason(e)) for e in events
                           if e["kind"] in FINAL)
        expected = {(who, "triggered") for who in PEOPLE}
        expected |= {(CHANNEL, "stakeholder_declared"), (CHANNEL, "stakeholder_resolved")}
        expected |= {(who, "resolved") for who in _paged_before_resolution(events)}
        assert outcomes == Counter(expected), events
        suppressed.update(e["detail"]["reason"] for e in events
                          if e["kind"] == "notification_suppressed")
    assert suppressed["rate limited"] > 0  # the budget did hold messages back
    assert set(suppressed) <= {"rate limited", "incident resolved"}, suppressed
    notes = [r.json["title"] for r in sink.requests if r.path == f"/{CHANNEL}"]
    assert any(" incidents opened: " in title for title in notes), notes  # bundled


def _reason(event: dict[str, Any]) -> str:
    detail = event["detail"]
    return str(detail.get("message_reason") or detail["reason"])


def _paged_before_resolution(events: list[dict[str, Any]]) -> set[str]:
    """Who was told of the incident before it resolved: they are told it resolved."""
    paged = set()
    for e in events:
        if e["kind"] == "resolved":
            break
        if e["kind"] == "notification_sent" and e["detail"]["reason"] == "triggered":
            paged.add(e["detail"]["recipient"])
    return paged


async def _count(ackd: Ackd, state: str) -> bool:
    return len(await ackd.incidents(state=state, limit="1000")) == INCIDENTS


async def _settled(ackd: Ackd, reasons: set[str]) -> bool:
    """Every incident has a final outcome for each recipient of messages with these reasons."""
    for incident in await ackd.incidents(limit="1000"):
        events = (await ackd.incident(incident["id"]))["timeline"]
        done = {(e["detail"]["recipient"], _reason(e)) for e in events if e["kind"] in FINAL}
        wanted = {(who, "triggered") for who in PEOPLE} | {(CHANNEL, "stakeholder_declared")}
        if "resolved" in reasons:
            wanted |= {(who, "resolved") for who in _paged_before_resolution(events)}
            wanted.add((CHANNEL, "stakeholder_resolved"))
        if not wanted <= done:
            return False
    return True


async def _pages_settled(ackd: Ackd) -> bool:
    return await _settled(ackd, {"triggered"})


async def _notes_settled(ackd: Ackd) -> bool:
    return await _settled(ackd, {"resolved"})
