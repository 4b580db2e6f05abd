"""Low-urgency incidents wait for their team's working hours: a new incident, and every run
that starts escalation over (a reack, a snooze's end, an unack, a maintenance window's end, a
reassignment, a raised severity that is still low). Through the daemon, on the fake clock."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import EventKind, Incident, IncidentState, TimelineEvent
from receiver.incidents.facts import Hold, deferred, first_page, time_to_acknowledge
from receiver.testing import FakeClock, RecordingNotifier
from receiver.web.openapi import DOCUMENT
from tests.harness import ANA_TOKEN, CY_TOKEN, write_config
from tests.sinks import HttpSink
from tests.test_api import LABELS, Api
from tests.test_web_page import Browser

HOURS = '{timezone: UTC, days: mon-fri, start: "09:00", end: "18:00"}'
LOW = {**LABELS, "severity": "warning"}  # SEV3: low urgency
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
IN_HOURS = MONDAY.replace(hour=15)
AFTER_HOURS = MONDAY.replace(hour=20, minute=30)
TUESDAY_NINE = MONDAY.replace(day=6, hour=9)
REACK = timedelta(hours=5)
LEAD = timedelta(hours=4)  # from the incident's opening (in hours) to the new run


def hours_config(directory: Path, repeat: int = 0) -> Path:
    path = write_config(directory / "ackd.yaml", "127.0.0.1:9", step_delay="5m")
    text = path.read_text()
    for team in ("payments", "platform"):
        text = text.replace(f"{{name: {team}, schedule: payments, lead: cy}}",
                            f"{{name: {team}, schedule: payments, lead: cy, "
                            f"working_hours: {HOURS}}}")
    text = text.replace("  - name: standard\n",
                        f"  - name: standard\n    reack_after: 5h\n    repeat: {repeat}\n")
    path.write_text(text)
    return path


Start = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    daemons: list[Daemon] = []

    async def started(at: datetime, repeat: int = 0) -> Api:
        loaded = config_module.load(hours_config(tmp_path, repeat))
        loaded = replace(loaded, listen_port=0, data_dir=tmp_path / "data")
        clock = FakeClock(at)
        daemon = Daemon(loaded, clock=clock, notifier=RecordingNotifier())
        await daemon.start()
        daemons.append(daemon)
        assert isinstance(daemon.notifier, RecordingNotifier)
        return Api(daemon, daemon.notifier, clock)

    yield started
    for daemon in daemons:
        await daemon.stop()


async def act(api: Api, number: int, method: str, path: str, body: Any = None,
              token: str = ANA_TOKEN) -> None:
    status, answer = await api.call(method, f"/api/v1/incidents/{number}{path}", body,
                                    token=token)
    assert status == 200, answer


async def until_run(api: Api, number: int, path: str) -> int:
    """What each path does while the incident is young (in hours), and then at the moment
    its new run begins; how many pages went out before that moment."""
    if path == "maintenance_end":
        status, answer = await api.call("POST", "/api/v1/maintenance",
                                        {"team": "payments", "for": "4h"})
        assert status == 201, answer
    elif path == "snooze_end":
        await act(api, number, "POST", "/snooze", {"for": "4h"})
    else:
        await act(api, number, "POST", "/ack")
    if path in ("severity_raised", "unack", "reassign_team", "reassign_user"):
        if path == "severity_raised":
            await act(api, number, "PUT", "/severity", {"severity": "SEV4"})
        await api.clock.jump(LEAD)
        await api.settle()
        paged = len(api.paged())
        done = {
            "severity_raised": ("PUT", "/severity", {"severity": "SEV3"}),
            "unack": ("POST", "/unack", None),
            "reassign_team": ("POST", "/reassign", {"team": "platform"}),
            "reassign_user": ("POST", "/reassign", {"user": "cy"}),
        }[path]
        # cy raises or un-acknowledges it: the run pages the on-call, ana (whoever raises
        # or un-acknowledges it is not paged by it); ana names cy (cy naming herself takes it).
        await act(api, number, *done, token=ANA_TOKEN if path == "reassign_user" else CY_TOKEN)
    else:
        await api.settle()
        paged = len(api.paged())
        await api.clock.jump(REACK if path == "reack" else LEAD)
    await api.settle()
    return paged


PATHS = ["reack", "snooze_end", "unack", "maintenance_end", "reassign_team", "severity_raised"]


async def fire_before(api: Api, path: str, begins: datetime) -> int:
    opened = begins - (REACK if path == "reack" else LEAD)
    await api.clock.jump(opened - api.clock.now())
    number = await api.fire(LOW)
    await api.settle()
    return number


@pytest.mark.parametrize("path", PATHS)
async def test_a_new_run_after_hours_waits_for_them(start: Start, path: str) -> None:
    api = await start(MONDAY.replace(hour=8))
    number = await fire_before(api, path, AFTER_HOURS)
    paged = await until_run(api, number, path)
    assert api.clock.now() == AFTER_HOURS
    if path == "reassign_team":  # ana, who held it, is told it is not hers now: no page
        assert [m.title for _, m in api.notifier.sent[paged:]] == [
            f"#{number} reassigned to team platform by cy"]
        paged += 1
    assert api.paged()[paged:] == []  # nobody woken for a low-urgency incident
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert body["state"] == "triggered"
    deferred = [e for e in body["timeline"] if e["kind"] == "escalation_deferred"]
    assert [e["detail"] for e in deferred] == [
        {"until": TUESDAY_NINE.isoformat(), "severity": "SEV3"}]
    await api.clock.jump(TUESDAY_NINE - api.clock.now())
    first = "cy" if path == "reassign_user" else "ana"
    assert (await api.paged_once(paged + 1))[paged:] == [first]


async def test_a_person_named_by_a_reassignment_is_paged_at_once_at_any_hour(
    start: Start,
) -> None:
    """Reassigning to cy by name at night means "page cy now", as paging her in does; if she
    does not answer, the team's policy behind her follows."""
    api = await start(MONDAY.replace(hour=8))
    number = await fire_before(api, "reassign_user", AFTER_HOURS)
    paged = await until_run(api, number, "reassign_user")
    assert api.clock.now() == AFTER_HOURS
    assert (await api.paged_once(paged + 1))[paged:] == ["cy"]
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert [e for e in body["timeline"] if e["kind"] == "escalation_deferred"
            and datetime.fromisoformat(e["at"]) >= AFTER_HOURS] == []


