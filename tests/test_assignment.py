"""Reassigning an incident, paging more responders in, changing its severity: through the
API (every error a named 4xx) and the CLI, on the fake clock, each on the timeline."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import EventKind, TimelineEvent
from receiver.incidents import assignment
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import ANA_TOKEN, API_TOKEN, BO_TOKEN, CY_TOKEN, write_config
from tests.sinks import HttpSink
from tests.test_api import Api, run_cli, start_api

OTHER = {"alertname": "Disk", "cluster": "eu1", "team": "payments", "severity": "x"}  # SEV2


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


async def _later(api: Api, minutes: float) -> None:
    await api.clock.jump(timedelta(minutes=minutes))
    await api.settle()


async def _events(api: Api, number: int, kind: str) -> list[tuple[str, dict[str, Any]]]:
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    return [(e["actor"], e["detail"]) for e in body["timeline"] if e["kind"] == kind]


async def test_reassigning_to_a_team_starts_its_policy_over(api: Api) -> None:
    number = await api.fire()
    await api.settle()
    await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/reassign",
                                  {"team": "platform"}, token=CY_TOKEN)
    assert (status, body["team"], body["state"]) == (200, "platform", "triggered")
    await api.settle()
    assert api.paged()[-1] == "ana"  # platform's first step: its primary on call
    page = api.notifier.sent[-1][1]
    assert page.title.startswith(f"[SEV1] REASSIGNED #{number} platform:")
    assert "REASSIGNED to team platform by cy (step 1)." in page.body.splitlines()
    assert "acknowledged earlier" not in page.body
    await _later(api, 5)
    assert api.paged()[-1] == "bo"  # and on, as its policy says
    assert ("REASSIGNED to team platform by cy; nobody has acknowledged yet (step 2)."
            in api.notifier.sent[-1][1].body)
    assert await _events(api, number, "reassigned") == [
        ("cy", {"team": "platform", "user": None, "previous_team": "payments"})]


async def test_reassigning_to_a_person_pages_them_first_and_the_team_behind_them(
    api: Api,
) -> None:
    number = await api.fire()
    await api.settle()
    assert api.paged() == ["ana"]
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/reassign",
                                  {"user": "cy"}, token=ANA_TOKEN)
    assert (status, body["team"]) == (200, "payments")
    await api.settle()
    assert api.paged() == ["ana", "cy"]  # at once, alone
    # cy is no step of the policy (the reports name her page `reassigned`), whose steps
    # behind her keep their numbers: the pages say so as the reports do.
    assert "REASSIGNED to cy by ana." in api.notifier.sent[-1][1].body.splitlines()
    await _later(api, 4)
    assert api.paged() == ["ana", "cy"]  # cy has the 5 minutes the policy's first step gets
    await _later(api, 1)
    # Unanswered: the team's policy from its first step, as for a new incident. ana, who
    # reassigned it, is paged there like anyone (no `not_paged`, unlike who un-acknowledges
    # or reassigns to a team: engine._knows): that step follows only if cy did not answer,
    # news to her, and her page says whom it was handed to and when.
    assert api.paged() == ["ana", "cy", "ana"]
    lines = api.notifier.sent[-1][1].body.splitlines()
    assert "REASSIGNED to cy by ana; nobody has acknowledged yet (step 1)." in lines
    assert lines[lines.index("Paged before, not acknowledged:") + 1].startswith(
        "- cy (reassigned) at ")
    fired = [d for _, d in await _events(api, number, "step_fired")]
    assert [(d["recipients"], "not_paged" in d) for d in fired] == [
        (["ana"], False), (["cy"], False), (["ana"], False)]
    await _later(api, 5)
    assert api.paged() == ["ana", "cy", "ana", "bo"]
    lines = api.notifier.sent[-1][1].body.splitlines()
    assert "REASSIGNED to cy by ana; nobody has acknowledged yet (step 2)." in lines
    at = lines.index("Paged before, not acknowledged:")
    assert [line.split(" at ")[0] for line in lines[at + 1:at + 3]] == [
        "- ana (step 1)", "- cy (reassigned)"]
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack", token=API_TOKEN)
    assert (status, body["state"]) == (200, "acknowledged")
    await _later(api, 30)
    assert sorted(api.paged()[4:]) == ["ana", "bo", "cy"]  # the acknowledgement's note, no page


async def test_a_reassignment_to_a_person_is_no_step_of_the_policy_in_the_metrics(
    api: Api,
) -> None:
    """The person's page counts as step "reassigned"; the policy's steps behind them keep
    their own numbers: the first is step 0 again, not step 1."""
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]  # the policy's step 0
    status, _ = await api.call("POST", f"/api/v1/incidents/{number}/reassign",
                               {"user": "cy"}, token=ANA_TOKEN)
    assert status == 200
    assert await api.paged_once(2) == ["ana", "cy"]
    await api.clock.jump(timedelta(minutes=5))
    assert await api.paged_once(3) == ["ana", "cy", "ana"]  # the policy's step 0 behind cy
    await api.clock.jump(timedelta(minutes=5))
    assert await api.paged_once(4) == ["ana", "cy", "ana", "bo"]  # and its step 1
    metrics = (await api.call("GET", "/metrics", token=None))[1]
    counted = {
        step: float(value) for step, value in re.findall(
            r'ackd_escalation_steps_total\{policy="standard",step="(\w+)",team="payments"\}'
            r" (\S+)", metrics)
    }
    assert counted == {"0": 2.0, "reassigned": 1.0, "1": 1.0}


async def test_a_person_who_acknowledges_in_time_is_the_only_one_paged(api: Api) -> None:
    number = await api.fire()
    await api.settle()
    await api.call("POST", f"/api/v1/incidents/{number}/reassign", {"user": "cy"},
                   token=ANA_TOKEN)
    await api.settle()
    await _later(api, 3)
    status, _ = await api.call("POST", f"/api/v1/incidents/{number}/ack", token=CY_TOKEN)
    assert status == 200
    await _later(api, 30)
    assert api.paged()[2:] == ["ana"]  # the note of cy's ack (not to cy), no pages
    pages = [m.title for _, m in api.notifier.sent[2:]]
    assert all("acknowledged by cy" in t for t in pages), pages


async def test_a_responder_is_paged_in_and_the_owner_stays(api: Api) -> None:
    number = await api.fire()
    await api.settle()
    await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    await api.settle()
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/responders",
                                  {"user": "bo"}, token=ANA_TOKEN)
    assert (status, body["state"], body["acknowledged_by"]) == (200, "acknowledged", "ana")
    await api.settle()
    assert api.paged()[-1] == "bo"
    page = api.notifier.sent[-1][1]
    assert "JOIN" in page.title
    assert "ana asks you to join this incident" in page.body
    assert await _events(api, number, "responder_added") == [("ana", {"user": "bo"})]
    sent = len(api.paged())
    await api.call("POST", f"/api/v1/incidents/{number}/resolve", token=ANA_TOKEN)
    await api.settle()
    assert api.paged()[sent:] == ["bo"]  # bo hears it is resolved; ana resolved it


async def test_who_adds_themselves_as_a_responder_is_not_paged_to_join(api: Api) -> None:
    """cy joins by her own hand: she is a responder on the timeline, and no page asks her
    to join what she just joined (nor the SMS after it)."""
    number = await api.fire()
    await api.settle()
    assert api.paged() == ["ana"]
    status, _ = await api.call("POST", f"/api/v1/incidents/{number}/responders",
                               {"user": "cy"}, token=CY_TOKEN)
    assert status == 200
    await _later(api, 1)
    assert api.paged() == ["ana"]
    assert await _events(api, number, "responder_added") == [("cy", {"user": "cy"})]
    status, _ = await api.call("POST", f"/api/v1/incidents/{number}/responders",
                               {"user": "bo"}, token=CY_TOKEN)
    await api.settle()
    assert api.paged() == ["ana", "bo"]  # another person added is paged, as before


async def _through_apprise(tmp_path: Path, sink: HttpSink) -> Api:
    """The daemon of `api`, its pages sent by ackd's own Apprise notifier to `sink`: where
    a page's absence is the point, nothing but the sink records them."""
    path = write_config(tmp_path / "ackd.yaml", f"127.0.0.1:{sink.port}", step_delay="5m")
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    clock = FakeClock()
    daemon = Daemon(loaded, clock=clock)  # no notifier given: the real Apprise adapter
    await daemon.start()
    return Api(daemon, None, clock)  # type: ignore[arg-type]


