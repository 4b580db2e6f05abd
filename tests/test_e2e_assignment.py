"""What a responder sees when people change an incident, end to end: the real Alertmanager
posts to a real ackd, whose pages go through real Apprise to a local sink, with second-scale
steps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    ANA_TOKEN,
    CY_TOKEN,
    Ackd,
    Alertmanager,
    ackd_for,
    alertmanager_binary,
    am_alert,
    wait_until,
)
from tests.sinks import HttpSink, SinkRequest

pytestmark = pytest.mark.alertmanager

WARNING = {"alertname": "PaymentApiSlow", "cluster": "eu1", "team": "payments",
           "severity": "other"}  # SEV2


@dataclass
class Running:
    ackd: Ackd
    sink: HttpSink
    number: int

    def pages(self, path: str) -> list[SinkRequest]:
        return [r for r in self.sink.requests if r.path == path]

    async def page(self, path: str, text: str, within: float = 15) -> dict[str, Any]:
        """The first message to `path` whose title or body holds `text`."""

        def found() -> list[dict[str, Any]]:
            return [r.json for r in self.pages(path)
                    if text in r.json["title"] or text in r.json["message"]]

        async def arrived() -> bool:
            return bool(found())

        await wait_until(arrived, within, f"a message to {path} saying {text!r}")
        return found()[0]


@pytest.fixture
async def running(tmp_path: Path, sink: HttpSink) -> AsyncIterator[Running]:
    """A SEV2 incident of the payments team, paged to ana (primary) and acknowledged."""
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="2s")
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        await am.start_ready()
        await am.post_alerts([am_alert(WARNING, datetime.now(UTC) - timedelta(minutes=1))])

        async def opened() -> bool:
            return len(await ackd.incidents()) == 1

        await wait_until(opened, 15, "the incident")
        [incident] = await ackd.incidents()
        started = Running(ackd, sink, incident["id"])
        await started.page("/ana", "PaymentApiSlow")
        await ackd.call("POST", f"/api/v1/incidents/{started.number}/ack", token=ANA_TOKEN)
        yield started
    finally:
        am.stop()
        ackd.stop()


async def test_a_reassigned_incident_pages_saying_who_reassigned_it(running: Running) -> None:
    number = running.number
    await running.ackd.call("POST", f"/api/v1/incidents/{number}/reassign",
                            {"team": "platform"}, token=CY_TOKEN)  # not paged by it
    page = await running.page("/ana", "REASSIGNED")
    assert page["title"].startswith(f"[SEV2] REASSIGNED #{number} platform:")
    assert "REASSIGNED to team platform by cy (step 1)." in page["message"]
    assert "acknowledged earlier" not in page["message"]


async def test_a_raised_severity_pages_saying_who_raised_it(running: Running) -> None:
    number = running.number
    await running.ackd.call("PUT", f"/api/v1/incidents/{number}/severity",
                            {"severity": "SEV1"}, token=CY_TOKEN)  # the raiser is not paged
    page = await running.page("/ana", "SEVERITY RAISED")
    assert page["title"].startswith(f"[SEV1] SEVERITY RAISED #{number} payments:")
    assert "SEVERITY RAISED to SEV1 by cy (step 1)." in page["message"]
    assert "acknowledged earlier" not in page["message"]


async def test_a_person_reassigned_to_who_does_not_answer_has_the_team_behind_them(
    running: Running,
) -> None:
    number = running.number
    await running.ackd.call("POST", f"/api/v1/incidents/{number}/reassign", {"user": "cy"},
                            token=ANA_TOKEN)
    first = await running.page("/cy", "REASSIGNED")
    assert "REASSIGNED to cy by ana." in first["message"]  # ahead of the policy: no step of it
    # cy does not answer within the 2 s the policy gives its first step: the team's policy
    # follows from its first step (ana, the primary), then its second (bo).
    behind = await running.page("/ana", "nobody has acknowledged yet")
    assert "REASSIGNED to cy by ana; nobody has acknowledged yet (step 1)." in behind["message"]
    await running.page("/bo", "REASSIGNED to cy by ana; nobody has acknowledged yet (step 2).")


async def test_stakeholder_rooms_hear_of_a_raise_once_and_never_of_a_drill(
    tmp_path: Path, sink: HttpSink,
) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    config = tmp_path / "ackd.yaml"
    room = f"json://127.0.0.1:{sink.port}"
    config.write_text(config.read_text() + f"""channels:
  - {{name: status-room, urls: [{{url: "{room}/status-room"}}]}}
  - {{name: exec-room, urls: [{{url: "{room}/exec-room"}}]}}
