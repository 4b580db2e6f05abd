"""Low-urgency incidents wait for their team's working hours: a new incident, and every run
that starts escalation over (a reack, a snooze's end, an unack, a maintenance window's end, a
reassignment, a raised severity that is still low). Through the daemon, on the fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import ANA_TOKEN, write_config
from tests.test_api import LABELS, Api

HOURS = '{timezone: UTC, days: mon-fri, start: "09:00", end: "18:00"}'
LOW = {**LABELS, "severity": "warning"}  # SEV3: low urgency
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
IN_HOURS = MONDAY.replace(hour=15)
AFTER_HOURS = MONDAY.replace(hour=20, minute=30)
TUESDAY_NINE = MONDAY.replace(day=6, hour=9)
REACK = timedelta(hours=5)
LEAD = timedelta(hours=4)  # from the incident's opening (in hours) to the new run


def hours_config(directory: Path) -> Path:
    path = write_config(directory / "ackd.yaml", "127.0.0.1:9", step_delay="5m")
    text = path.read_text()
    for team in ("payments", "platform"):
        text = text.replace(f"{{name: {team}, schedule: payments, lead: cy}}",
                            f"{{name: {team}, schedule: payments, lead: cy, "
                            f"working_hours: {HOURS}}}")
    text = text.replace("  - name: standard\n", "  - name: standard\n    reack_after: 5h\n")
    path.write_text(text)
    return path


Start = Callable[[datetime], Awaitable[Api]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    daemons: list[Daemon] = []

    async def started(at: datetime) -> Api:
        loaded = config_module.load(hours_config(tmp_path))
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


async def act(api: Api, number: int, method: str, path: str, body: Any = None) -> None:
    status, answer = await api.call(method, f"/api/v1/incidents/{number}{path}", body,
                                    token=ANA_TOKEN)
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
        await act(api, number, *done)
    else:
        await api.settle()
        paged = len(api.paged())
        await api.clock.jump(REACK if path == "reack" else LEAD)
    await api.settle()
    return paged


PATHS = ["reack", "snooze_end", "unack", "maintenance_end", "reassign_team", "reassign_user",
         "severity_raised"]


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
    assert api.paged()[paged:] == []  # nobody woken for a low-urgency incident
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert body["state"] == "triggered"
    deferred = [e for e in body["timeline"] if e["kind"] == "escalation_deferred"]
    assert [e["detail"] for e in deferred] == [
        {"until": TUESDAY_NINE.isoformat(), "severity": "SEV3"}]
    await api.clock.jump(TUESDAY_NINE - api.clock.now())
    first = "cy" if path == "reassign_user" else "ana"
    assert (await api.paged_once(paged + 1))[paged:] == [first]


@pytest.mark.parametrize("path", PATHS)
async def test_a_new_run_in_hours_pages_at_once(start: Start, path: str) -> None:
    api = await start(MONDAY.replace(hour=8))
    number = await fire_before(api, path, IN_HOURS)
    paged = await until_run(api, number, path)
    assert api.clock.now() == IN_HOURS
    first = "cy" if path == "reassign_user" else "ana"
    assert (await api.paged_once(paged + 1))[paged:] == [first]
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert [e for e in body["timeline"] if e["kind"] == "escalation_deferred"] == []