def _utc(at: datetime) -> str:
    """A time as a page prints it."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _mtta(metrics: str) -> tuple[float, float]:
    """ackd_time_to_acknowledge_seconds' count and sum for payments' SEV1."""
    found = dict(re.findall(r'^ackd_time_to_acknowledge_seconds_(count|sum)'
                            r'\{severity="SEV1",team="payments"\} (\S+)$', metrics, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


async def test_who_reassigns_an_unacknowledged_incident_to_themselves_takes_it_unpaged(
    tmp_path: Path, sink: HttpSink,
) -> None:
    """ana was paged, then bo; ana takes it herself: no page asks her to take what she just
    took. On an unacknowledged incident, taking it is acknowledging it ("take it" on a
    page): the timeline says she reassigned it to herself and acknowledged it, MTTA counts
    the 5 minutes since her page, and bo is told she took it, as of any acknowledgement."""
    api = await _through_apprise(tmp_path, sink)
    try:
        number = await api.fire()
        await api.settle()
        await api.clock.jump(timedelta(minutes=5))
        await api.settle()
        assert [r.path for r in await sink.wait_for(2)] == ["/ana", "/bo"]
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/reassign",
                                      {"user": "ana"}, token=ANA_TOKEN)
        assert (status, body["state"], body["acknowledged_by"]) == (200, "acknowledged", "ana")
        await api.settle()
        [told] = (await sink.wait_for(3))[2:]
        assert (told.path, told.json["title"]) == ("/bo", f"#{number} acknowledged by ana")
        await _later(api, 30)  # nothing left to page: the run is in ana's hands
        assert [r.path for r in sink.requests] == ["/ana", "/bo", "/bo"]
        _, body = await api.call("GET", f"/api/v1/incidents/{number}")
        assert [(e["kind"], e["actor"]) for e in body["timeline"]
                if e["kind"] in ("reassigned", "acknowledged")] == [
            ("reassigned", "ana"), ("acknowledged", "ana")]
        assert _mtta((await api.call("GET", "/metrics", token=None))[1]) == (1.0, 300.0)
    finally:
        await api.daemon.stop()


async def test_who_reassigns_an_acknowledged_incident_to_themselves_holds_it_unpaged(
    tmp_path: Path, sink: HttpSink, caplog: pytest.LogCaptureFixture,
) -> None:
    """ana acknowledged; cy takes it over herself: no page to her, and no acknowledgement
    of cy's (ana's stays MTTA's and the first on record); cy holds it now, whom the status
    cadence and the stale notice ask; ana, who held it, is told so once, and the log says
    so."""
    api = await _through_apprise(tmp_path, sink)
    try:
        number = await api.fire()
        await api.settle()
        await sink.wait_for(1)
        await api.clock.jump(timedelta(minutes=1))
        await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
        await api.clock.jump(timedelta(minutes=1))
        taken_at = api.clock.now()
        with caplog.at_level(logging.INFO, logger="receiver.incidents.desk"):
            status, body = await api.call("POST", f"/api/v1/incidents/{number}/reassign",
                                          {"user": "cy"}, token=CY_TOKEN)
        assert (status, body["state"], body["acknowledged_by"]) == (200, "acknowledged", "cy")
        # Who holds it and since when, together: cy since her taking, not since ana's ack.
        assert datetime.fromisoformat(body["acknowledged_at"]) == taken_at
        await api.settle()
        [told] = (await sink.wait_for(2))[1:]
        assert (told.path, told.json["title"]) == ("/ana", f"#{number} taken over by cy")
        assert told.json["message"].splitlines()[1] == "Taken over by cy; you no longer hold it."
        assert (f"incident #{number} taken over by cy from ana, who held it (told)"
                in caplog.messages)
        await _later(api, 30)
        assert [r.path for r in sink.requests] == ["/ana", "/ana"]
        _, body = await api.call("GET", f"/api/v1/incidents/{number}")
        assert [(e["kind"], e["actor"]) for e in body["timeline"]
                if e["kind"] in ("reassigned", "acknowledged")] == [
            ("acknowledged", "ana"), ("reassigned", "cy")]
        assert _mtta((await api.call("GET", "/metrics", token=None))[1]) == (1.0, 60.0)
    finally:
        await api.daemon.stop()


async def test_who_held_an_incident_reassigned_to_another_person_is_told(
    tmp_path: Path, sink: HttpSink,
) -> None:
    """ana acknowledged; cy reassigns it to her: she is paged, and told nothing besides.
    She acknowledges again, and cy reassigns it to bo: bo is paged, and ana, who held it, is
    told once that it is not hers now."""
    api = await _through_apprise(tmp_path, sink)
    try:
        number = await api.fire()
        await api.settle()
        await sink.wait_for(1)
        await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
        await api.call("POST", f"/api/v1/incidents/{number}/reassign", {"user": "ana"},
                       token=CY_TOKEN)
        await api.settle()
        [page] = (await sink.wait_for(2))[1:]
        assert (page.path, page.json["title"].split(" #")[0]) == ("/ana", "[SEV1] REASSIGNED")
        await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/reassign",
                                      {"user": "bo"}, token=CY_TOKEN)
        assert (status, body["state"]) == (200, "triggered")
        await api.settle()
        arrived = sorted((await sink.wait_for(4))[2:], key=lambda r: r.path)
        assert [(r.path, r.json["title"].split(" #")[0]) for r in arrived] == [
            ("/ana", f"#{number} reassigned to bo by cy"), ("/bo", "[SEV1] REASSIGNED")]
        assert arrived[0].json["message"].splitlines()[1] == (
            "Reassigned to bo by cy; you no longer hold it.")
        await _later(api, 1)
        assert len(sink.requests) == 4
    finally:
        await api.daemon.stop()


async def test_who_held_an_incident_reassigned_to_a_team_is_told_unless_paged_by_it(
    tmp_path: Path, sink: HttpSink, caplog: pytest.LogCaptureFixture,
) -> None:
    """cy acknowledged ana's page; ana reassigns it to team platform: cy, who held it, is told
    once, and the log says so (ana, platform's on call, is not paged: she did it). cy holds
    it again and reassigns it to payments herself: nobody is told (ana is paged). ana holds
    it and cy reassigns it to platform, whose run pages ana at once: its page says so, and
    no note comes beside it."""
    api = await _through_apprise(tmp_path, sink)
    try:
        number = await api.fire()
        await api.settle()
        await sink.wait_for(1)
        await api.call("POST", f"/api/v1/incidents/{number}/ack", token=CY_TOKEN)
        await api.settle()
        await sink.wait_for(2)  # ana told cy acknowledged it
        with caplog.at_level(logging.INFO, logger="receiver.incidents.desk"):
            status, body = await api.call("POST", f"/api/v1/incidents/{number}/reassign",
                                          {"team": "platform"}, token=ANA_TOKEN)
        assert (status, body["team"], body["state"]) == (200, "platform", "triggered")
        await api.settle()
        [told] = (await sink.wait_for(3))[2:]
        assert (told.path, told.json["title"]) == (
            "/cy", f"#{number} reassigned to team platform by ana")
        assert told.json["message"].splitlines()[1] == (
            "Reassigned to team platform by ana; you no longer hold it.")
        assert (f"incident #{number} reassigned to team platform by ana from cy, who held it"
                " (told)" in caplog.messages)

        await api.call("POST", f"/api/v1/incidents/{number}/ack", token=CY_TOKEN)
        await api.call("POST", f"/api/v1/incidents/{number}/reassign", {"team": "payments"},
                       token=CY_TOKEN)
        await api.settle()
        await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
        await api.call("POST", f"/api/v1/incidents/{number}/reassign", {"team": "platform"},
                       token=CY_TOKEN)
        await api.settle()
        # ana told cy acknowledged it again; then ana paged by payments' run, and platform's.
        arrived = (await sink.wait_for(6))[3:]
        assert [(r.path, r.json["title"].split(" #")[0]) for r in arrived] == [
            ("/ana", f"#{number} acknowledged by cy"), ("/ana", "[SEV1] REASSIGNED"),
            ("/ana", "[SEV1] REASSIGNED")]
        assert "REASSIGNED to team platform by cy (step 1)." in (
            arrived[2].json["message"].splitlines())
        await _later(api, 1)
        assert len(sink.requests) == 6
    finally:
        await api.daemon.stop()


async def test_who_hands_back_what_they_took_leaves_it_to_the_on_call_at_once(
    tmp_path: Path, sink: HttpSink,
) -> None:
    """cy takes ana's incident, then un-acknowledges it: she is giving it up, so the team's
    policy pages ana (the on-call) at once, and cy not at all: not first (5 minutes before
    ana, as the run she took had it), nor when the policy's lead step comes (she is its
    lead; the policy pages her there as it would anyone)."""
    api = await _through_apprise(tmp_path, sink)
    try:
        number = await api.fire()
        await api.settle()
        await sink.wait_for(1)
        await api.call("POST", f"/api/v1/incidents/{number}/reassign", {"user": "cy"},
                       token=CY_TOKEN)
        await api.settle()
        await sink.wait_for(2)  # ana told cy took it
        took = api.clock.now()
        await api.clock.jump(timedelta(minutes=1))
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/unack",
                                      token=CY_TOKEN)
        assert (status, body["state"]) == (200, "triggered")
        await api.settle()
        [page] = (await sink.wait_for(3))[2:]
        assert (page.path, page.json["title"].split(" #")[0]) == ("/ana", "[SEV1] RE-ESCALATED")
        # Taking it was cy's acknowledgement: the page says whose it was and who let it go.
        assert page.json["message"].splitlines()[0] == (
            f"RE-ESCALATED: acknowledged by cy at {_utc(took)}, unacknowledged by cy at"
            f" {_utc(took + timedelta(minutes=1))} (step 1).")
        await _later(api, 4.9)
        assert [r.path for r in sink.requests] == ["/ana", "/ana", "/ana"]
        await _later(api, 0.1)
        assert [r.path for r in await sink.wait_for(4)][3:] == ["/bo"]
        assert [d for _, d in await _events(api, number, "unacknowledged")] == [
            {"handed_back_to": "standard"}]
        fired = [d for _, d in await _events(api, number, "step_fired")]
        assert [(d["number"], d["recipients"], d.get("ahead")) for d in fired[1:]] == [
            (1, ["ana"], None), (2, ["bo"], None)]
    finally:
        await api.daemon.stop()


async def test_who_unacknowledges_is_not_paged_by_the_run_it_begins(
    tmp_path: Path, sink: HttpSink,
) -> None:
    """ana, the on-call, acknowledged, then un-acknowledges it ("not me, not handled"): the
    new run's first step reaches only her, and she is not paged by it; the timeline says so,
    and bo's step comes on its own time, 5 minutes later, not at once."""
    api = await _through_apprise(tmp_path, sink)
    try:
        number = await api.fire()
        await api.settle()
        await sink.wait_for(1)
        acked = api.clock.now()
        await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
        await api.clock.jump(timedelta(minutes=1))
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/unack",
                                      token=ANA_TOKEN)
        assert (status, body["state"]) == (200, "triggered")
        await _later(api, 4.9)
        assert [r.path for r in sink.requests] == ["/ana"]
        await _later(api, 0.1)
        [page] = (await sink.wait_for(2))[1:]
        assert (page.path, page.json["title"].split(" #")[0]) == ("/bo", "[SEV1] RE-ESCALATED")
        assert page.json["message"].splitlines()[0] == (
            f"RE-ESCALATED: acknowledged by ana at {_utc(acked)}, unacknowledged by ana at"
            f" {_utc(acked + timedelta(minutes=1))} (step 2).")
        assert [d for _, d in await _events(api, number, "unacknowledged")] == [{}]
        fired = [d for _, d in await _events(api, number, "step_fired")]
        assert [(d["run"], d["number"], d["recipients"], d.get("not_paged")) for d in fired] == [
            (0, 1, ["ana"], None),
            (1, 1, [], {"user": "ana", "why": "un-acknowledged it"}), (1, 2, ["bo"], None)]
    finally:
        await api.daemon.stop()


