"""End to end, noise control across three ackd replicas on one PostgreSQL database: a storm
(60 incidents opened, then resolved, in waves) is posted to all three, each group's webhook
to every replica at once as Alertmanager posting to all does, and each person and the
stakeholder channel receive at most the rate limit's budget of messages in all, not the
budget once per replica; every message meant is on its incident's timeline, sent (alone or
in a bundle) or suppressed. The storm is of low urgency: a high-urgency page is never held
back, only bundled (test_dispatch, test_noise). And a note one replica sent does not delay
the next page another replica sends to the same person.

The groups of a wave are posted one after another (each to the three replicas at once), not
all at once: replicas that take many groups at once in different orders deadlock on their
incidents' rows (ingest's concern, not noise control's; see the session notes)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.core.model import Alert, AlertStatus
from tests.harness import (
    API_TOKEN,
    TOKEN,
    Ackd,
    free_port,
    wait_until,
)
from tests.pgcluster import Cluster, fresh_database
from tests.sinks import HttpSink

INCIDENTS = 60
WAVES = 5  # each wave after the bundle window of the one before: each demands a message
BUDGET = 4  # fewer than the waves, so the budget must hold messages back
PEOPLE = ("ana", "bo", "cy")
CHANNEL = "exec-status"
FINAL = ("notification_sent", "notification_suppressed")
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
BUNDLE_WINDOW = 2.0
MAX_HOLD = 2.0

CONFIG = """
external_url: http://127.0.0.1:{port}
webhook: {{bearer_token: {token}}}
api: {{tokens: [{{name: e2e, token: {api}}}]}}
links: {{secret: e2e-link-secret, ttl: 1h}}
notifications: {{timeout: 2s, retry: {{attempts: 2, backoff: 200ms, max_backoff: 1s}},
                bundle_window: {window}s, max_hold: {hold}s,
                rate_limit: {{max: {budget}, window: 10m}}}}
severities:
  - {{name: SEV2, urgency: high}}
  - {{name: SEV3, urgency: low, stakeholders: [{channel}]}}
users:
  - {{name: ana, contacts: [{{url: "json://{sink}/ana"}}]}}
  - {{name: bo, contacts: [{{url: "json://{sink}/bo"}}]}}
  - {{name: cy, contacts: [{{url: "json://{sink}/cy"}}]}}
  - {{name: dee, contacts: [{{url: "json://{sink}/dee"}}]}}
channels: [{{name: {channel}, urls: [{{url: "json://{sink}/{channel}"}}]}}]
teams: [{{name: ops}}, {{name: solo}}]
policies:
  - {{name: all-hands, steps: [{{notify: [{{user: ana}}, {{user: bo}}, {{user: cy}}]}}]}}
  - {{name: dee-alone, steps: [{{notify: [{{user: dee}}]}}]}}
route:
  team: ops
  policy: all-hands
  severity: SEV3
  group_by: [alertname]
  routes:
    - {{matchers: ['alertname=~"Solo.*"'], team: solo, policy: dee-alone, severity: SEV2}}
