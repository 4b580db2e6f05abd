"""Incidents that Alertmanager stops talking about (stale_after), on a fake clock through the
real store, timer loop and dispatcher: hours pass in milliseconds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import Alert, AlertStatus
from receiver.escalation.staleness import Reports, StaleAction, StaleRule, check
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import TOKEN, write_config
from tests.test_api import LABELS, Api

HOUR = timedelta(hours=1)


def stale_config(directory: Path, action: str) -> Path:
    path = write_config(directory / "ackd.yaml", "127.0.0.1:9", step_delay="5m")
    text = path.read_text().replace(
        "route:\n  team: platform\n",
        f"route:\n  stale_after: 3h\n  stale_action: {action}\n  team: platform\n",
    )
    path.write_text(text)
    return path


Start = Callable[[str], Awaitable[Api]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    daemons: list[Daemon] = []

    async def started(action: str) -> Api:
        loaded = config_module.load(stale_config(tmp_path, action))
        loaded = replace(loaded, listen_port=0, data_dir=tmp_path / "data")
        clock, notifier = FakeClock(), RecordingNotifier()
        daemon = Daemon(loaded, clock=clock, notifier=notifier)
        await daemon.start()
        daemons.append(daemon)
        return Api(daemon, notifier, clock)

    yield started
    for daemon in daemons:
        await daemon.stop()


def the_webhook(api: Api) -> bytes:
    """One body, posted again as Alertmanager resends it: the same bytes every time."""
    starts = api.clock.now() - timedelta(seconds=30)
    alert = Alert(fingerprint_of(LABELS), AlertStatus.FIRING, LABELS, {}, starts, None)
    return json.dumps(build_webhook([alert])).encode()


async def post(api: Api, body: bytes) -> int:
    status, answer = await api.call("POST", "/api/v1/alerts", raw=body, token=TOKEN)
    assert status == 200, answer
    number: int = answer["incidents"][0]
    return number


async def incident(api: Api, number: int) -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert status == 200
    return dict(body)


def stale_events(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in found["timeline"] if e["kind"] == "stale"]


def stale_messages(api: Api) -> list[tuple[str, str]]:
    return [(url.rsplit("/", 1)[1], m.title) for url, m in api.notifier.sent
            if "not reported for" in m.title]


async def metric(api: Api, name: str) -> float:
    status, text = await api.call("GET", "/metrics")
    assert status == 200
    return sum(float(line.rsplit(" ", 1)[1]) for line in str(text).splitlines()
               if line.startswith(name))


async def test_reports_reset_the_wait_and_silence_flags_it_once(start: Start) -> None:
    api = await start("notify")
    body = the_webhook(api)
    number = await post(api, body)
    await api.settle()
    # Alertmanager resends every hour (the resend shortcut: no transaction).
    for _ in range(2):
        await api.clock.jump(HOUR)
        assert await post(api, body) == number
    await api.clock.jump(HOUR + timedelta(seconds=1))  # 3h after the incident opened
    await api.settle()
    assert stale_events(await incident(api, number)) == []  # reported 1h ago: not stale
    assert stale_messages(api) == []

    await api.clock.jump(2 * HOUR)  # 3h after the last report
    await api.settle()
    found = await incident(api, number)
    [event] = stale_events(found)
    assert event["detail"]["after"] == 3 * 3600
    assert event["detail"]["action"] == "notify"
    assert found["state"] == "triggered"  # told, not resolved
    # Whoever holds it, everyone the escalation paged, hears it once.
    assert sorted(stale_messages(api)) == [
        (who, f"#{number} not reported for 3h: still firing?") for who in ("ana", "bo", "cy")
    ]
    assert await metric(api, 'ackd_incidents_stale_total{action="notify"') == 1
    await api.clock.jump(10 * HOUR)
    await api.settle()
    assert len(stale_messages(api)) == 3  # one message, not one per stale_after

    # Alertmanager reports the alerts again: the wait starts over, and silence flags it again.
    assert await post(api, body) == number
    await api.settle()
    await api.clock.jump(3 * HOUR - timedelta(seconds=1))
    await api.settle()
    assert len(stale_events(await incident(api, number))) == 1
    await api.clock.jump(timedelta(seconds=2))
    await api.settle()
    assert len(stale_events(await incident(api, number))) == 2


async def test_stale_action_resolve_resolves_it_as_stale(start: Start) -> None:
    api = await start("resolve")
    body = the_webhook(api)
    number = await post(api, body)
    await api.settle()
    status, acked = await api.call("POST", f"/api/v1/incidents/{number}/ack")
    assert (status, acked["state"]) == (200, "acknowledged")
    await api.clock.jump(3 * HOUR)
    await api.settle()
    found = await incident(api, number)
    assert (found["state"], found["resolved_by"]) == ("resolved", "stale")
    kinds = [e["kind"] for e in found["timeline"]]
    assert kinds.index("stale") < kinds.index("resolved")
    # The acknowledger is the API token "e2e", not a person: the people paged hear it.
    assert stale_messages(api) == [("ana", f"#{number} not reported for 3h: resolved as stale")]
    assert await metric(api, 'ackd_incidents_resolved_stale_total{') == 1
    assert await metric(api, 'ackd_incidents_stale_total{action="resolve"') == 1
    assert await metric(api, "ackd_incidents_resolved_total{") == 1
    # Counted apart: neither Alertmanager nor a person resolved it.
    assert await metric(api, "ackd_incidents_resolved_unacknowledged_total{") == 0

    # Nobody judged it over: Alertmanager reporting the alerts firing again is news, and pages.
    paged = len(api.paged())
    again = await post(api, body)
    await api.settle()
    assert again != number
    assert (await incident(api, again))["previous_id"] == number
    assert api.paged()[paged:] == ["ana"]


async def test_whoever_acknowledged_through_the_link_alone_is_asked(start: Start) -> None:
    """The stale notice goes to whoever holds the incident: bo, who pressed the link in his
    page, not everyone paged (an earlier release recorded "bo (link)", a name nobody has)."""
    api = await start("notify")
    number = await post(api, the_webhook(api))
    await api.settle()
    await api.clock.jump(timedelta(minutes=5))  # step 2: bo
    await api.settle()
    assert api.paged() == ["ana", "bo"]
    assert await api.press_link(number, "ack", "bo") == 200
    await api.clock.jump(3 * HOUR)
    await api.settle()
    assert stale_messages(api) == [("bo", f"#{number} not reported for 3h: still firing?")]


async def test_the_stale_deadline_survives_a_restart(tmp_path: Path, start: Start) -> None:
    api = await start("notify")
    number = await post(api, the_webhook(api))
    await api.settle()
    now = api.clock.now()
    await api.daemon.stop()
    # ackd is down for an hour; nothing reports the alerts after it comes back.
    clock = FakeClock(now + HOUR)
    restarted = Daemon(api.daemon.config, clock=clock, notifier=RecordingNotifier())
    await restarted.start()
    try:
        again = Api(restarted, restarted.notifier, clock)  # type: ignore[arg-type]
        await again.settle()
        # What came before the restart is not known: it waits 3h from the start, not less.
        await clock.jump(3 * HOUR - timedelta(seconds=1))
        await again.settle()
        assert stale_events(await incident(again, number)) == []
        await clock.jump(timedelta(seconds=2))
        await again.settle()
        assert len(stale_events(await incident(again, number))) == 1
    finally:
        await restarted.stop()


CHECKS = [
    # (last report, now, next check, or None: stale)
    ("reported just now", 0, 0, 3 * 3600),
    ("reported 1h ago", -3600, 0, 2 * 3600),
    ("silent exactly stale_after", -3 * 3600, 0, None),
    ("silent longer", -5 * 3600, 0, None),
]


@pytest.mark.parametrize(("last", "now", "again"), [c[1:] for c in CHECKS],
                         ids=[c[0] for c in CHECKS])
def test_check(last: int, now: int, again: int | None) -> None:
    clock = FakeClock()
    base = clock.now()
    rule = StaleRule(3 * HOUR)
    found = check(base + timedelta(seconds=last), rule, base + timedelta(seconds=now))
    assert found == (None if again is None else base + timedelta(seconds=again))


def test_rules_travel_in_their_deadline_key() -> None:
    rule = StaleRule(timedelta(hours=3, microseconds=5), StaleAction.RESOLVE)
    assert StaleRule.from_key(rule.key) == rule
    with pytest.raises(ValueError, match="MICROSECONDS:ACTION"):
        StaleRule.from_key("3h")
    with pytest.raises(ValueError, match="longer than 0s"):
        StaleRule(timedelta(0))


def test_reports_count_from_the_start_when_nothing_came_since() -> None:
    clock = FakeClock()
    reports = Reports(clock.now())
    assert reports.last(1) == clock.now()
    reports.seen(1, clock.now() + HOUR)
    assert reports.last(1) == clock.now() + HOUR
    reports.forget(1)
    assert (reports.last(1), len(reports)) == (clock.now(), 0)