async def test_a_snooze_unacknowledged_before_it_ran_out_is_named_so(
    tmp_path: Path, sink: HttpSink,
) -> None:
    """ana snoozes the incident without acknowledging it, then un-acknowledges it a minute
    later (a snooze sets it acknowledged): the new run's page says who snoozed it and who
    ended the snooze, not that the snooze is over (it had 29 minutes to go)."""
    api = await _through_apprise(tmp_path, sink)
    try:
        number = await api.fire()
        await api.settle()
        await sink.wait_for(1)
        snoozed = api.clock.now()
        status, _ = await api.call("POST", f"/api/v1/incidents/{number}/snooze",
                                   {"for": "30m"}, token=ANA_TOKEN)
        assert status == 200
        await api.clock.jump(timedelta(minutes=1))
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/unack",
                                      token=ANA_TOKEN)
        assert (status, body["state"]) == (200, "triggered")
        await _later(api, 5)
        [page] = (await sink.wait_for(2))[1:]
        assert (page.path, page.json["title"].split(" #")[0]) == ("/bo", "[SEV1] RE-ESCALATED")
        assert page.json["message"].splitlines()[0] == (
            f"RE-ESCALATED: snoozed by ana at {_utc(snoozed)} without an acknowledgement,"
            f" unacknowledged by ana at {_utc(snoozed + timedelta(minutes=1))} (step 2).")
    finally:
        await api.daemon.stop()


