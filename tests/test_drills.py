"""Drills: a marked test incident through a team's real escalation path, end to end with a
real ackd process, real Apprise and a local sink, steps two seconds apart; and the API's
answers to bad requests.

The end-to-end drill's times are checked against the events they report: a step against
the incident's opening (ackd's timer), a delivery against the moment the sink received it,
the acknowledgement against the test pressing the link. Not against a fixed budget from the
start: on a loaded machine a delivery (Apprise's threads, HTTP, this test's own loop) alone
took longer than one."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import jsonschema
import pytest

from receiver.cli.learning import ACKNOWLEDGED_UNPAGED, drill_exit, drill_lines
from receiver.web.openapi import SCHEMAS
from tests.harness import ANA_TOKEN, API_TOKEN, BO_TOKEN, CY_TOKEN, READY_WITHIN, ROOT, ackd_for
from tests.sinks import HttpSink
from tests.test_api import Api, start_api

# Both processes read the same wall clock; a store's time is whole microseconds.
CLOCKS = 0.001
# From the sink's answer to ackd recording the delivery: milliseconds when quiet.
RECORDED_WITHIN = 5.0


def _link(message: str, label: str) -> str:
    found = re.search(rf"{label}: (\S+)", message)
    assert found, message
    return found.group(1)


async def test_a_drill_end_to_end(tmp_path: Path, sink: HttpSink) -> None:
    ackd = ackd_for(tmp_path, sink.port, step_delay="2s")
    await ackd.start_ready()
    try:
        drill = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "receiver", "drill", "payments", "--wait", "2m",
            "--url", ackd.url, "--token", API_TOKEN, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        # The team's real path: the primary (ana) at once, the secondary (bo) 2 s later.
        # The first wait holds the CLI's own start (seconds of imports under load).
        first = (await sink.wait_for(1, within=READY_WITHIN))[0]
        assert first.path == "/ana"
        assert "DRILL" in first.json["title"]
        second = (await sink.wait_for(2, within=READY_WITHIN))[1]
        assert second.path == "/bo"
        assert "DRILL" in second.json["title"]
        pressing = time.time()
        async with aiohttp.ClientSession() as session, session.post(
            _link(second.json["message"], "Acknowledge")
        ) as pressed:
            assert pressed.status == 200
        answered = time.time()
        out, err = await asyncio.wait_for(drill.communicate(), READY_WITHIN)
        assert drill.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert lines[0].startswith("drill #1 started for payments (SEV1, policy standard)")
        # It prints the drill's report as the API gives it: as of the acknowledgement, so the
        # report read now may go on with the deliveries of the notes that followed.
        report = await ackd.get("/api/v1/drills/1")
        later = drill_lines(report)
        printed = lines[1:-1]
        assert printed == later[:len(printed)]
        assert len(printed) >= 4  # the heading, both steps, at least ana's page reaching her
        assert printed[0] == "Drill #1 of team payments (SEV1, policy standard):"
        assert lines[-1] == later[-1]

        opened = datetime.fromisoformat(report["started_at"]).timestamp()
        [(at_1, step_1, paged_1), (at_2, step_2, paged_2)] = [
            (s["after_seconds"], s["step"], s["paged"]) for s in report["steps"]]
        assert (at_1, step_1, paged_1) == (0.0, "1", ["ana"])
        # Step 2 by ackd's timer, measured from the opening, on ackd's clock.
        assert (step_2, paged_2) == ("2", ["bo"])
        assert 1.9 <= at_2 < 3.0, at_2
        pages = report["reached"][:2]  # then the notes of the acknowledgement and the end
        assert [(x["recipient"], x["channel"], x["step"], x["reason"], x["delivered"])
                for x in pages] == [("ana", "json", "1", "triggered", True),
                                    ("bo", "json", "2", "escalated", True)]
        # Each delivery is recorded once the sink had it (the sink answers at once), at its
        # step's page or later; the clock is the machine's for both processes.
        for reached, got, paged_at in zip(pages, (first, second), (at_1, at_2), strict=True):
            recorded = opened + reached["after_seconds"]
            assert reached["after_seconds"] >= paged_at
            assert got.received_at - CLOCKS <= recorded < got.received_at + RECORDED_WITHIN, (
                recorded - got.received_at, reached)
        # The acknowledgement: bo, by the link, at the moment the test pressed it.
        assert lines[-1] == (f"Acknowledged by bo after "
                             f"{report['acknowledged_after_seconds']:.1f}s.")
        acked = opened + report["acknowledged_after_seconds"]
        assert pressing - CLOCKS <= acked <= answered + CLOCKS, (pressing, acked, answered)

        # Kept out of the real figures: reports count it apart, metrics never observed it.
        report = await ackd.get("/api/v1/reports", since="1d")
        assert (report["incidents"], report["drills"]) == (0, 1)
        assert report["by_team_severity"] == []
        metrics = await ackd.metrics()
        assert "ackd_time_to_acknowledge_seconds_count{" not in metrics
        assert "ackd_time_to_resolve_seconds_count{" not in metrics
        assert (await ackd.incident(1))["state"] == "resolved"
    finally:
        ackd.stop()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


async def test_drill_api_errors(api: Api) -> None:
    cases = [
        ({"team": "nobody"}, "team"),
        ({}, "team"),
        ({"team": 3}, "team"),
        ({"team": "payments", "severity": "SEV9"}, "severity"),
        ([], "body"),
        ({"team": "payments", "x": 1}, "x"),  # refused before anyone is paged
        ({"team": "payments", "severty": "SEV1"}, "severty"),
    ]
    for body, field in cases:
        status, answer = await api.call("POST", "/api/v1/drills", body)
        assert (status, answer["field"]) == (400, field), body
    assert (await api.call("GET", "/api/v1/incidents"))[1]["incidents"] == []
    status, _ = await api.call("POST", "/api/v1/drills", {"team": "payments"}, token="no")
    assert status == 401
    for token in (BO_TOKEN, ANA_TOKEN):  # read, respond: drills need admin
        status, answer = await api.call("POST", "/api/v1/drills", {"team": "payments"},
                                        token=token)
        assert (status, answer["scope"]) == (403, "admin")
    status, answer = await api.call("POST", "/api/v1/drills", {"team": "payments"},
                                    token=CY_TOKEN)
    assert status == 201
    status, answer = await api.call("GET", f"/api/v1/drills/{answer['incident']}",
                                    token=BO_TOKEN)
    assert status == 200  # reading a drill's report needs only read
    number = await api.fire()
    assert (await api.call("GET", f"/api/v1/incidents/{number}/postmortem", token=BO_TOKEN)
            )[0] == 200
    status, answer = await api.call("GET", f"/api/v1/drills/{number}")
    assert status == 404
    assert "not a drill" in answer["error"]
    assert (await api.call("GET", "/api/v1/drills/99"))[0] == 404


async def test_a_drill_pages_like_an_incident_and_reports_itself(api: Api) -> None:
    status, started = await api.call("POST", "/api/v1/drills", {"team": "payments"})
    assert status == 201, started
    assert (started["team"], started["severity"], started["policy"]) == (
        "payments", "SEV1", "standard")
    assert started["steps"] == [{"after_seconds": 0.0, "step": "1", "paged": ["ana"]}]
    await api.settle()
    assert api.paged() == ["ana"]
    [(_, message)] = api.notifier.sent
    assert message.title.startswith("[SEV1]")
    assert "DRILL" in message.title
    await api.clock.jump(90)
    status, _ = await api.call("POST", f"/api/v1/incidents/{started['incident']}/ack")
    assert status == 200
    await api.settle()  # the acknowledgement's note to ana delivered too
    status, report = await api.call("GET", f"/api/v1/drills/{started['incident']}")
    assert (report["acknowledged_by"], report["acknowledged_after_seconds"]) == ("e2e", 90.0)
    # A script's token, which the drill never paged: no answer to its pages.
    assert (report["paged"], report["answered"]) == (["ana"], False)
    assert [(r["recipient"], r["channel"], r["step"], r["reason"], r["delivered"])
            for r in report["reached"]] == [
        ("ana", "json", "1", "triggered", True), ("ana", "json", None, "acknowledged", True)]
    jsonschema.validate(report, SCHEMAS["DrillReport"])  # as the API's document says


async def test_a_drill_taken_by_someone_it_never_paged_is_no_answer(api: Api) -> None:
    """cy takes the drill that paged ana (reassigns it to themselves): acknowledged, but by
    nobody the drill asked, so it shows nothing of the path and does not pass."""
    status, started = await api.call("POST", "/api/v1/drills", {"team": "payments"})
    assert status == 201, started
    number = started["incident"]
    await api.settle()
    await api.clock.jump(4)
    status, _ = await api.call("POST", f"/api/v1/incidents/{number}/reassign", {"user": "cy"},
                               token=CY_TOKEN)
    assert status == 200
    await api.settle()
    assert set(api.paged()) == {"ana"}  # her page, then the note that cy took it; none to cy
    status, report = await api.call("GET", f"/api/v1/drills/{number}")
    assert status == 200
    assert (report["acknowledged_by"], report["paged"], report["answered"]) == (
        "cy", ["ana"], False)
    assert drill_lines(report)[-1] == (
        "Acknowledged by cy after 4.0s, whom the drill never paged (it paged: ana): "
        "no answer to its pages.")
    assert drill_exit(report) == ACKNOWLEDGED_UNPAGED
    jsonschema.validate(report, SCHEMAS["DrillReport"])
    # Unanswered, it is the failure it always was.
    assert drill_exit({**report, "acknowledged_by": None, "answered": False}) == 1


async def test_a_drill_reassigned_to_a_person_names_the_steps_as_the_reports_do(
    api: Api,
) -> None:
    """The person a drill is reassigned to is paged ahead of the policy's steps: the report
    calls that page "reassigned", and the policy's first step behind them is still step 1."""
    status, started = await api.call("POST", "/api/v1/drills", {"team": "payments"})
    assert status == 201, started
    number = started["incident"]
    await api.settle()
    status, _ = await api.call("POST", f"/api/v1/incidents/{number}/reassign", {"user": "cy"},
                               token=ANA_TOKEN)
    assert status == 200
    await api.settle()
    await api.clock.jump(timedelta(minutes=5))  # cy's time is up: the policy from its step 1
    await api.settle()
    assert api.paged() == ["ana", "cy", "ana"]
    status, report = await api.call("GET", f"/api/v1/drills/{number}")
    assert status == 200
    assert [(s["step"], s["paged"]) for s in report["steps"]] == [
        ("1", ["ana"]), ("reassigned", ["cy"]), ("1", ["ana"])]
    assert [(r["recipient"], r["step"]) for r in report["reached"]] == [
        ("ana", "1"), ("cy", "reassigned"), ("ana", "1")]
    assert drill_lines(report)[1:4] == [
        "  +0.0s step 1 paged ana", "  +0.0s step reassigned paged cy",
        "  +300.0s step 1 paged ana"]
    # As the API's document describes it: steps are strings, a note's step null.
    jsonschema.validate(report, SCHEMAS["DrillReport"])
    jsonschema.validate(started, SCHEMAS["DrillReport"])


async def test_the_readme_shows_what_a_drill_prints(api: Api) -> None:
    """README's drill example is a real one: payments' primary ana paged at once, the
    secondary bo at 5 minutes, ana acknowledging at 6m12s, then the drill resolved."""
    block = (ROOT / "README.md").read_text().split("$ ackd drill payments\n", 1)[1]
    shown = block.split("\n```", 1)[0].splitlines()
    status, started = await api.call("POST", "/api/v1/drills", {"team": "payments"})
    assert status == 201, started
    number = started["incident"]
    assert shown[0] == (f"drill #{number} started for {started['team']} ({started['severity']},"
                        " policy standard); waiting up to 10m for an acknowledgement")
    await api.settle()
    await api.clock.jump(timedelta(minutes=5))
    await api.settle()
    await api.clock.jump(timedelta(seconds=72))
    assert (await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN))[0] == 200
    await api.settle()
    assert (await api.call("POST", f"/api/v1/incidents/{number}/resolve"))[0] == 200
    await api.settle()
    status, report = await api.call("GET", f"/api/v1/drills/{number}")
    assert status == 200
    assert drill_lines(report) == shown[1:]
    assert (report["paged"], report["answered"], drill_exit(report)) == (["ana", "bo"], True, 0)