async def test_after_hours_the_holders_takeover_note_goes_at_once_as_every_note_and_is_no_page(
    tmp_path: Path, sink: HttpSink,
) -> None:
    """Through ackd's own Apprise: two SEV3 incidents that ana was paged for and acknowledged
    in hours. At 19:00 cy reassigns the first to team platform, whose run waits for working
    hours (nobody paged), and resolves the second. ana is told of both at once, as ackd tells
    every note at any hour for any urgency (informational: only pages wait for the hours):
    the takeover typed `info` as an acknowledgement's note is (it was `warning`, a SEV3
    page's type), the resolution `success`. Platform's page waits for 09:00."""
    path = hours_config(tmp_path)
    path.write_text(path.read_text().replace("127.0.0.1:9", f"127.0.0.1:{sink.port}"))
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    clock = FakeClock(IN_HOURS)
    daemon = Daemon(loaded, clock=clock)  # no notifier given: the real Apprise adapter
    await daemon.start()
    api = Api(daemon, None, clock)  # type: ignore[arg-type]
    try:
        reassigned = await api.fire(LOW)
        resolved = await api.fire({**LOW, "alertname": "Other"})
        await api.settle()
        pages = await sink.wait_for(2)
        assert [(r.path, r.json["type"]) for r in pages] == [("/ana", "warning")] * 2
        for number in (reassigned, resolved):
            await act(api, number, "POST", "/ack")
        # 19:00: after hours, before the acknowledgements' reack (5h) gives them back.
        await api.clock.jump(MONDAY.replace(hour=19) - api.clock.now())
        await act(api, reassigned, "POST", "/reassign", {"team": "platform"}, token=CY_TOKEN)
        await act(api, resolved, "POST", "/resolve", token=CY_TOKEN)
        await api.settle()
        notes = sorted((await sink.wait_for(4))[2:], key=lambda r: r.json["title"])
        assert [(r.path, r.json["title"], r.json["type"]) for r in notes] == [
            ("/ana", f"#{reassigned} reassigned to team platform by cy", "info"),
            ("/ana", f"#{resolved} resolved", "success")]
        await api.clock.jump(TUESDAY_NINE - timedelta(minutes=1) - api.clock.now())
        await api.settle()
        assert len(sink.requests) == 4  # platform's run waits for its hours
        await api.clock.jump(timedelta(minutes=1))
        await api.settle()
        [page] = (await sink.wait_for(5))[4:]
        assert (page.path, page.json["type"]) == ("/ana", "warning")
        assert page.json["title"].startswith(f"[SEV3] REASSIGNED #{reassigned} platform:")
    finally:
        await daemon.stop()