async def test_who_reassigns_to_a_team_they_are_on_call_for_is_not_paged_by_it(
    tmp_path: Path, sink: HttpSink,
) -> None:
    """ana, the on-call, reassigns her acknowledged incident to platform, whose on-call she
    is too: the new run's first step reaches only her, and she is not paged by her own
    change; the timeline says so, and bo's step comes on its own time, 5 minutes later."""
    api = await _through_apprise(tmp_path, sink)
    try:
        number = await api.fire()
        await api.settle()
        await sink.wait_for(1)
        await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/reassign",
                                      {"team": "platform"}, token=ANA_TOKEN)
        assert (status, body["team"], body["state"]) == (200, "platform", "triggered")
        await _later(api, 4.9)
        assert [r.path for r in sink.requests] == ["/ana"]
        await _later(api, 0.1)
        [page] = (await sink.wait_for(2))[1:]
        assert page.path == "/bo"
        assert page.json["message"].splitlines()[0] == (
            "REASSIGNED to team platform by ana; nobody has acknowledged yet (step 2).")
        fired = [d for _, d in await _events(api, number, "step_fired")]
        assert [(d["number"], d["recipients"], d.get("not_paged")) for d in fired[1:]] == [
            (1, [], {"user": "ana", "why": "reassigned it"}), (2, ["bo"], None)]
    finally:
        await api.daemon.stop()


