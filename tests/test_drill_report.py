"""A drill's report built from its timeline (incidents/drills.report, pure): the timeline of a
drill whose first step could reach nobody, as escalation and the dispatcher write it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from receiver.core.model import DRILL_KEY_PREFIX, EventKind, TimelineEvent
from receiver.escalation.engine import delivery_failed
from receiver.escalation.plan import PageFate
from receiver.incidents import drills
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
