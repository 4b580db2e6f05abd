"""A drill's report built from its timeline (incidents/drills.report, pure): the timeline of a
drill whose steps could reach nobody, as escalation and the dispatcher write it; and a drill
in-process on a fake clock whose pages go through real Apprise to local sinks, one of which
fails every page."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from receiver.app.daemon import Daemon
from receiver.cli.learning import drill_lines
from receiver.config import build as config_module
from receiver.core.model import DRILL_KEY_PREFIX, EventKind, TimelineEvent
from receiver.escalation.engine import delivery_failed
from receiver.escalation.plan import PageFate
from receiver.incidents import drills
from receiver.incidents.drills import Unreached
from receiver.testing import FakeClock
from tests.harness import CY_TOKEN, write_config
from tests.sinks import HttpSink, SinkMode
from tests.test_api import Api
from tests.test_escalation import MIN, T0, Sim


def _delivery(minute: float, name: str, step: int, ok: bool, **more: Any) -> TimelineEvent:
    """A page's fate as the dispatcher writes it (delivery/events.py)."""
    kind = EventKind.NOTIFICATION_SENT if ok else EventKind.NOTIFICATION_FAILED
    return TimelineEvent(T0 + minute * MIN, kind, "ackd", {
        "recipient": name, "recipient_kind": "user", "reason": "triggered" if step == 0
        else "escalated", "step": step, "cycle": 0, "url": f"json://pager/{name}",
        "scheme": "json", "run": 0, "attempt": 1, **more})


def test_a_step_whose_every_page_failed_is_no_row_of_whom_the_drill_reached() -> None:
    """ana's page failed a minute in: escalation writes its account of the step (every page
    to ana failed: escalating now, `unreachable`, no recipient) and pages bo at once, who
    takes it. The report's rows are ana's failed page and bo's page: the account is no
    message to anyone, and it was a row with an empty recipient and channel "unknown"."""
    sim = Sim.open()
    sim.fire_next()
    failed = delivery_failed(sim.state, sim.incident, 0, 0, 0, [("ana", PageFate.FAILED)],
                             T0 + MIN)
    assert failed.events[0].detail["unreachable"] == ["ana"]  # the account this is about
    sim.apply(failed, T0 + MIN)
    sim.run(until=T0 + MIN)  # bo's step, brought to now
    escalation = [TimelineEvent(T0 + minute * MIN, kind, "ackd" if kind
                                is EventKind.NOTIFICATION_FAILED else "", detail)
                  for minute, kind, detail in sim.events]
    pages = [_delivery(1, "ana", 0, False, error="HTTP 500"), _delivery(1, "bo", 1, True)]
    ack = TimelineEvent(T0 + 2 * MIN, EventKind.ACKNOWLEDGED, "bo", {})
    timeline = sorted([*escalation, *pages, ack], key=lambda e: e.at)
    drill = replace(sim.incident, group_key=f"{DRILL_KEY_PREFIX}payments:1")

    report = drills.report(drill, timeline)

    assert [(r.recipient, r.channel, r.step, r.ok, r.error) for r in report.reached] == [
        ("ana", "json", "1", False, "HTTP 500"), ("bo", "json", "2", True, "")]
    assert [(after, name, paged) for after, name, paged in report.steps] == [
        (timedelta(0), "1", ("ana",)), (MIN, "2", ("bo",))]
    assert (report.acknowledged_by, report.answered) == ("bo", True)
    # Its line of its own: the step, and what the log says of it.
    assert report.unreached == (Unreached(
        MIN, "1", "every page to ana failed, nobody it paged can be reached: escalating now",
        ("ana",)),)


def _timeline(sim: Sim) -> list[TimelineEvent]:
    return [TimelineEvent(T0 + minute * MIN, kind, "ackd", detail)
            for minute, kind, detail in sim.events]