async def test_who_raises_the_severity_is_not_paged_by_it(
    tmp_path: Path, sink: HttpSink,
) -> None:
    """ana, the on-call, raises her acknowledged SEV2 to SEV1: the new run's first step
    reaches only her, and she knows, so nothing is sent to her; the timeline says she was
    not paged, and bo's step comes on its own time, 5 minutes later."""
    api = await _through_apprise(tmp_path, sink)
    try:
        number = await api.fire(OTHER)
        await api.settle()
        await sink.wait_for(1)
        await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
        status, body = await api.call("PUT", f"/api/v1/incidents/{number}/severity",
                                      {"severity": "SEV1"}, token=ANA_TOKEN)
        assert (status, body["state"]) == (200, "triggered")
        await _later(api, 4.9)
        assert [r.path for r in sink.requests] == ["/ana"]
        await _later(api, 0.1)
        [page] = (await sink.wait_for(2))[1:]
        assert page.path == "/bo"
        assert page.json["message"].splitlines()[0] == (
            "SEVERITY RAISED to SEV1 by ana; nobody has acknowledged yet (step 2).")
        assert "aged before" not in page.json["message"]  # ana was not paged in this run
        fired = [d for _, d in await _events(api, number, "step_fired")]
        assert [(d["number"], d["recipients"], d.get("not_paged")) for d in fired[1:]] == [
            (1, [], {"user": "ana", "why": "raised the severity"}), (2, ["bo"], None)]
    finally:
        await api.daemon.stop()


