"""Alerts raise an open incident's severity: the classic pair DiskFull{severity="warning"} at
80% and {severity="critical"} at 95% shares its group, and the critical one must not wait in
the warning's low-urgency incident. The decision in tables (incidents/severity.py), then the
daemon in-process on a fake clock, on SQLite and on PostgreSQL: the raise is the one a person
makes (timeline, escalation over under the new severity, its stakeholders told). And a
lowered incident skips a step armed for the old severity only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import Alert, AlertStatus, KnownAlert, OpenGroup, Severity
from receiver.incidents.severity import began, raised_by_alerts
from receiver.ingest.grouping import apply
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import ANA_TOKEN, TOKEN, write_config
from tests.pgcluster import fresh_database
from tests.test_api import Api

SEV1, SEV2, SEV3 = Severity("SEV1", 0), Severity("SEV2", 1), Severity("SEV3", 2, urgency="low")


@pytest.mark.parametrize(("current", "joining", "raised"), [
    (SEV3, [SEV1], SEV1),  # the critical disk joins the warning's incident
    (SEV2, [SEV3, SEV1], SEV1),  # the most urgent of those that began
    (SEV3, [SEV2], SEV2),
    (SEV2, [SEV2], None),  # the severity it has
    (SEV1, [SEV3], None),  # never lowered
    (SEV1, [SEV2, SEV3], None),
    (SEV2, [], None),  # nothing began firing
])
def test_the_severity_alerts_raise_an_incident_to(
    current: Severity, joining: list[Severity], raised: Severity | None
) -> None:
    assert raised_by_alerts(current, joining) == raised


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HELD = NOW - timedelta(minutes=10)


def _alert(fp: str, status: AlertStatus, starts: datetime) -> Alert:
    ends = None if status is AlertStatus.FIRING else NOW
    return Alert(fp, status, {"alertname": "DiskFull"}, {}, starts, ends)


F, R = AlertStatus.FIRING, AlertStatus.RESOLVED


@pytest.mark.parametrize(("name", "incoming", "held", "names"), [
    # (what, [(fingerprint, status, start)] with severity SEV1 for "c" and SEV3 for "w",
    #  the open incident's alerts as (fingerprint, status), the severities that began)
    ("a new alert begins", [("w", F, HELD), ("c", F, NOW)], [("w", F)], {"SEV1"}),
    ("a resend begins nothing", [("w", F, HELD), ("c", F, HELD)], [("w", F), ("c", F)],
     set()),
    ("firing again after it ended", [("c", F, NOW)], [("w", F), ("c", R)], {"SEV1"}),
    ("an earlier start of the held episode", [("c", F, HELD - timedelta(minutes=1))],
     [("w", F), ("c", F)], set()),
    ("a resolution", [("c", R, HELD)], [("w", F), ("c", F)], set()),
])
def test_the_alerts_that_began_firing(
    name: str, incoming: list[tuple[str, AlertStatus, datetime]],
    held: list[tuple[str, AlertStatus]], names: set[str],
) -> None:
    alerts = [_alert(fp, status, starts) for fp, status, starts in incoming]
    open_group = OpenGroup(7, {
        fp: KnownAlert(HELD, status, None if status is F else HELD + timedelta(minutes=1))
        for fp, status in held})
    change = apply(alerts, open_group, {}, NOW)
    severities = ["SEV1" if a.fingerprint == "c" else "SEV3" for a in alerts]
    assert began(alerts, severities, change) == names, name


# In the daemon: SEV3 is low urgency, payments works weekdays 09:00-18:00 in Amsterdam, and
# the fake clock starts on a Saturday, so a warning's incident waits for Monday.
SATURDAY = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
MONDAY_9 = datetime(2026, 1, 12, 8, 0, tzinfo=UTC)
ROOMS = """channels:
  - {name: status-room, urls: [{url: "json://127.0.0.1:9/status-room"}]}
  - {name: exec-room, urls: [{url: "json://127.0.0.1:9/exec-room"}]}
severities:
  - {name: SEV1, stakeholders: [status-room, exec-room]}
  - {name: SEV2, stakeholders: [status-room]}
  - {name: SEV3, urgency: low}