def test_a_step_that_paged_nobody_has_a_line_of_its_own_and_one_that_spared_its_unacker_none(
) -> None:
    """Nobody is on call at secondary: step 2 fires five minutes in and pages nobody, and dee
    (step 3) is paged at once. Its line names the step and its dead end, as its ERROR log
    line does. ana un-acknowledging it later is spared by her run's first step, which then
    pages nobody else: she knows, so that step reached someone and has no such line."""
    sim = Sim.open(on_call_table={("payments", "primary"): "ana"})
    sim.run(until=T0 + 5 * MIN)
    drill = replace(sim.incident, group_key=f"{DRILL_KEY_PREFIX}payments:1")
    sim.act("ack", 6)
    sim.act("unack", 7)
    sim.run(until=T0 + 7 * MIN)
    assert [e.detail.get("not_paged") for e in _timeline(sim)
            if e.kind is EventKind.STEP_FIRED][-1] == {"user": "ana", "why": "un-acknowledged it"}

    report = drills.report(drill, _timeline(sim))

    assert [(after, name, paged) for after, name, paged in report.steps] == [
        (timedelta(0), "1", ("ana",)), (5 * MIN, "2", ()), (5 * MIN, "3", ("dee",)),
        (7 * MIN, "1", ())]
    assert report.unreached == (Unreached(
        5 * MIN, "2", "paged nobody: schedule payments layer secondary: nobody on call", ()),)
    assert drills.to_json(report)["unreached"] == [{
        "after_seconds": 300.0, "step": "2", "failed": [],
        "why": "paged nobody: schedule payments layer secondary: nobody on call"}]


async def test_a_drill_reports_each_step_that_reached_nobody_on_its_own_line(
    tmp_path: Path, sink: HttpSink,
) -> None:
    """A drill of payments, through ackd's own Apprise: ana's pages all fail (her endpoint
    answers 500), so step 1 reached nobody and escalation goes on at once; nobody is on
    call at secondary, so step 2 pages nobody; cy, the lead, is reached at step 3 and
    acknowledges. The report (API and CLI) gives each of the two steps its line, beside
    ana's failed pages' rows."""
    async with HttpSink(SinkMode.ERROR) as failing:
        path = write_config(tmp_path / "ackd.yaml", f"127.0.0.1:{sink.port}", step_delay="5m")
        text = path.read_text().replace(f"json://127.0.0.1:{sink.port}/ana",
                                        failing.url("json", "/ana"))
        path.write_text(text.replace(
            "{users: [bo], shift: 1w, start: 2020-01-06T09:00:00}",
            "{users: [bo], shift: 1w, start: 2099-01-05T09:00:00}"))
        loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
        clock = FakeClock()
        daemon = Daemon(loaded, clock=clock)  # no notifier given: the real Apprise adapter
        await daemon.start()
        api = Api(daemon, None, clock)  # type: ignore[arg-type]
        try:
            status, started = await api.call("POST", "/api/v1/drills", {"team": "payments"},
                                             token=CY_TOKEN)
            assert status == 201, started
            number = started["incident"]
            await api.settle()
            await failing.wait_for(1)
            await clock.jump(timedelta(seconds=1))  # past the retry's backoff
            await api.settle()
            [page] = await sink.wait_for(1)
            assert page.path == "/cy"
            assert len(failing.requests) == 2  # both attempts
            status, _ = await api.call("POST", f"/api/v1/incidents/{number}/ack",
                                       token=CY_TOKEN)
            assert status == 200
            status, report = await api.call("GET", f"/api/v1/drills/{number}")
            assert status == 200, report
        finally:
            await daemon.stop()
    assert [(s["step"], s["paged"]) for s in report["steps"]] == [
        ("1", ["ana"]), ("2", []), ("3", ["cy"])]
    failed_at = report["unreached"][0]["after_seconds"]
    assert report["unreached"] == [
        {"after_seconds": failed_at, "step": "1", "failed": ["ana"],
         "why": "every page to ana failed, nobody it paged can be reached: escalating now"},
        {"after_seconds": failed_at, "step": "2", "failed": [],
         "why": "paged nobody: schedule payments layer secondary: nobody on call"}]
    assert [(r["step"], r["recipient"], r["delivered"]) for r in report["reached"]] == [
        ("1", "ana", False), ("1", "ana", False), ("3", "cy", True)]  # each attempt a row
    lines = drill_lines(report)
    assert lines[1:6] == [
        "  +0.0s step 1 paged ana",
        f"  +{failed_at:.1f}s step 1 REACHED NOBODY: every page to ana failed, nobody it paged"
        " can be reached: escalating now",
        f"  +{failed_at:.1f}s step 2 paged nobody",
        f"  +{failed_at:.1f}s step 2 REACHED NOBODY: paged nobody: schedule payments layer"
        " secondary: nobody on call",
        f"  +{failed_at:.1f}s step 3 paged cy"]