async def test_raising_the_severity_restarts_escalation_and_lowering_pages_nobody(
    api: Api,
) -> None:
    number = await api.fire(OTHER)
    await api.settle()
    await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    await api.settle()
    sent = len(api.paged())
    status, body = await api.call("PUT", f"/api/v1/incidents/{number}/severity",
                                  {"severity": "SEV1"}, token=CY_TOKEN)
    assert (status, body["severity"], body["state"]) == (200, "SEV1", "triggered")
    await api.settle()
    assert api.paged()[sent:] == ["ana"]  # the first step of SEV1, at once
    page = api.notifier.sent[-1][1]
    assert page.title.startswith(f"[SEV1] SEVERITY RAISED #{number} payments:")
    assert "SEVERITY RAISED to SEV1 by cy (step 1)." in page.body.splitlines()
    assert "acknowledged earlier" not in page.body
    await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    await api.settle()
    sent = len(api.paged())
    status, body = await api.call("PUT", f"/api/v1/incidents/{number}/severity",
                                  {"severity": "SEV3"}, token=ANA_TOKEN)
    assert (status, body["severity"], body["state"]) == (200, "SEV3", "acknowledged")
    await _later(api, 30)
    assert api.paged()[sent:] == []
    status, body = await api.call("PUT", f"/api/v1/incidents/{number}/severity",
                                  {"severity": "SEV3"}, token=ANA_TOKEN)
    assert status == 200  # the severity it has: nothing changes
    assert [d for _, d in await _events(api, number, "severity_changed")] == [
        {"from": "SEV2", "to": "SEV1", "raised": True},
        {"from": "SEV1", "to": "SEV3", "raised": False},
    ]


ROOMS = """channels:
  - {name: status-room, urls: [{url: "json://127.0.0.1:9/status-room"}]}
  - {name: exec-room, urls: [{url: "json://127.0.0.1:9/exec-room"}]}
severities:
  - {name: SEV1, stakeholders: [status-room, exec-room]}
  - {name: SEV2, stakeholders: [status-room]}
  - {name: SEV3}
"""


@pytest.fixture
async def rooms(tmp_path: Path) -> AsyncIterator[Api]:
    """The daemon of `api`, with stakeholder rooms: status-room for SEV2 and SEV1, exec-room
    for SEV1 only."""
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9", step_delay="5m", extra=ROOMS)
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    clock, notifier = FakeClock(), RecordingNotifier()
    daemon = Daemon(loaded, clock=clock, notifier=notifier)
    await daemon.start()
    yield Api(daemon, notifier, clock)
    await daemon.stop()


def _told(api: Api) -> list[tuple[str, str]]:
    """(room, title) of each message a stakeholder room got."""
    return [(who, m.title) for who, m in zip(api.paged(), (m for _, m in api.notifier.sent),
                                              strict=True) if who.endswith("-room")]


