"""The status cadence: an open incident owes a status update each `status_every` of its
severity; when none came, whoever is accountable (the commander, else whoever acknowledged)
is reminded through their contacts and the timeline says so, until someone speaks. On the
fake clock in-process, and end to end with the real Alertmanager and a local Apprise sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.errors import ConfigError
from receiver.core.model import Incident, IncidentState, Severity
from receiver.incidents import cadence
from receiver.incidents.roles import Role, RoleHolder
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import (
    ANA_TOKEN,
    CY_TOKEN,
    Alertmanager,
    ackd_for,
    alertmanager_binary,
    am_alert,
    wait_until,
    write_config,
)
from tests.sinks import HttpSink
from tests.test_api import Api

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
SEV1 = Severity("SEV1", 0, status_every=timedelta(minutes=15))
SEVERITIES = """severities:
  - {name: SEV1, status_every: 15m}
  - {name: SEV2, status_every: 30m}
  - {name: SEV3}
"""


def _incident(state: IncidentState = IncidentState.ACKNOWLEDGED, by: str | None = "bo"
              ) -> Incident:
    return Incident(7, "g", "r", "payments", "SEV1", "standard", {}, state, NOW, NOW,
                    acknowledged_by=by)


USERS = frozenset({"ana", "bo", "cy"})
REMINDED = [
    # (state, acknowledged by, commander, who is reminded)
    (IncidentState.TRIGGERED, None, None, None),  # nobody yet: recorded, nobody told
    (IncidentState.ACKNOWLEDGED, "bo", None, "bo"),
    (IncidentState.ACKNOWLEDGED, "bo", "cy", "cy"),
    (IncidentState.TRIGGERED, None, "cy", "cy"),
    (IncidentState.TRIGGERED, "bo", None, None),  # bo un-acknowledged it: "not me"
    (IncidentState.ACKNOWLEDGED, "e2e", None, None),  # a script's token is not a person
]


@pytest.mark.parametrize(("state", "by", "commander", "reminded"), REMINDED)
def test_who_is_reminded(
    state: IncidentState, by: str | None, commander: str | None, reminded: str | None
) -> None:
    held = {Role.COMMANDER: RoleHolder(Role.COMMANDER, commander, NOW, "x")} if commander else {}
    due = NOW + timedelta(minutes=15)
    got = cadence.remind(_incident(state, by), held, SEV1, due, USERS, due)
    assert got is not None
    assert got.recipient == reminded
    assert dict(got.event.detail) == {"every": 900.0, "since": NOW.isoformat(),
                                      "reminded": reminded}
    assert got.next_due == due + timedelta(minutes=15)


def test_no_reminder_once_resolved_or_without_a_cadence() -> None:
    assert cadence.remind(_incident(IncidentState.RESOLVED), {}, SEV1, NOW, USERS, NOW) is None
    assert cadence.remind(_incident(), {}, Severity("SEV3", 2), NOW, USERS, NOW) is None
    assert cadence.due(Severity("SEV3", 2), NOW) is None
    assert cadence.due(SEV1, NOW) == NOW + timedelta(minutes=15)
    assert cadence.due(SEV1, datetime.max.replace(tzinfo=UTC)) is None


# -- in-process, on the fake clock ----------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9", step_delay="1h",
                        extra=SEVERITIES)
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    clock, notifier = FakeClock(), RecordingNotifier()
    daemon = Daemon(loaded, clock=clock, notifier=notifier)
    await daemon.start()
    yield Api(daemon, notifier, clock)
    await daemon.stop()


def _reminders(api: Api) -> list[str]:
    return [url.rsplit("/", 1)[1] for url, m in api.notifier.sent
            if "status update is due" in m.title]


async def _due_events(api: Api, number: int) -> list[dict[str, Any]]:
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    return [e["detail"] for e in body["timeline"] if e["kind"] == "status_due"]


async def _at(api: Api, start: datetime, minutes: float) -> None:
    """Move the fake clock to `minutes` after `start` and let what is due run."""
    await api.clock.jump(start + timedelta(minutes=minutes) - api.clock.now())
    await api.settle()


async def test_the_cadence_reminds_until_someone_speaks(api: Api) -> None:
    start = api.clock.now()
    number = await api.fire()  # severity critical: SEV1, every 15 minutes
    await api.settle()
    await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    await _at(api, start, 14.9)
    assert _reminders(api) == []
    await _at(api, start, 15)
    assert _reminders(api) == ["ana"]  # nobody commands: whoever acknowledged
    assert [d["reminded"] for d in await _due_events(api, number)] == ["ana"]
    await _at(api, start, 30)
    assert _reminders(api) == ["ana", "ana"]  # again each interval while nobody speaks
    await api.call("PUT", f"/api/v1/incidents/{number}/roles/commander", {"user": "cy"})
    await _at(api, start, 33)
    status, note = await api.call("POST", f"/api/v1/incidents/{number}/notes",
                                  {"text": "rolled back; watching"}, token=CY_TOKEN)
    assert (status, note["kind"]) == (201, "status_update")
    await _at(api, start, 47.9)
    assert _reminders(api) == ["ana", "ana"]  # the update moved the clock: due at 48
    await _at(api, start, 48)
    assert _reminders(api) == ["ana", "ana", "cy"]  # the commander now
    await api.call("POST", f"/api/v1/incidents/{number}/resolve", token=CY_TOKEN)
    await _at(api, start, 120)
    assert _reminders(api) == ["ana", "ana", "cy"]  # resolved: no cadence
    assert [(d["reminded"], d["every"]) for d in await _due_events(api, number)] == [
        ("ana", 900.0), ("ana", 900.0), ("cy", 900.0)]


async def test_whoever_acknowledged_through_the_link_is_reminded(api: Api) -> None:
    """The link in a page is how a phone acknowledges: its recipient is the acknowledger, as
    with their own token (an earlier release recorded "ana (link)", whom nobody is)."""
    start = api.clock.now()
    number = await api.fire()
    await api.settle()
    assert await api.press_link(number, "ack", "ana") == 200
    await _at(api, start, 15)
    assert _reminders(api) == ["ana"]
    assert [d["reminded"] for d in await _due_events(api, number)] == ["ana"]
    _, found = await api.call("GET", f"/api/v1/incidents/{number}")
    assert found["acknowledged_by"] == "ana"
    [acked] = [e for e in found["timeline"] if e["kind"] == "acknowledged"]
    assert (acked["actor"], acked["detail"]) == ("ana", {"via": "link"})  # how, kept


async def test_without_anyone_accountable_the_overdue_update_is_recorded(api: Api) -> None:
    start = api.clock.now()
    labels = {"alertname": "Disk", "cluster": "eu1", "team": "payments", "severity": "x"}
    number = await api.fire(labels)  # default: SEV2, every 30 minutes
    await _at(api, start, 30)
    assert [d["reminded"] for d in await _due_events(api, number)] == [None]
    assert _reminders(api) == []


async def test_a_severity_without_cadence_never_reminds(api: Api) -> None:
    start = api.clock.now()
    labels = {"alertname": "Disk", "cluster": "eu1", "team": "payments", "severity": "warning"}
    number = await api.fire(labels)  # SEV3: no status_every
    await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    await _at(api, start, 600)
    assert await _due_events(api, number) == []


def test_a_cadence_of_zero_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9",
                        extra="severities: [{name: SEV1, status_every: 0s}]\n")
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert "severities[0].status_every: must be longer than 0s" in str(caught.value)


# -- end to end: real Alertmanager, real ackd, real Apprise to a local sink -----------------

PAYMENTS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
            "severity": "critical"}


@pytest.mark.alertmanager
async def test_a_cadence_reminder_end_to_end(tmp_path: Path, sink: HttpSink) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    config = tmp_path / "ackd.yaml"
    config.write_text(config.read_text() + "severities:\n  - {name: SEV1, status_every: 3s}\n"
                      "  - {name: SEV2}\n  - {name: SEV3}\n")
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        await am.start_ready()
        await am.post_alerts([am_alert(PAYMENTS, datetime.now(UTC) - timedelta(minutes=1))])

        async def opened() -> bool:
            return len(await ackd.incidents()) == 1

        await wait_until(opened, 15, "the incident")
        [incident] = await ackd.incidents()
        number = incident["id"]
        await ackd.call("PUT", f"/api/v1/incidents/{number}/roles/commander", {"user": "cy"},
                        token=ANA_TOKEN)

        def reminders() -> list[Any]:
            return [r for r in sink.requests if "status update is due" in r.json["title"]]

        async def reminded() -> bool:
            return bool(reminders())

        await wait_until(reminded, 15, "the cadence reminder")
        [first, *_] = reminders()
        assert first.path == "/cy"  # the commander, through their contact
        assert "No status update for 3s." in first.json["message"]
        assert f"ackd note {number}" in first.json["message"]
        found = await ackd.incident(number)
        due = [e for e in found["timeline"] if e["kind"] == "status_due"]
        assert due[0]["detail"]["reminded"] == "cy"
        # A status update from the commander restarts the clock.
        await ackd.call("POST", f"/api/v1/incidents/{number}/notes", {"text": "on it"},
                        token=CY_TOKEN)
        await ackd.call("POST", f"/api/v1/incidents/{number}/resolve", token=CY_TOKEN)
        count = len(reminders())
        await asyncio.sleep(4)
        assert len(reminders()) == count  # resolved: no more reminders
    finally:
        am.stop()
        ackd.stop()
