"""End to end, with second-scale delays: a page nobody answers escalates, a signed link stops
it, a crash between steps neither loses nor repeats a step."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.core.model import Alert, AlertStatus
from tests.harness import (
    TOKEN,
    Ackd,
    Alertmanager,
    ackd_for,
    alertmanager_binary,
    am_alert,
    wait_until,
)
from tests.sinks import HttpSink, SinkRequest

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
PAYMENTS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
            "severity": "critical"}


def pages_to(sink: HttpSink, who: str) -> list[SinkRequest]:
    return [r for r in sink.requests if r.path == f"/{who}"]


def histogram_count(metrics: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics.splitlines():
        if line.startswith(f"{name}_count{{") and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}_count{{{want}}} in /metrics")


@pytest.mark.alertmanager
async def test_unanswered_page_escalates_until_acknowledged_by_link(
    tmp_path: Path, sink: HttpSink
) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="2s")
    # Step 3 comes LEAD_DELAY after step 2: time to press the link on a loaded machine.
    config = tmp_path / "ackd.yaml"
    lead = "      - {delay: 2s, notify: [{lead: true}]}\n"
    assert lead in config.read_text()
    config.write_text(config.read_text().replace(
        lead, lead.replace("2s", f"{LEAD_DELAY.total_seconds():g}s")))
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        await am.start_ready()
        await am.post_alerts([am_alert(PAYMENTS, START)])

        # Step 1: the primary on call (ana). Nobody acknowledges.
        first = (await sink.wait_for(1, within=15))[0]
        assert first.path == "/ana"
        assert "[SEV1]" in first.json["title"]

        # Step 2, two seconds later (as the timeline has it: when this test saw each page
        # depends on the machine's load): the secondary (bo).
        second = (await sink.wait_for(2, within=10))[1]
        assert second.path == "/bo"
        assert "ESCALATED" in second.json["title"]
        number = (await ackd.incidents())[0]["id"]
        fired = _fired_at(await ackd.incident(number))
        assert timedelta(seconds=2) <= fired[1] - fired[0] <= timedelta(seconds=4)

        link = _ack_link(second.json["message"], ackd.url)
        async with aiohttp.ClientSession() as session:
            # A chat tool's link preview is a GET: it must not acknowledge anything.
            async with session.get(link) as preview:
                assert preview.status == 200
                assert "Acknowledge" in await preview.text()
            assert (await ackd.incident(number))["state"] == "triggered"
            async with session.post(link) as pressed:
                assert pressed.status == 200, await pressed.text()

        incident = await ackd.incident(number)
        assert incident["state"] == "acknowledged"
        # The person acknowledged (the cadence, the stale notice and follow-ups look for
        # their name); the timeline says how.
        assert incident["acknowledged_by"] == "bo"
        [acked] = [e for e in incident["timeline"] if e["kind"] == "acknowledged"]
        assert (acked["actor"], acked["detail"]) == ("bo", {"via": "link"})

        # Step 3 (the lead, cy) was due LEAD_DELAY after step 2: it never comes.
        assert datetime.now(UTC) < fired[1] + LEAD_DELAY, "acknowledged after step 3 was due"
        due = fired[1] + LEAD_DELAY + timedelta(seconds=2)
        await asyncio.sleep((due - datetime.now(UTC)).total_seconds())
        assert pages_to(sink, "cy") == []
        later = [r for r in sink.requests[2:] if "acknowledged" not in r.json["title"]]
        assert later == [], [r.json["title"] for r in later]

        metrics = await ackd.metrics()
        assert histogram_count(
            metrics, "ackd_time_to_acknowledge_seconds", team="payments", severity="SEV1"
        ) == 1
    finally:
        am.stop()
        ackd.stop()


LEAD_DELAY = timedelta(seconds=6)


def _fired_at(incident: dict[str, Any]) -> dict[int, datetime]:
    """When each step fired (its first time), by the incident's timeline."""
    fired: dict[int, datetime] = {}
    for e in incident["timeline"]:
        if e["kind"] == "step_fired":
            fired.setdefault(e["detail"]["step"], datetime.fromisoformat(e["at"]))
    return fired


