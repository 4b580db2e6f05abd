"""End to end with the real Alertmanager: DiskFull{severity="warning"} opens a SEV3 incident
that waits for working hours; DiskFull{severity="critical"} of the same group, posted later,
raises it to SEV1 and ackd pages the primary at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.harness import Alertmanager, ackd_for, alertmanager_binary, am_alert, wait_until
from tests.sinks import HttpSink

DISK = {"alertname": "DiskFull", "cluster": "eu1", "instance": "db1", "team": "payments"}


@pytest.mark.alertmanager
async def test_a_critical_alert_raises_the_warning_incident_it_joins(
    tmp_path: Path, sink: HttpSink
) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    # payments works only the day after tomorrow (UTC): now is outside its working hours.
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[
        (datetime.now(UTC).weekday() + 2) % 7]
    config = tmp_path / "ackd.yaml"
    team = "{name: payments, schedule: payments, lead: cy}"
    hours = f"working_hours: {{timezone: UTC, days: {day}, start: '09:00', end: '18:00'}}"
    config.write_text(config.read_text().replace(team, f"{team[:-1]}, {hours}}}") + """
severities:
  - {name: SEV1}
  - {name: SEV2}
  - {name: SEV3, urgency: low}
""")
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        await am.start_ready()
        started = datetime.now(UTC) - timedelta(minutes=1)
        await am.post_alerts([am_alert({**DISK, "severity": "warning"}, started)])

        async def opened() -> bool:
            return bool(await ackd.incidents())

        await wait_until(opened, 15, "the warning's incident")
        [incident] = await ackd.incidents()
        number = incident["id"]
        timeline = (await ackd.incident(number))["timeline"]
        assert incident["severity"] == "SEV3"
        assert "escalation_deferred" in [e["kind"] for e in timeline]
        assert sink.requests == []

        await am.post_alerts([am_alert({**DISK, "severity": "warning"}, started),
                              am_alert({**DISK, "severity": "critical"}, started)])
        [page] = await sink.wait_for(1, within=15)
        assert page.path == "/ana"
        assert page.json["title"].startswith(f"[SEV1] SEVERITY RAISED #{number} payments:")
        incident = await ackd.incident(number)
        assert (incident["severity"], incident["state"]) == ("SEV1", "triggered")
        assert [(e["actor"], e["detail"]) for e in incident["timeline"]
                if e["kind"] == "severity_changed"] == [
            ("alertmanager", {"from": "SEV3", "to": "SEV1", "raised": True})]
        assert [i["id"] for i in await ackd.incidents()] == [number]  # one group, one incident
    finally:
        am.stop()
        ackd.stop()