severities:
  - {{name: SEV1, stakeholders: [status-room, exec-room]}}
  - {{name: SEV2, stakeholders: [status-room]}}
  - {{name: SEV3}}
""")
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        drill = await ackd.call("POST", "/api/v1/drills", {"team": "payments"})  # SEV1
        await am.start_ready()
        await am.post_alerts([am_alert(WARNING, datetime.now(UTC) - timedelta(minutes=1))])
        running = Running(ackd, sink, 0)
        declared = await running.page("/status-room", "PaymentApiSlow")
        number = int(declared["title"].split("#")[1].split(" ")[0])
        assert number != drill["incident"]
        await ackd.call("PUT", f"/api/v1/incidents/{number}/severity", {"severity": "SEV1"},
                        token=ANA_TOKEN)
        raised = await running.page("/exec-room", "raised to SEV1")
        assert raised["title"].startswith(f"[SEV1] Incident #{number} raised to SEV1:")
        assert "Its severity was raised to SEV1 by ana." in raised["message"]
        await ackd.call("POST", f"/api/v1/incidents/{number}/resolve", token=ANA_TOKEN)
        await ackd.call("POST", f"/api/v1/incidents/{drill['incident']}/resolve")
        await running.page("/exec-room", "resolved")
        await running.page("/status-room", "resolved")
        rooms = [(r.path, r.json["title"]) for r in sink.requests if r.path.endswith("-room")]
        # One declaration, one raise, the resolution to each room; nothing of the drill.
        assert sorted(path for path, _ in rooms) == [
            "/exec-room", "/exec-room", "/status-room", "/status-room"], rooms
        assert not any("DRILL" in title for _, title in rooms)
        assert [r.path for r in sink.requests if "DRILL" in r.json["title"]][:1] == ["/ana"]
    finally:
        am.stop()
        ackd.stop()


async def test_a_responder_paged_in_is_reached_on_their_delayed_contact_too(
    tmp_path: Path, sink: HttpSink,
) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    config = tmp_path / "ackd.yaml"
    push = f'{{url: "json://127.0.0.1:{sink.port}/cy"}}'
    config.write_text(config.read_text().replace(
        push, f'{push}, {{url: "json://127.0.0.1:{sink.port}/cy-sms", delay: 2s, short: true}}'))
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        await am.start_ready()
        await am.post_alerts([am_alert(WARNING, datetime.now(UTC) - timedelta(minutes=1))])
        running = Running(ackd, sink, 0)
        first = await running.page("/ana", "PaymentApiSlow")
        number = int(first["title"].split("#")[1].split(" ")[0])
        await ackd.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
        await ackd.call("POST", f"/api/v1/incidents/{number}/responders", {"user": "cy"},
                        token=ANA_TOKEN)
        push_page = await running.page("/cy", "JOIN")
        assert "ana asks you to join this incident." in push_page["message"]
        sms = await running.page("/cy-sms", "JOIN")  # cy did nothing for 2 s
        assert sms["message"].startswith(f"[SEV2] JOIN #{number} payments:")
        assert len(sms["message"]) <= 160
    finally:
        am.stop()
        ackd.stop()