"""
HOURS = ('working_hours: {timezone: Europe/Amsterdam, days: mon-fri,'
         ' start: "09:00", end: "18:00"}')
DISK = {"alertname": "DiskFull", "cluster": "eu1", "instance": "db1", "team": "payments"}
WARNING = {**DISK, "severity": "warning"}  # SEV3
CRITICAL = {**DISK, "severity": "critical"}  # SEV1


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The daemon on the store of the test's parameter: the SQLite file, or a fresh database
    of the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        async for started in _api(tmp_path, ""):
            yield started
        return
    async with fresh_database(request.getfixturevalue("pg_cluster")) as dsn:
        async for started in _api(tmp_path, f"storage: {{postgres: {{dsn: '{dsn}'}}}}\n"):
            yield started


async def _api(tmp_path: Path, storage: str, before_secondary: str = "") -> AsyncIterator[Api]:
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9", step_delay="5m",
                        extra=ROOMS + storage)
    secondary = "      - {delay: 5m, notify: [{oncall: secondary}]}\n"
    path.write_text(path.read_text().replace(secondary, before_secondary + secondary))
    path.write_text(path.read_text().replace(
        "{name: payments, schedule: payments, lead: cy}",
        f"{{name: payments, schedule: payments, lead: cy, {HOURS}}}"))
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    clock, notifier = FakeClock(SATURDAY), RecordingNotifier()
    daemon = Daemon(loaded, clock=clock, notifier=notifier)
    await daemon.start()
    yield Api(daemon, notifier, clock)
    await daemon.stop()


async def _post(api: Api, *labels: dict[str, str]) -> list[int]:
    """One webhook of these firing alerts (each started 30 s ago); the incidents it reached."""
    starts = api.clock.now() - timedelta(seconds=30)
    alerts = [Alert(fingerprint_of(ls), AlertStatus.FIRING, ls, {}, starts, None)
              for ls in labels]
    status, body = await api.call("POST", "/api/v1/alerts", build_webhook(alerts), token=TOKEN)
    assert status == 200, body
    await api.settle()
    return list(body["incidents"])


async def _incident(api: Api, number: int) -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert status == 200, body
    return dict(body)


def _changes(incident: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(e["actor"], e["detail"]) for e in incident["timeline"]
            if e["kind"] == "severity_changed"]


async def test_a_critical_alert_joining_a_deferred_warning_incident_pages_now(api: Api) -> None:
    [number] = await _post(api, WARNING)
    incident = await _incident(api, number)
    assert (incident["severity"], api.paged()) == ("SEV3", [])
    assert [e["kind"] for e in incident["timeline"]][-1] == "escalation_deferred"
    assert await _post(api, WARNING, CRITICAL) == [number]  # the same group
    incident = await _incident(api, number)
    assert (incident["severity"], incident["state"]) == ("SEV1", "triggered")
    assert _changes(incident) == [
        ("alertmanager", {"from": "SEV3", "to": "SEV1", "raised": True})]
    # The first step of SEV1 at once, not Monday 09:00, and both of SEV1's rooms told.
    assert sorted(api.paged()) == ["ana", "exec-room", "status-room"]
    page = next(m for url, m in api.notifier.sent if url.endswith("/ana"))
    assert page.title.startswith(f"[SEV1] SEVERITY RAISED #{number} payments:")
    assert "SEVERITY RAISED to SEV1 by alertmanager (step 1)." in page.body.splitlines()
    await api.clock.jump(timedelta(minutes=5))
    await api.settle()
    assert api.paged()[-1] == "bo"  # and on under SEV1's steps, while it is Saturday
    assert api.clock.now() < MONDAY_9


async def test_alerts_never_lower_and_a_new_urgent_alert_raises_what_a_person_lowered(
    api: Api,
) -> None:
    [number] = await _post(api, CRITICAL)
    assert sorted(api.paged()) == ["ana", "exec-room", "status-room"]
    await _post(api, CRITICAL, WARNING)  # a warning joins: SEV1 stays
    assert (await _incident(api, number))["severity"] == "SEV1"
    status, body = await api.call("PUT", f"/api/v1/incidents/{number}/severity",
                                  {"severity": "SEV2"}, token=ANA_TOKEN)
    assert (status, body["severity"]) == (200, "SEV2")
    await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    await api.settle()
    sent = len(api.paged())
    await _post(api, CRITICAL, WARNING)  # what the person saw, again: stays SEV2
    await _post(api, WARNING, CRITICAL)  # the same, another body (no memo)
    incident = await _incident(api, number)
    assert (incident["severity"], incident["state"], api.paged()[sent:]) == (
        "SEV2", "acknowledged", [])
    # A critical alert they have not seen (another instance of the group) raises it again:
    # triggered, paged from SEV1's first step; both rooms heard of SEV1 at the opening.
    await _post(api, CRITICAL, WARNING, {**CRITICAL, "instance": "db2"})
    incident = await _incident(api, number)
    assert (incident["severity"], incident["state"]) == ("SEV1", "triggered")
    assert api.paged()[sent:] == ["ana"]
    assert _changes(incident) == [
        ("ana", {"from": "SEV1", "to": "SEV2", "raised": False}),
        ("alertmanager", {"from": "SEV2", "to": "SEV1", "raised": True}),
    ]


@pytest.fixture
async def sev1_step(tmp_path: Path) -> AsyncIterator[Api]:
    """The daemon on SQLite, its policy with a step for SEV1 only (cy, 3 minutes in) between
    the primary's and the secondary's (5 minutes after the step that fired before it)."""
    step = "      - {after: 3m, severities: [SEV1], notify: [{user: cy}]}\n"
    async for started in _api(tmp_path, "", step):
        yield started


async def test_a_step_for_the_old_severity_only_is_skipped_after_a_lowering(
    sev1_step: Api,
) -> None:
    api = sev1_step
    [number] = await _post(api, CRITICAL)
    assert sorted(api.paged()) == ["ana", "exec-room", "status-room"]
    await api.clock.jump(timedelta(minutes=1))
    status, body = await api.call("PUT", f"/api/v1/incidents/{number}/severity",
                                  {"severity": "SEV2"}, token=ANA_TOKEN)
    assert (status, body["severity"]) == (200, "SEV2")
    await api.clock.jump(timedelta(minutes=2))
    await api.settle()
    assert api.paged()[3:] == []  # cy's step is SEV1's only
    skipped = [e["detail"] for e in (await _incident(api, number))["timeline"]
               if e["kind"] == "step_skipped"]
    assert skipped == [{"step": 1, "number": 2, "cycle": 0, "run": 0, "severity": "SEV2",
                        "severities": ["SEV1"]}]
    await api.clock.jump(timedelta(minutes=2))  # 5 minutes after ana's step, as for a SEV2
    await api.settle()
    assert api.paged()[3:] == ["bo"]
