"""The post-mortem draft: generated from an incident that was triggered, escalated,
acknowledged, commanded, handed over, noted and resolved (in-process, on a fake clock, through
the API), and read back line by line against the incident's own timeline."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.core.model import (
    Alert,
    AlertStatus,
    EventKind,
    Incident,
    IncidentState,
    TimelineEvent,
)
from receiver.incidents.postmortem import draft, span
from tests.harness import ANA_TOKEN, API_TOKEN, CY_TOKEN, ROOT
from tests.test_api import Api, start_api
from tests.test_reports import PAY_A, _after, _open


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


def _section(text: str, heading: str) -> list[str]:
    """The lines under a `## heading`, up to the next one, without blank lines."""
    lines = text.splitlines()
    start = lines.index(f"## {heading}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [line for line in lines[start:end] if line.strip()]


def _at(iso: str) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")


async def _call(api: Api, after: float, method: str, path: str, body: object, token: str
                ) -> None:
    await api.clock.jump(after)
    status, answer = await api.call(method, path, body, token=token)
    assert status in (200, 201), answer


async def _journey(api: Api) -> int:
    """Triggered (alert began 60s before), step 2 at +5m, acknowledged at +7m; cy makes ana
    commander at +8m, ana posts a status update at +9m and hands command to cy at +10m, cy
    posts one at +11m; resolved at +12m."""
    number = await _open(api, PAY_A, 60)
    await api.clock.jump(300)
    await api.settle()
    await _after(api, 120, "ack", number)
    roles, notes = f"/api/v1/incidents/{number}/roles", f"/api/v1/incidents/{number}/notes"
    await _call(api, 60, "PUT", f"{roles}/commander", {"user": "ana"}, CY_TOKEN)
    await _call(api, 60, "POST", notes, {"text": "DB failover | started"}, ANA_TOKEN)
    await _call(api, 60, "PUT", f"{roles}/commander", {"user": "cy"}, ANA_TOKEN)
    await _call(api, 60, "POST", notes, {"text": "failover done"}, CY_TOKEN)
    await _after(api, 60, "resolve", number)
    await api.settle()  # the resolution's notes delivered and on the timeline
    return number


async def _postmortem(api: Api, number: int) -> str:
    status, text = await api.call("GET", f"/api/v1/incidents/{number}/postmortem")
    assert status == 200, text
    assert isinstance(text, str)
    return text


async def test_the_draft_follows_the_timeline_line_by_line(api: Api) -> None:
    number = await _journey(api)
    text = await _postmortem(api, number)
    _, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    opened = _at(incident["opened_at"])
    timeline = incident["timeline"]

    rows = _section(text, "Timeline")[2:]  # after the header and its rule
    assert len(rows) == len(timeline)
    for row, event in zip(rows, timeline, strict=True):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[0] == _at(event["at"])
        since = datetime.fromisoformat(event["at"]) - datetime.fromisoformat(
            incident["opened_at"])
        assert cells[1] == f"+{span(since)}"
        assert cells[2] == event["kind"]
        assert cells[3] == event["actor"] + _held_then(timeline, event)
    kinds = [e["kind"] for e in timeline]
    for kind in ("opened", "step_fired", "acknowledged", "role_assigned", "status_update",
                 "resolved"):
        assert kind in kinds
    notes = [row for row in rows if "| status_update |" in row]
    assert [n.split(" | ")[3] for n in notes] == ["ana (incident commander)",
                                                   "cy (incident commander)"]
    assert notes[0].endswith("| text=DB failover \\| started |")

    handed = [e for e in timeline if e["kind"] == "role_assigned"]
    assert _section(text, "Roles") == [
        "| role | held by | from | to | for | assigned by |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| incident commander | ana | {_at(handed[0]['at'])} | {_at(handed[1]['at'])} | "
        "2m 0s | cy |",
        f"| incident commander | cy | {_at(handed[1]['at'])} | the end | 2m 0s | ana |",
    ]

    assert _section(text, "Summary") == [
        "- Summary: PaymentApiDown",
        "- Team: payments",
        "- Severity: SEV1",
        "- State: resolved",
        f"- Opened: {opened}",
        f"- Resolved: {_at(incident['resolved_at'])} by e2e",
        "- Duration: 12m 0s",
        "- Alerts: 1",
        f"  - PaymentApiDown (cluster=eu1, severity=critical, team=payments): from "
        f"{_at(incident['alerts'][0]['startsAt'])}, still firing",
    ]
    steps = [e for e in timeline if e["kind"] == "step_fired"]
    ack = next(e for e in timeline if e["kind"] == "acknowledged")
    assert _section(text, "Response times")[2:] == [
        f"| Time to detect | earliest alert start {_at(incident['alerts'][0]['startsAt'])} | "
        f"incident opened {opened} | 1m 0s |",
        f"| Time to first page | incident opened {opened} | first page {opened} | 0s |",
        f"| Time to acknowledge | first page {opened} | first acknowledgement "
        f"{_at(ack['at'])} | 7m 0s |",
        f"| Time to resolve | incident opened {opened} | resolved "
        f"{_at(incident['resolved_at'])} | 12m 0s |",
    ]
    assert _section(text, "Escalation and response") == [
        "| step | cycle | fired at | reason | paged |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {s['detail']['number']} | 1 | {_at(s['at'])} | {s['detail']['reason']} | "
          f"{', '.join(s['detail']['recipients'])} |" for s in steps),
        f"First acknowledged by e2e at {_at(ack['at'])} after step 2.",
        "Responders: e2e, cy, ana.",
    ]
    assert [s["detail"]["recipients"] for s in steps] == [["ana"], ["bo"]]
    assert _section(text, "Recurrence") == ["No earlier incident held any of these alerts."]
    review = _section(text, "Review (to fill in)")
    for heading in ("What happened", "Contributing factors", "Action items"):
        assert f"### {heading}" in review


async def test_earlier_incidents_of_the_same_alerts_are_listed(api: Api) -> None:
    first = await _journey(api)
    await api.clock.jump(3600)
    second = await _open(api, PAY_A, 10)
    text = await _postmortem(api, second)
    [line] = _section(text, "Recurrence")[1:]
    assert line.startswith(f"- #{first} (SEV1, payments) opened ")
    assert "resolved" in line
    assert _section(await _postmortem(api, first), "Recurrence") == [
        "No earlier incident held any of these alerts."]


async def test_postmortem_errors(api: Api) -> None:
    assert (await api.call("GET", "/api/v1/incidents/99/postmortem"))[0] == 404
    status, body = await api.call("GET", "/api/v1/incidents/x/postmortem")
    assert (status, body["field"]) == (400, "id")
    assert (await api.call("GET", "/api/v1/incidents/1/postmortem", token="no"))[0] == 401


async def test_the_cli_prints_the_same_draft(api: Api) -> None:
    number = await _journey(api)
    expected = await _postmortem(api, number)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "postmortem", str(number), "--url", api.url,
        "--token", API_TOKEN, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err
    assert out.decode() == expected
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "report", "--since", "7d", "--url", api.url,
        "--token", API_TOKEN, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err
    assert "Escalated (needed step 2 or later): 1 of 1 (100.0%)" in out.decode()


def _held_then(timeline: list[dict[str, object]], event: dict[str, object]) -> str:
    """" (incident commander)" when the event's actor was the commander at that moment,
    worked out from the role events before it."""
    commander = None
    for e in timeline:
        if e is event:
            break
        detail = e["detail"]
        assert isinstance(detail, dict)
        if e["kind"] == "role_assigned":
            commander = detail["user"]
        elif e["kind"] == "role_cleared":
            commander = None
    return " (incident commander)" if commander == event["actor"] else ""


def test_alert_text_cannot_break_the_tables() -> None:
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    incident = Incident(7, "k", "r", "payments", "SEV2", "standard", {}, IncidentState.RESOLVED,
                        now, now, resolved_at=now + timedelta(minutes=3), resolved_by="x|y",
                        summary="line one\nline two")
    alert = Alert("f", AlertStatus.FIRING, {"alertname": "A|B\nC"}, {}, now, None)
    events = [TimelineEvent(now, EventKind.OPENED, "alertmanager", {"alertname": "A|B\nC"}),
              TimelineEvent(now + timedelta(minutes=3), EventKind.RESOLVED, "x|y\nz")]
    text = draft(incident, [alert], events, [], now + timedelta(minutes=5))
    rows = _section(text, "Timeline")[2:]
    assert len(rows) == 2
    assert all(row.count(" | ") == 4 for row in rows)
    assert "- Summary: line one line two" in text


def test_the_draft_says_its_times_are_utc() -> None:
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    incident = Incident(7, "k", "r", "payments", "SEV2", "standard", {}, IncidentState.RESOLVED,
                        now, now, resolved_at=now + timedelta(minutes=3), resolved_by="ana")
    text = draft(incident, [], [TimelineEvent(now, EventKind.OPENED, "alertmanager")], [],
                 now + timedelta(minutes=5))
    assert text.splitlines()[2].startswith(
        "_Draft generated by ackd at 2026-01-05 09:05:00 UTC from the incident's record; every"
        " time in it is UTC.")
