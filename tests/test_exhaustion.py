"""An escalation that runs out is told: the daemon in-process on a fake clock, its real SQLite
store and timer loop, pages to the recording notifier.

The harness policy pages ana (primary) at once, bo (secondary) 5 minutes later and the lead cy
5 minutes after that, with no repeat: unacknowledged, it runs out `repeat_after` (15 minutes)
after cy's page, at minute 25. Then, once: `escalation_exhausted` on the timeline naming whom
it paged, a WARNING line, ackd_escalations_exhausted_total, `escalation.exhausted_at` in the
incident's JSON, and a note to the severity's stakeholder channels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.escalation.policy import Channel
from tests.test_api import Api, start_api
from tests.test_replicas_state import Start, paged_by_either, settle, until
from tests.test_replicas_state import start as start  # noqa: F401  (replicas, a fixture)
from tests.test_web_page import Browser

MIN = timedelta(minutes=1)
ROOM = "json://127.0.0.1:9/status-room"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The harness daemon, with a status room told of SEV1 incidents."""
    started = await start_api(tmp_path)
    config = started.daemon.config
    started.daemon.coordinator.swap(replace(
        config, channels={**config.channels, "status-room": Channel("status-room", (ROOM,))},
        stakeholders={**config.stakeholders, "SEV1": ("status-room",)}))
    yield started
    await started.daemon.stop()


class Opened:
    """An incident opened at `t0` on the fake clock."""

    def __init__(self, api: Api, number: int, t0: datetime) -> None:
        self.api, self.number, self.t0 = api, number, t0

    async def at_minute(self, minute: float) -> None:
        """The clock moved on to `minute` after the incident opened, what is due done."""
        await self.api.clock.jump(self.t0 + minute * MIN - self.api.clock.now())
        await self.api.settle()

    async def run_out(self) -> None:
        """Each step at its time, then past the end of the last one's wait (minute 25)."""
        for minute in (5, 10, 30):
            await self.at_minute(minute)

    def stamp(self, minute: float) -> str:
        """An instant as the API writes it."""
        return (self.t0 + minute * MIN).isoformat().replace("+00:00", "Z")


async def incident(api: Api, number: int) -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# A high-urgency escalation never waits for working hours.
NOT_DEFERRED = {"deferred_until": None, "held": None, "held_step": None, "held_cycle": None}


def exhausted_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in body["timeline"] if e["kind"] == "escalation_exhausted"]