async def test_raising_the_severity_tells_the_new_stakeholders_once(rooms: Api) -> None:
    number = await rooms.fire(OTHER)  # SEV2: status-room hears of it
    await rooms.settle()
    assert [who for who, _ in _told(rooms)] == ["status-room"]
    await rooms.call("PUT", f"/api/v1/incidents/{number}/severity", {"severity": "SEV1"},
                     token=ANA_TOKEN)
    await rooms.settle()
    # Only exec-room is new to it; status-room heard already.
    [(room, title)] = _told(rooms)[1:]
    assert room == "exec-room"
    assert title.startswith(f"[SEV1] Incident #{number} raised to SEV1: payments:")
    assert "Its severity was raised to SEV1 by ana." in rooms.notifier.sent[-1][1].body
    for severity in ("SEV3", "SEV1", "SEV2", "SEV1"):  # down and up again: nobody new
        await rooms.call("PUT", f"/api/v1/incidents/{number}/severity",
                         {"severity": severity}, token=ANA_TOKEN)
        await rooms.settle()
    assert len(_told(rooms)) == 2


async def test_a_drill_never_reaches_the_stakeholder_rooms(rooms: Api) -> None:
    status, started = await rooms.call("POST", "/api/v1/drills",
                                       {"team": "payments", "severity": "SEV2"})
    assert status == 201, started
    number = started["incident"]
    await rooms.settle()
    assert rooms.paged() == ["ana"]  # the team's real path, and no room
    await rooms.call("PUT", f"/api/v1/incidents/{number}/severity", {"severity": "SEV1"})
    await rooms.settle()
    await rooms.call("POST", f"/api/v1/incidents/{number}/resolve")
    await rooms.settle()
    assert _told(rooms) == []
    assert set(rooms.paged()) == {"ana"}


CHANGES = [
    ("POST", "/api/v1/incidents/{id}/reassign", {"team": "platform"}),
    ("POST", "/api/v1/incidents/{id}/responders", {"user": "bo"}),
    ("PUT", "/api/v1/incidents/{id}/severity", {"severity": "SEV1"}),
]
ERRORS = [
    *[(f"{p.rsplit('/', 1)[1]}: unknown incident", m, p.replace("{id}", "999"), b, API_TOKEN,
       404, "id") for m, p, b in CHANGES],
    *[(f"{p.rsplit('/', 1)[1]}: read token", m, p, b, BO_TOKEN, 403, "Authorization")
      for m, p, b in CHANGES],
    *[(f"{p.rsplit('/', 1)[1]}: body a list", m, p, [b], API_TOKEN, 400, "body")
      for m, p, b in CHANGES],
    *[(f"{p.rsplit('/', 1)[1]}: unknown field", m, p, {**b, "why": 1}, API_TOKEN, 400, "why")
      for m, p, b in CHANGES],
    ("reassign: both", "POST", "/api/v1/incidents/{id}/reassign",
     {"team": "platform", "user": "bo"}, API_TOKEN, 400, "team"),
    ("reassign: neither", "POST", "/api/v1/incidents/{id}/reassign", {}, API_TOKEN, 400,
     "team"),
    ("reassign: unknown team", "POST", "/api/v1/incidents/{id}/reassign", {"team": "zed"},
     API_TOKEN, 400, "team"),
    ("reassign: unknown user", "POST", "/api/v1/incidents/{id}/reassign", {"user": "zed"},
     API_TOKEN, 400, "user"),
    ("responder: unknown user", "POST", "/api/v1/incidents/{id}/responders", {"user": "zed"},
     API_TOKEN, 400, "user"),
    ("responder: user a number", "POST", "/api/v1/incidents/{id}/responders", {"user": 3},
     API_TOKEN, 400, "user"),
    ("severity: unknown", "PUT", "/api/v1/incidents/{id}/severity", {"severity": "SEV9"},
     API_TOKEN, 400, "severity"),
    ("severity: missing", "PUT", "/api/v1/incidents/{id}/severity", {}, API_TOKEN, 400,
     "severity"),
    ("severity: not JSON", "PUT", "/api/v1/incidents/{id}/severity", b"SEV1", API_TOKEN, 400,
     "body"),
]