storage: {{postgres: {{dsn: '{dsn}', pool_size: 4}}}}
"""


def replicas_of(tmp_path: Path, dsn: str, sink: HttpSink) -> list[Ackd]:
    ackds = []
    for n in range(3):
        home = tmp_path / f"replica{n}"
        home.mkdir()
        port = free_port()
        config = home / "ackd.yaml"
        config.write_text(CONFIG.format(
            port=port, token=TOKEN, api=API_TOKEN, budget=BUDGET, channel=CHANNEL,
            sink=f"127.0.0.1:{sink.port}", dsn=dsn, window=f"{BUNDLE_WINDOW:g}",
            hold=f"{MAX_HOLD:g}",
        ))
        ackds.append(Ackd(home, config, port))
    return ackds


async def post(session: aiohttp.ClientSession, ackd: Ackd, name: str,
               resolved: bool = False) -> float:
    """One group's webhook (one alert) to one replica, as Alertmanager sends it; when it was
    answered 200."""
    labels = {"alertname": name, "cluster": "eu1"}
    alert = Alert(fingerprint_of(labels), AlertStatus.RESOLVED if resolved else AlertStatus.FIRING,
                  labels, {"summary": name}, START, datetime.now(UTC) if resolved else None)
    body = build_webhook([alert], group_labels={"alertname": name})
    async with session.post(f"{ackd.url}/api/v1/alerts", data=json.dumps(body)) as response:
        assert response.status == 200, await response.text()
    return time.monotonic()


async def storm(ackds: list[Ackd], *, resolved: bool = False) -> None:
    size = INCIDENTS // WAVES
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for number in range(WAVES):
            if number:
                await asyncio.sleep(BUNDLE_WINDOW + 1)  # past the window of the wave before
            for n in range(number * size, (number + 1) * size):
                await asyncio.gather(*(post(session, a, f"Storm{n}", resolved) for a in ackds))


@pytest.mark.timeout(240)  # three replicas, PostgreSQL and Alertmanager on a shared machine
async def test_three_replicas_in_a_storm_spend_one_budget(
    tmp_path: Path, sink: HttpSink, pg_cluster: Cluster
) -> None:
    async with fresh_database(pg_cluster) as dsn:
        ackds = replicas_of(tmp_path, dsn, sink)
        try:
            await asyncio.gather(*(a.start_ready() for a in ackds))
            await storm(ackds)
            await wait_until(lambda: _count(ackds[1], "open"), 60, f"{INCIDENTS} open")
            await wait_until(lambda: _settled(ackds[2], resolved=False), 60, "pages settled")
            await storm(ackds, resolved=True)
            await wait_until(lambda: _count(ackds[0], "resolved"), 60, "every one resolved")
            await wait_until(lambda: _settled(ackds[1], resolved=True), 60, "notes settled")
            timelines = [(await ackds[2].incident(i["id"]))["timeline"]
                         for i in await ackds[2].incidents(limit="1000")]
            arrived = Counter(r.path.lstrip("/") for r in sink.requests)
            waited = await _page_after_a_note(ackds, sink)
        finally:
            for ackd in ackds:
                ackd.stop()
            for ackd in ackds:
                if "Traceback" in ackd.log():
                    print(ackd.log())

    assert set(arrived) == {*PEOPLE, CHANNEL}, arrived
    assert max(arrived.values()) <= BUDGET, arrived  # one budget for the three replicas

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

    # The page that followed a note went at once: neither the bundle window nor max_hold.
    assert waited < min(BUNDLE_WINDOW, MAX_HOLD) * 0.75, waited


async def _page_after_a_note(ackds: list[Ackd], sink: HttpSink) -> float:
    """dee is paged (through one replica), told it resolved (through another) once the page's
    bundle window is over, and paged for a new incident (through the third) at once: how long
    that page took to reach the sink."""
    def to_dee() -> int:
        return sum(1 for r in sink.requests if r.path == "/dee")

    async def arrived(count: int) -> float:
        await wait_until(lambda: _true(to_dee() >= count), 20, f"message {count} to dee")
        return time.monotonic()

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        await post(session, ackds[0], "Solo1")
        paged = await arrived(1)
        await asyncio.sleep(max(0.0, paged + BUNDLE_WINDOW + 0.5 - time.monotonic()))
        await post(session, ackds[1], "Solo1", resolved=True)
        await arrived(2)
        posted = await post(session, ackds[2], "Solo2")
        waited = await arrived(3) - posted
    titles = [r.json["title"] for r in sink.requests if r.path == "/dee"]
    assert "resolved" in titles[1], titles
    assert "Solo2" in titles[2], titles
    return waited


async def _true(value: bool) -> bool:
    return value


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


async def _settled(ackd: Ackd, *, resolved: bool) -> bool:
    """Every incident has a final outcome for each recipient it meant a message for."""
    for incident in await ackd.incidents(limit="1000"):
        events = (await ackd.incident(incident["id"]))["timeline"]
        done = {(e["detail"]["recipient"], _reason(e)) for e in events if e["kind"] in FINAL}
        wanted = {(who, "triggered") for who in PEOPLE} | {(CHANNEL, "stakeholder_declared")}
        if resolved:
            wanted |= {(who, "resolved") for who in _paged_before_resolution(events)}
            wanted.add((CHANNEL, "stakeholder_resolved"))
        if not wanted <= done:
            return False
    return True