async def counted(api: Api, team: str = "payments") -> float | None:
    """ackd_escalations_exhausted_total of the team's SEV1 incidents; None without a series."""
    metrics = (await api.call("GET", "/metrics", token=None))[1]
    found = re.search(rf'^ackd_escalations_exhausted_total\{{severity="SEV1",team="{team}"\}}'
                      r" (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else None


def room(api: Api) -> list[str]:
    """The titles of what this daemon sent the status room."""
    return [m.title for url, m in api.notifier.sent if url.endswith("/status-room")]


def people(api: Api) -> list[str]:
    return [name for name in api.paged() if name != "status-room"]


async def opened(api: Api) -> Opened:
    t0 = api.clock.now()
    number = await api.fire()  # critical: SEV1, team payments
    await api.settle()
    return Opened(api, number, t0)


async def test_an_escalation_that_runs_out_is_told_once(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    it = await opened(api)
    number = it.number
    await it.at_minute(10)
    await api.paged_once(4)
    assert people(api) == ["ana", "bo", "cy"]
    await it.at_minute(24.99)
    body = await incident(api, number)
    # cy, the last step, still has the rest of the policy's wait to answer.
    assert exhausted_events(body) == []
    assert body["escalation"] == {"exhausted_at": None, "paged": [], **NOT_DEFERRED}
    # Every team and severity of the config has its series from the start, at 0: one that
    # first appeared at 1 would be no increase to the alert rule's increase().
    assert (await counted(api), await counted(api, "platform")) == (0, 0)
    assert room(api) == ["[SEV1] Incident #1 opened: payments: PaymentApiDown"]

    with caplog.at_level(logging.WARNING, logger="receiver.escalation.responder"):
        await it.at_minute(25)
        await it.at_minute(120)  # and nothing more, however long it stays unanswered
    body = await incident(api, number)
    [event] = exhausted_events(body)
    assert event["at"] == it.stamp(25)
    assert event["detail"] == {"run": 0, "cycle": 0, "steps": 3, "repeats": 0,
                               "why": "every step fired and nobody acknowledged",
                               "paged": ["ana", "bo", "cy"]}
    assert body["state"] == "triggered"
    assert body["escalation"] == {"exhausted_at": event["at"], "paged": ["ana", "bo", "cy"],
                                  **NOT_DEFERRED}
    assert await counted(api) == 1
    [line] = [r.getMessage() for r in caplog.records if "exhausted" in r.getMessage()]
    assert line == (f"incident #{number} (team payments, SEV1): escalation exhausted: every step"
                    " fired and nobody acknowledged (policy standard, 3 step(s), 0 repeat(s));"
                    " paged: ana, bo, cy")
    told = room(api)[1:]
    assert told == [f"[SEV1] Incident #{number} unanswered: escalation ran out: payments:"
                    " PaymentApiDown"]
    [note] = [m.body for url, m in api.notifier.sent
              if url.endswith("/status-room") and "unanswered" in m.title]
    assert note.startswith(f"Nobody has acknowledged incident #{number}: every step of its"
                           " escalation has paged (ana, bo, cy) and nobody answered.")
    assert people(api) == ["ana", "bo", "cy"]  # nobody paged again


async def test_an_acknowledgement_after_exhaustion_acknowledges_and_counts_mtta(
    api: Api,
) -> None:
    it = await opened(api)
    number = it.number
    await it.run_out()
    assert (await incident(api, number))["escalation"]["exhausted_at"] == it.stamp(25)
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack")
    assert (status, body["state"]) == (200, "acknowledged")
    body = await incident(api, number)
    assert body["escalation"] == {"exhausted_at": None, "paged": [], **NOT_DEFERRED}
    metrics = (await api.call("GET", "/metrics", token=None))[1]
    # From ana's first page at minute 0 to the acknowledgement at minute 30.
    assert re.search(r'^ackd_time_to_acknowledge_seconds_sum\{severity="SEV1",'
                     r'team="payments"\} 1800\.0$', metrics, re.M), metrics


async def test_a_reassignment_after_exhaustion_starts_a_run_that_runs_out_on_its_own(
    api: Api,
) -> None:
    it = await opened(api)
    number = it.number
    await it.run_out()
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/reassign",
                                  {"team": "platform"})
    assert status == 200, body
    await api.settle()
    body = await incident(api, number)
    assert body["escalation"]["exhausted_at"] is None  # a new run: paging again
    assert [e["detail"]["run"] for e in exhausted_events(body)] == [0]
    for minute in (35, 40, 30 + 24.99):  # the new run's steps, each at its time
        await it.at_minute(minute)
    assert len(exhausted_events(await incident(api, number))) == 1
    await it.at_minute(30 + 25)
    body = await incident(api, number)
    assert [e["detail"]["run"] for e in exhausted_events(body)] == [0, 1]
    assert body["escalation"]["exhausted_at"] == exhausted_events(body)[-1]["at"]
    # Counted under the team it belongs to now.
    assert (await counted(api), await counted(api, "platform")) == (1, 1)


async def test_the_incident_page_shows_the_escalation_ran_out_until_someone_takes_it(
    api: Api,
) -> None:
    it = await opened(api)
    browser = Browser(api)
    try:
        await browser.sign_in()
        _, page = await browser.get(f"/incidents/{it.number}")
        assert 'id="exhausted"' not in page
        await it.run_out()
        _, page = await browser.get(f"/incidents/{it.number}")
        shown = re.search(r'<dd id="exhausted"[^>]*>(.*?)</dd>', page, re.S)
        assert shown, page
        assert " ".join(shown.group(1).split()) == (
            "ran out 2026-01-05 09:25:00 UTC (5m ago): every step paged (ana, bo, cy) and nobody"
            " acknowledged")
        status, _ = await api.call("POST", f"/api/v1/incidents/{it.number}/ack")
        assert status == 200
        _, page = await browser.get(f"/incidents/{it.number}")
        assert 'id="exhausted"' not in page
    finally:
        await browser.session.close()


async def test_a_maintenance_window_holding_the_last_step_holds_the_end_too(api: Api) -> None:
    """cy's page at minute 10 is held by a window (5 to 65): nobody was asked, so nothing
    runs out at 25. When the window ends the steps start again from the first, and that run
    runs out 15 minutes after its own last page."""
    it = await opened(api)
    await it.at_minute(5)
    status, window = await api.call("POST", "/api/v1/maintenance",
                                    {"team": "payments", "for": "1h", "comment": "failover"})
    assert status == 201, window
    for minute in (10, 25, 40, 64):
        await it.at_minute(minute)
    body = await incident(api, it.number)
    assert [e["detail"]["recipient"] for e in body["timeline"]
            if e["kind"] == "page_suppressed"] == ["cy"]
    assert exhausted_events(body) == []
    for minute in (65, 70, 75, 89.99):
        await it.at_minute(minute)
    assert exhausted_events(await incident(api, it.number)) == []
    await it.at_minute(90)
    body = await incident(api, it.number)
    assert [(e["at"], e["detail"]["run"]) for e in exhausted_events(body)] == [
        (it.stamp(90), 0)]
    assert people(api) == ["ana", "bo", "ana", "bo", "cy"]


# -- on PostgreSQL, three replicas ------------------------------------------------------------

STAKEHOLDERS = """
channels:
  - {name: status-room, urls: [{url: "json://127.0.0.1:9/status-room"}]}
severities:
  - {name: SEV1, stakeholders: [status-room]}
  - {name: SEV2}
  - {name: SEV3, urgency: low}
"""


async def test_three_replicas_run_out_once(start: Start) -> None:
    """Every replica's timer holds the end of the last step's wait; the one that takes it
    tells: one event, one count, one note to the room, however many replicas."""
    replicas = await start(3, extra=STAKEHOLDERS)
    first = replicas[0]
    t0 = first.clock.now()
    number = await first.fire()
    await settle(replicas)

    async def to_minute(minute: int) -> None:
        await first.clock.jump(t0 + minute * MIN - first.clock.now())
        await settle(replicas)

    async def told() -> bool:  # three timers on a loaded machine: give them real time
        await settle(replicas)
        notes = [t for api in replicas for t in room(api) if "unanswered" in t]
        return bool(notes and exhausted_events(await incident(first, number)))

    for minute in (5, 10, 25):  # bo, the lead cy, the end of cy's wait
        await to_minute(minute)
    # Virtual time stays at the end while the replicas' timers, whose database round trips
    # take real time, take it: jumped past it at once, a loaded machine saw it taken minutes
    # of virtual time late.
    assert await until(told, 10), "nobody told the room that the escalation ran out"
    for minute in (30, 90):  # past the end, long past it: nothing more
        await to_minute(minute)
    await paged_by_either(replicas, 5)  # ana, bo, cy; the room: opened, ran out
    body = await incident(first, number)
    [event] = exhausted_events(body)
    # 15 minutes after cy's step fired, never before; on whichever replica's timer took it,
    # which on one fake clock shared by three timers (each replica's first try, the others'
    # GRACE later, the late watch) may be some virtual seconds past its due time.
    last = parse([e["at"] for e in body["timeline"] if e["kind"] == "step_fired"][-1])
    assert last + 15 * MIN <= parse(event["at"]) < last + 16 * MIN
    assert event["detail"]["paged"] == ["ana", "bo", "cy"]
    counts = [await counted(api) for api in replicas]
    assert sorted(counts) == [0, 0, 1], counts
    room_notes = [title for api in replicas for title in room(api)
                  if "unanswered" in title]
    assert len(room_notes) == 1, room_notes
    for api in replicas:  # each replica's API reads it from the one store
        assert (await incident(api, number))["escalation"]["exhausted_at"] == event["at"]