@pytest.mark.parametrize(("method", "path", "body", "token", "status", "field"),
                         [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
async def test_errors_name_the_field(
    api: Api, method: str, path: str, body: Any, token: str, status: int, field: str
) -> None:
    number = await api.fire()
    raw = body if isinstance(body, bytes) else None
    got, answer = await api.call(method, path.format(id=number), None if raw else body,
                                 token=token, raw=raw)
    assert (got, answer["field"]) == (status, field), answer
    _, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    assert (incident["team"], incident["severity"]) == ("payments", "SEV1")
    kinds = {e["kind"] for e in incident["timeline"]}
    assert not kinds & {"reassigned", "responder_added", "severity_changed"}


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
async def test_a_resolved_incident_is_a_clear_409(
    api: Api, method: str, path: str, body: Any
) -> None:
    number = await api.fire()
    await api.call("POST", f"/api/v1/incidents/{number}/resolve", token=ANA_TOKEN)
    status, answer = await api.call(method, path.format(id=number), body)
    assert (status, answer["field"]) == (409, "state")
    assert f"incident #{number} is already resolved (by ana)" in answer["error"]


async def test_the_cli_reassigns_pages_in_and_changes_severity(api: Api) -> None:
    number = await api.fire(OTHER)
    flags = ("--url", api.url, "--token", ANA_TOKEN)
    code, out = await run_cli("severity", str(number), "SEV1", *flags)
    assert (code, out.strip()) == (0, f"#{number} triggered SEV1 payments")
    code, out = await run_cli("responder", str(number), "bo", *flags)
    assert (code, out.strip()) == (0, f"#{number} triggered SEV1 payments")
    code, out = await run_cli("reassign", str(number), "--team", "platform", *flags)
    assert (code, out.strip()) == (0, f"#{number} triggered SEV1 platform")
    code, out = await run_cli("reassign", str(number), "--user", "zed", *flags)
    assert code == 1
    assert "HTTP 400: user: unknown user 'zed'" in out


NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
STAKEHOLDERS = {"SEV1": ("status", "exec"), "SEV2": ("status",), "SEV3": ()}


def _changed(old: str, new: str, raised: bool) -> TimelineEvent:
    return TimelineEvent(NOW, EventKind.SEVERITY_CHANGED, "ana",
                         {"from": old, "to": new, "raised": raised})


@pytest.mark.parametrize(
    ("severity", "events", "told"),
    [
        pytest.param("SEV2", [], {"status"}, id="opened-sev2"),
        pytest.param("SEV3", [], set(), id="opened-sev3"),
        pytest.param("SEV3", [_changed("SEV2", "SEV3", False)], {"status"},
                     id="opened-sev2-lowered"),
        pytest.param("SEV3", [_changed("SEV3", "SEV1", True), _changed("SEV1", "SEV3", False)],
                     {"status", "exec"}, id="raised-to-sev1-and-back"),
    ],
)
def test_the_stakeholders_an_incident_told(
    severity: str, events: list[TimelineEvent], told: set[str]
) -> None:
    assert assignment.stakeholders_told(STAKEHOLDERS, severity, events) == told


def _step(run: int, step: int, *names: str) -> TimelineEvent:
    return TimelineEvent(NOW, EventKind.STEP_FIRED, detail={
        "step": step, "number": step + 1, "cycle": 0, "run": run, "recipients": list(names)})


def test_whom_the_run_a_reassignment_began_paged_at_once() -> None:
    """Only the steps after the reassignment (an earlier run's step at the same instant is
    another story), less the pages a maintenance window held."""
    events = [
        _step(0, 0, "ana"),
        TimelineEvent(NOW, EventKind.REASSIGNED, "cy", {"team": "platform"}),
        _step(1, 0, "bo", "dee"), _step(1, 1, "erin"),
        TimelineEvent(NOW, EventKind.PAGE_SUPPRESSED, "maintenance",
                      {"recipient": "dee", "step": 0, "window": "#1"}),
    ]
    assert assignment.paged_by_run(events) == {"bo", "erin"}
    assert assignment.paged_by_run(events[:2]) == set()


async def test_a_later_run_that_pages_the_reassigned_person_first_numbers_no_step(
    api: Api,
) -> None:
    """A raised severity keeps the run's policy, cy ahead of it: her page of the new run is
    no step of the policy either (the reports call it `reassigned`; the renderer read the
    run's `ahead` for a reassignment's first page only, and said "(step 1)"); the policy's
    first step behind her is still step 1."""
    number = await api.fire(OTHER)
    await api.settle()
    await api.call("POST", f"/api/v1/incidents/{number}/reassign", {"user": "cy"},
                   token=ANA_TOKEN)
    await api.settle()
    status, _ = await api.call("PUT", f"/api/v1/incidents/{number}/severity",
                               {"severity": "SEV1"}, token=API_TOKEN)  # as "e2e"
    assert status == 200
    await api.settle()
    assert api.paged()[-1] == "cy"
    assert "SEVERITY RAISED to SEV1 by e2e." in api.notifier.sent[-1][1].body.splitlines()
    await _later(api, 5)
    assert api.paged()[-1] == "ana"
    assert ("SEVERITY RAISED to SEV1 by e2e; nobody has acknowledged yet (step 1)."
            in api.notifier.sent[-1][1].body.splitlines())