def _ack_link(message: str, base: str) -> str:
    found = re.search(re.escape(base) + r"/l/[A-Za-z0-9_\-]+", message)
    assert found, f"no acknowledge link in: {message}"
    return found.group(0)


async def _post_alert(url: str) -> None:
    labels = {**PAYMENTS, "alertname": "LedgerLag"}
    alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, START, None)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session, session.post(
        f"{url}/api/v1/alerts", data=json.dumps(build_webhook([alert])), headers=headers
    ) as response:
        assert response.status == 200


def _fired(incident: dict[str, Any], step: int) -> int:
    return sum(
        1 for e in incident["timeline"]
        if e["kind"] == "step_fired" and e["detail"]["step"] == step
    )


async def test_step_due_while_down_fires_once_promptly_after_restart(
    tmp_path: Path, sink: HttpSink
) -> None:
    ackd = ackd_for(tmp_path, sink.port, step_delay="3s")
    try:
        await _crash_between_steps(ackd, sink)
    finally:
        ackd.stop()


async def _crash_between_steps(ackd: Ackd, sink: HttpSink) -> None:
    await ackd.start_ready()
    await _post_alert(ackd.url)
    await sink.wait_for(1, within=10)  # step 1 paged ana; step 2 is due in 3 s
    ackd.kill()

    await asyncio.sleep(4)  # step 2's deadline passes while ackd is down
    assert pages_to(sink, "bo") == []
    await ackd.start_ready()
    restarted = datetime.now(UTC)
    await wait_until(lambda: _arrived(sink, "bo"), 5, "step 2 after the restart")

    await asyncio.sleep(1.5)
    assert len(pages_to(sink, "bo")) == 1
    incident = await ackd.incident((await ackd.incidents())[0]["id"])
    assert _fired(incident, 0) == 1
    assert _fired(incident, 1) == 1
    # Promptly, not at some later poll: by the timeline, not by when this test saw the page
    # (its polling and the send's thread lag on a loaded machine).
    assert _fired_at(incident)[1] - restarted < timedelta(seconds=1.5)


async def _arrived(sink: HttpSink, who: str) -> bool:
    return bool(pages_to(sink, who))


async def test_a_schedule_renamed_by_a_sighup_between_steps_still_pages_the_secondary(
    tmp_path: Path, sink: HttpSink
) -> None:
    """The schedule `payments` renamed `pay-eu` (both teams moved to it, the same people)
    while an incident waits for its second step: the reload's log names the incident, and
    the step pages bo through the team's schedule and says so, rather than nobody."""
    ackd = ackd_for(tmp_path, sink.port, step_delay="5s")
    config = tmp_path / "ackd.yaml"
    try:
        await ackd.start_ready()
        await _post_alert(ackd.url)
        await sink.wait_for(1, within=10)  # step 1 paged ana; step 2 is due in 5 s
        number = (await ackd.incidents())[0]["id"]
        text = config.read_text()
        config.write_text(text.replace("  - name: payments\n    timezone",
                                       "  - name: pay-eu\n    timezone")
                          .replace("schedule: payments", "schedule: pay-eu"))
        assert ackd.proc is not None
        ackd.proc.send_signal(signal.SIGHUP)
        await wait_until(lambda: _logged(ackd, "which this config removes"), 5, "the reload")
        assert (f"1 open incident(s) name schedule payments, which this config removes: they"
                f" page team payments's schedule pay-eu instead (#{number})") in ackd.log()
        assert pages_to(sink, "bo") == []  # the reload came before step 2

        await wait_until(lambda: _arrived(sink, "bo"), 15, "step 2 after the reload")
        assert pages_to(sink, "cy") == []  # the lead's step waits its own 5 s
        incident = await ackd.incident(number)
        second = [e["detail"] for e in incident["timeline"] if e["kind"] == "step_fired"][1]
        assert (second["recipients"], second["unresolved"]) == (["bo"], [])
        await wait_until(lambda: _logged(ackd, f"incident #{number} step 2:"), 5, "the step")
        assert (f"incident #{number} step 2: schedule payments no longer exists: team"
                f" payments's schedule pay-eu") in ackd.log()
    finally:
        ackd.stop()


async def _logged(ackd: Ackd, text: str) -> bool:
    return text in ackd.log()