@pytest.mark.parametrize("path", [*PATHS, "reassign_user"])
async def test_a_new_run_in_hours_pages_at_once(start: Start, path: str) -> None:
    api = await start(MONDAY.replace(hour=8))
    number = await fire_before(api, path, IN_HOURS)
    paged = await until_run(api, number, path)
    assert api.clock.now() == IN_HOURS
    first = "cy" if path == "reassign_user" else "ana"
    assert (await api.paged_once(paged + 1))[paged:] == [first]
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert [e for e in body["timeline"] if e["kind"] == "escalation_deferred"] == []


async def test_reminders_due_after_hours_wait_for_them_and_resume_one_at_a_time(
    start: Start,
) -> None:
    """A SEV3 paged 17:40-17:50 (ana, bo, the lead cy): its repeat, due 18:05, is held all
    night (an `escalation_deferred` event says until when) and begins at 09:00 with one
    page, the rest of the cycle its 5 minutes apart."""
    api = await start(MONDAY.replace(hour=17, minute=40), repeat=2)
    number = await api.fire(LOW)
    for paged in (2, 3):  # the next step's delay counts from when the step before fired
        await api.clock.jump(5 * 60)
        await api.paged_once(paged)
    assert api.paged() == ["ana", "bo", "cy"]
    # Settled at 18:05, when the repeat comes due: a jump straight past it let a loaded
    # machine's timer take it at the later time (held at 23:00, failed 1 run in 3).
    await api.clock.jump(MONDAY.replace(hour=18, minute=5) - api.clock.now())
    await api.settle()
    await api.clock.jump(MONDAY.replace(hour=23) - api.clock.now())
    await api.settle()
    assert api.paged() == ["ana", "bo", "cy"]
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    held = [(e["at"], e["detail"]) for e in body["timeline"] if e["kind"] == "escalation_deferred"]
    assert held == [(MONDAY.replace(hour=18, minute=5).isoformat().replace("+00:00", "Z"), {
        "until": TUESDAY_NINE.isoformat(), "severity": "SEV3", "run": 0, "cycle": 1,
        "held": "step", "step": 0, "number": 1})]
    assert escalation(body) == {"exhausted_at": None, "paged": [], "deferred_until": NINE,
                                "held": "step", "held_step": 1, "held_cycle": 1}
    browser = Browser(api)
    try:
        await browser.sign_in()
        _, page = await browser.get(f"/incidents/{number}")
    finally:
        await browser.session.close()
    assert shown(page) == ("waiting for working hours until 2026-01-06 09:00:00 UTC (in 10h):"
                           " step 1 (repeat 1) pages then")
    await api.clock.jump(TUESDAY_NINE - api.clock.now())
    assert await api.paged_once(4) == ["ana", "bo", "cy", "ana"]
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert escalation(body)["deferred_until"] is None
    await api.clock.jump(5 * 60)
    assert await api.paged_once(5) == ["ana", "bo", "cy", "ana", "bo"]


NINE = TUESDAY_NINE.isoformat().replace("+00:00", "Z")
_ESCALATION = Draft202012Validator(
    DOCUMENT["components"]["schemas"]["IncidentDetail"]["allOf"][1]["properties"]["escalation"])


def escalation(body: dict[str, Any]) -> dict[str, Any]:
    """The incident's `escalation`, checked against what the OpenAPI document says of it."""
    _ESCALATION.validate(body["escalation"])
    return body["escalation"]  # type: ignore[no-any-return]


def shown(page: str) -> str | None:
    found = re.search(r'<dd id="deferred"[^>]*>(.*?)</dd>', page, re.S)
    return " ".join(found.group(1).split()) if found else None


async def test_the_api_and_the_page_say_an_incident_waits_for_working_hours(
    start: Start,
) -> None:
    """A SEV3 opened at 20:30 is triggered and pages nobody: `escalation.deferred_until` and
    the incident's page say until when and what waits, until the first page goes at 09:00."""
    api = await start(AFTER_HOURS)
    number = await api.fire(LOW)
    await api.settle()
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert body["state"] == "triggered"
    assert escalation(body) == {"exhausted_at": None, "paged": [], "deferred_until": NINE,
                                "held": "start", "held_step": None, "held_cycle": None}
    browser = Browser(api)
    try:
        await browser.sign_in()
        _, page = await browser.get(f"/incidents/{number}")
        assert shown(page) == ("waiting for working hours until 2026-01-06 09:00:00 UTC (in"
                               " 12h 30m): the first page goes then")
        await api.clock.jump(TUESDAY_NINE - api.clock.now())
        assert await api.paged_once(1) == ["ana"]
        _, body = await api.call("GET", f"/api/v1/incidents/{number}")
        assert escalation(body)["deferred_until"] is None
        _, page = await browser.get(f"/incidents/{number}")
        assert shown(page) is None
    finally:
        await browser.session.close()


# -- MTTA: how long people took once asked ------------------------------------------------------

FRIDAY_SEVEN_PM = datetime(2026, 1, 9, 19, tzinfo=UTC)
MONDAY_NINE = datetime(2026, 1, 12, 9, tzinfo=UTC)


async def mtta(api: Api, severity: str) -> tuple[float, float, dict[str, Any]]:
    """The histogram's count and sum for payments at `severity`, and the report's MTTA."""
    _, metrics = await api.call("GET", "/metrics")
    found = {"count": 0.0, "sum": 0.0}
    for line in metrics.splitlines():
        for part in found:
            if line.startswith(f"ackd_time_to_acknowledge_seconds_{part}{{") and \
                    f'severity="{severity}"' in line and 'team="payments"' in line:
                found[part] = float(line.rsplit(" ", 1)[1])
    status, report = await api.call("GET", "/api/v1/reports?since=30d")
    assert status == 200, report
    [row] = [r["mtta"] for r in report["by_team_severity"] if r["severity"] == severity]
    return found["count"], found["sum"], row


async def test_mtta_of_a_deferred_incident_counts_from_its_first_page(start: Start) -> None:
    api = await start(FRIDAY_SEVEN_PM)
    number = await api.fire(LOW)
    await api.settle()
    assert api.paged() == []  # the weekend passes: nobody asked
    await api.clock.jump(MONDAY_NINE - api.clock.now())
    assert await api.paged_once(1) == ["ana"]
    await api.clock.jump(10)
    await act(api, number, "POST", "/ack")
    count, total, report = await mtta(api, "SEV3")
    assert (count, total) == (1, 10.0)  # not the ~62 h since Friday
    assert report == {"count": 1, "mean": 10.0, "p50": 10.0, "p90": 10.0}
    status, text = await api.call("GET", f"/api/v1/incidents/{number}/postmortem")
    assert status == 200
    assert ("| Time to first page | incident opened 2026-01-09 19:00:00 | first page"
            " 2026-01-12 09:00:00 | 2d 14h 0m |") in text, text
    assert ("| Time to acknowledge | first page 2026-01-12 09:00:00 | first acknowledgement"
            " 2026-01-12 09:00:10 | 10s |") in text, text


async def test_mtta_leaves_out_the_time_a_maintenance_window_held_the_pages(
    start: Start,
) -> None:
    api = await start(MONDAY.replace(hour=10))
    status, answer = await api.call("POST", "/api/v1/maintenance",
                                    {"team": "payments", "for": "1h"})
    assert status == 201, answer
    number = await api.fire()  # SEV1: its pages held, not sent
    await api.clock.jump(30 * 60)
    await api.settle()
    assert api.paged() == []
    await api.clock.jump(30 * 60)  # the window ends: the first step pages ana
    assert await api.paged_once(1) == ["ana"]
    await api.clock.jump(10)
    await act(api, number, "POST", "/ack")
    count, total, report = await mtta(api, "SEV1")
    assert (count, total, report["mean"]) == (1, 10.0, 10.0)


async def test_an_incident_acknowledged_before_anyone_was_paged_is_not_in_mtta(
    start: Start,
) -> None:
    api = await start(FRIDAY_SEVEN_PM)
    number = await api.fire(LOW)  # deferred to Monday; someone takes it from the dashboard
    await api.clock.jump(600)
    await act(api, number, "POST", "/ack")
    await api.settle()
    assert api.paged() == []
    count, total, report = await mtta(api, "SEV3")
    assert (count, total, report["count"]) == (0, 0.0, 0)


def _at(minute: int) -> datetime:
    return MONDAY + timedelta(minutes=minute)


def _fired(minute: int, step: int, *recipients: str) -> TimelineEvent:
    return TimelineEvent(_at(minute), EventKind.STEP_FIRED, "ackd",
                         {"step": step, "recipients": list(recipients)})


HELD = TimelineEvent(_at(1), EventKind.PAGE_SUPPRESSED, "maintenance",
                     {"recipient": "ana", "step": 0, "window": "#1"})
FIRST_PAGES = [
    ("paged-at-once", [_fired(0, 0, "ana")], _at(0)),
    ("deferred-then-paged", [TimelineEvent(_at(0), EventKind.ESCALATION_DEFERRED, "ackd",
                                           {"until": _at(600).isoformat()}),
                             _fired(600, 0, "ana")], _at(600)),
    ("held-by-a-window-then-paged", [_fired(1, 0, "ana"), HELD, _fired(61, 0, "ana")],
     _at(61)),
    ("a-step-that-reached-nobody", [_fired(0, 0), _fired(0, 1, "bo")], _at(0)),
    ("a-channel-the-policy-pages", [_fired(3, 0, "payments-room")], _at(3)),
    ("a-person-paged-in", [TimelineEvent(_at(7), EventKind.RESPONDER_ADDED, "cy",
                                         {"user": "bo"}), _fired(600, 0, "ana")], _at(7)),
    ("someone-joined-by-their-own-hand", [TimelineEvent(_at(7), EventKind.RESPONDER_ADDED,
                                                        "bo", {"user": "bo"}),
                                          _fired(600, 0, "ana")], _at(600)),
    ("nobody-yet", [HELD], None),
]


@pytest.mark.parametrize(("events", "expected"), [c[1:] for c in FIRST_PAGES],
                         ids=[c[0] for c in FIRST_PAGES])
def test_first_page(events: list[TimelineEvent], expected: datetime | None) -> None:
    assert first_page(events) == expected


@pytest.mark.parametrize(
    ("paged", "acknowledged", "expected"),
    [(_at(600), _at(600) + timedelta(seconds=10), timedelta(seconds=10)),
     (_at(600), _at(10), None),  # taken before anyone was asked: not in MTTA
     (None, _at(10), None), (_at(0), None, None)],
)
def test_time_to_acknowledge(
    paged: datetime | None, acknowledged: datetime | None, expected: timedelta | None
) -> None:
    assert time_to_acknowledge(paged, acknowledged) == expected


# -- what a wait for working hours holds, as the API and the page read it ----------------------

def _deferred(minute: int, **detail: Any) -> TimelineEvent:
    return TimelineEvent(_at(minute), EventKind.ESCALATION_DEFERRED, "ackd",
                         {"until": (MONDAY + timedelta(hours=9)).isoformat(), **detail})


AMSTERDAM_NINE = "2026-01-05T09:00:00+01:00"  # a team in another zone: read back in UTC
HOLDS = [
    ("start", [_deferred(0)], Hold(_at(0), MONDAY.replace(hour=9), "start")),
    ("a-step", [_fired(0, 0, "ana"), _deferred(5, held="step", step=1, number=2, cycle=0)],
     Hold(_at(5), MONDAY.replace(hour=9), "step", 2, 0)),
    ("the-end", [_deferred(5, held="end", cycle=2)],
     Hold(_at(5), MONDAY.replace(hour=9), "end", None, 2)),
    ("its-zone", [TimelineEvent(_at(0), EventKind.ESCALATION_DEFERRED, "ackd",
                                {"until": AMSTERDAM_NINE})],
     Hold(_at(0), MONDAY.replace(hour=8), "start")),
    ("fired", [_deferred(0), _fired(540, 0, "ana")], None),
    ("ran-out", [_deferred(0, held="end", cycle=0),
                 TimelineEvent(_at(540), EventKind.ESCALATION_EXHAUSTED, "ackd", {})], None),
    ("raised", [_deferred(0), TimelineEvent(_at(3), EventKind.SEVERITY_CHANGED, "cy",
                                            {"raised": True})], None),
    ("lowered", [_deferred(0), TimelineEvent(_at(3), EventKind.SEVERITY_CHANGED, "cy",
                                             {"raised": False})],
     Hold(_at(0), MONDAY.replace(hour=9), "start")),
    ("a-note", [_deferred(0), TimelineEvent(_at(3), EventKind.NOTE, "cy", {"text": "x"})],
     Hold(_at(0), MONDAY.replace(hour=9), "start")),
    ("never", [_fired(0, 0, "ana")], None),
]


@pytest.mark.parametrize(("events", "expected"), [c[1:] for c in HOLDS],
                         ids=[c[0] for c in HOLDS])
def test_what_a_deferred_escalation_holds(
    events: list[TimelineEvent], expected: Hold | None
) -> None:
    incident = Incident(1, "g", "r", "payments", "SEV3", "standard", {},
                        IncidentState.TRIGGERED, MONDAY, MONDAY)
    assert deferred(incident, events) == expected


def test_an_acknowledged_incident_waits_for_nothing() -> None:
    incident = Incident(1, "g", "r", "payments", "SEV3", "standard", {},
                        IncidentState.ACKNOWLEDGED, MONDAY, MONDAY)
    assert deferred(incident, [_deferred(0)]) is None
