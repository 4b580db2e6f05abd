"""Reports on a seeded store, checked against figures worked out by hand, and against what
/metrics says of the same incidents. The daemon runs in-process on a fake clock; incidents
are raised by webhooks and answered through the API, as in life."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.cli.learning import report_lines
from receiver.core.model import Alert, AlertStatus
from tests.harness import ANA_TOKEN, CY_TOKEN, TOKEN
from tests.test_api import Api, start_api

PAY_A = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
         "severity": "critical"}
PAY_B = {"alertname": "PaymentLatency", "cluster": "eu1", "team": "payments",
         "severity": "critical"}
DISK = {"alertname": "DiskFull", "cluster": "eu1", "severity": "warning"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


async def _open(api: Api, labels: dict[str, str], started_before: float) -> int:
    starts = api.clock.now() - timedelta(seconds=started_before)
    alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, starts, None)
    status, body = await api.call("POST", "/api/v1/alerts", build_webhook([alert]), token=TOKEN)
    assert status == 200, body
    await api.settle()
    number: int = body["incidents"][0]
    return number


async def _after(api: Api, seconds: float, action: str, number: int) -> None:
    await api.clock.jump(seconds)
    await api.settle()
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/{action}")
    assert status == 200, body


async def _seed(api: Api) -> None:
    """Four incidents, one after the other (the policy pages step 2 at +5m, step 3 at +10m):
    A payments SEV1: alert began 60s before; acknowledged at +2m (step 1); resolved at +20m.
    B payments SEV1: began 120s before; step 2 at +5m; acknowledged at +7m; resolved at +30m.
    C platform SEV3: began 30s before; steps 2 and 3; nobody acknowledged; resolved at +15m.
    D payments SEV1, a week after A, of A's very alert: began 10s before; acknowledged at
      +1m; resolved at +4m."""
    a = await _open(api, PAY_A, 60)
    await _after(api, 120, "ack", a)
    await _after(api, 1080, "resolve", a)
    b = await _open(api, PAY_B, 120)
    await api.clock.jump(300)
    await _after(api, 120, "ack", b)
    await _after(api, 1380, "resolve", b)
    c = await _open(api, DISK, 30)
    await api.clock.jump(300)
    await api.settle()
    await api.clock.jump(300)
    await api.settle()
    await _after(api, 300, "resolve", c)
    await api.clock.jump(timedelta(days=7).total_seconds())
    d = await _open(api, PAY_A, 10)
    await _after(api, 60, "ack", d)
    await _after(api, 180, "resolve", d)


async def _report(api: Api, since: str = "30d") -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/reports?since={since}")
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def _stats(count: int, mean: float | None, p50: float | None, p90: float | None
           ) -> dict[str, Any]:
    return {"count": count, "mean": mean, "p50": p50, "p90": p90}


async def test_report_figures_match_the_hand_computed_ones(api: Api) -> None:
    await _seed(api)
    report = await _report(api)
    assert report["incidents"] == 4
    assert report["drills"] == 0
    [payments, platform] = report["by_team_severity"]
    assert (payments["team"], payments["severity"], payments["incidents"]) == (
        "payments", "SEV1", 3)
    # detect: 60, 120, 10 s; acknowledge: 120, 420, 60 s; resolve: 1200, 1800, 240 s.
    assert payments["mttd"] == _stats(3, pytest.approx(190 / 3), 60.0, 120.0)
    assert payments["mtta"] == _stats(3, 200.0, 120.0, 420.0)
    assert payments["mttr"] == _stats(3, 1080.0, 1200.0, 1800.0)
    assert (platform["team"], platform["severity"], platform["incidents"]) == (
        "platform", "SEV3", 1)
    assert platform["mttd"] == _stats(1, 30.0, 30.0, 30.0)
    assert platform["mtta"] == _stats(0, None, None, None)
    assert platform["mttr"] == _stats(1, 900.0, 900.0, 900.0)
    # The fake clock starts on Monday 2026-01-05 (ISO week 2); D came a week later.
    assert report["per_week"] == {"2026-W02": {"SEV1": 2, "SEV3": 1}, "2026-W03": {"SEV1": 1}}
    assert report["repeat_rate"] == {"count": 1, "incidents": 4, "rate": 0.25}  # D repeats A
    assert report["escalation_rate"] == {"count": 2, "incidents": 4, "rate": 0.5}  # B and C
    assert report["acknowledged_by_step"] == {"1": 2, "2": 1}  # A and D at 1, B at 2
    assert (report["detected"], report["reported"]) == (4, 0)


async def test_a_short_window_still_sees_repeats_from_before_it(api: Api) -> None:
    await _seed(api)
    report = await _report(api, "3d")
    assert report["incidents"] == 1  # only D
    assert report["repeat_rate"] == {"count": 1, "incidents": 1, "rate": 1.0}
    assert [r["mtta"] for r in report["by_team_severity"]] == [_stats(1, 60.0, 60.0, 60.0)]


def _metric(text: str, name: str, **labels: str) -> float:
    """A sample's value; a labelled series never observed is not exposed, and counts 0."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line
                                               for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_report_and_metrics_agree(api: Api) -> None:
    await _seed(api)
    report = await _report(api)
    status, metrics = await api.call("GET", "/metrics")
    assert status == 200
    assert _metric(metrics, "ackd_time_to_acknowledge_seconds_count") == 3
    for row in report["by_team_severity"]:
        labels = {"team": row["team"], "severity": row["severity"]}
        for figure, name in (("mtta", "ackd_time_to_acknowledge_seconds"),
                             ("mttr", "ackd_time_to_resolve_seconds")):
            count = _metric(metrics, f"{name}_count", **labels)
            total = _metric(metrics, f"{name}_sum", **labels)
            assert count == row[figure]["count"], (figure, labels)
            assert total == pytest.approx((row[figure]["mean"] or 0) * count), (figure, labels)
        assert _metric(metrics, "ackd_incidents_opened_total", **labels) == row["incidents"]


async def _reassign_to_cy(api: Api, labels: dict[str, str]) -> int:
    """An incident its policy paged ana for (step 1), reassigned to cy a minute later: cy is
    paged at once, and the policy's step 1 (ana) again 5 minutes after that."""
    number = await _open(api, labels, 0)
    await api.clock.jump(60)
    await api.settle()
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/reassign",
                                  {"user": "cy"}, token=ANA_TOKEN)
    assert status == 200, body
    await api.settle()
    return number


async def test_a_reassigned_person_who_did_not_answer_is_no_escalation(api: Api) -> None:
    """As in ackd_escalation_steps: the reassigned person's page is no step of the policy, and
    the policy's first step behind them is its step 1, not 2. Read as the run's own steps, the
    first incident was "escalated" (its step 2) and acknowledged "at step 2"."""
    first = await _reassign_to_cy(api, PAY_A)
    await _after(api, 300, "ack", first)  # after the policy's step 1 behind cy (ana)
    await _after(api, 60, "resolve", first)
    second = await _reassign_to_cy(api, PAY_B)
    status, body = await api.call("POST", f"/api/v1/incidents/{second}/ack", token=CY_TOKEN)
    assert status == 200, body
    _, incident = await api.call("GET", f"/api/v1/incidents/{first}")
    steps = [e["detail"] for e in incident["timeline"] if e["kind"] == "step_fired"]
    assert [(s["recipients"], s["number"]) for s in steps] == [
        (["ana"], 1), (["cy"], 1), (["ana"], 2)]  # the run's own steps

    report = await _report(api)
    assert report["incidents"] == 2
    assert report["escalation_rate"] == {"count": 0, "incidents": 2, "rate": 0.0}
    assert report["acknowledged_by_step"] == {"reassigned": 1, "1": 1}  # cy; ana behind cy
    assert "Acknowledged at step: reassigned: 1, 1: 1" in report_lines(report)
    # The metric says the same: no page of the policy's past its first (step "0").
    _, metrics = await api.call("GET", "/metrics")
    counted = dict(re.findall(
        r'ackd_escalation_steps_total\{policy="standard",step="(\w+)",team="payments"\} (\S+)',
        metrics))
    assert counted == {"0": "3.0", "reassigned": "2.0"}

    status, text = await api.call("GET", f"/api/v1/incidents/{first}/postmortem")
    assert status == 200, text
    # The escalation table's step column (its rows: step, cycle 1, the time fired, ...).
    assert re.findall(r"^\| (\w+) \| 1 \| \d{4}-", text, re.M) == ["1", "reassigned", "1"]
    assert re.search(r"^First acknowledged by e2e at .* after step 1\.$", text, re.M), text
    status, text = await api.call("GET", f"/api/v1/incidents/{second}/postmortem")
    assert status == 200, text
    assert re.search(r"^First acknowledged by cy at .* after the reassigned person's page\.$",
                     text, re.M), text


async def test_report_errors_name_the_field(api: Api) -> None:
    for since in ("soon", "-1d", "0s", "99999999999999d"):
        status, body = await api.call("GET", f"/api/v1/reports?since={since}")
        assert status == 400, since
        assert body["field"] == "since"
    status, body = await api.call("GET", "/api/v1/reports", token="wrong")
    assert status == 401


async def test_report_as_text(api: Api) -> None:
    await _seed(api)
    report = await _report(api)
    lines = report_lines(report)
    text = "\n".join(lines)
    assert re.search(r"^payments\s+SEV1\s+3\s+1m03s\s+1m00s\s+2m00s\s+3m20s\s+2m00s\s+7m00s"
                     r"\s+18m00s\s+20m00s\s+30m00s$", text, re.M), text
    assert "Repeat incidents (alerts seen within 30 days): 1 of 4 (25.0%)" in lines
    assert "Escalated (needed step 2 or later): 2 of 4 (50.0%)" in lines
    assert "Acknowledged at step: 1: 2, 2: 1" in lines
    # `ackd report` (a CLI upgraded first) against an ackd from before resolved_unacknowledged
    # prints the rest: it raised KeyError.
    older = {k: v for k, v in report.items() if k != "resolved_unacknowledged"}
    assert report_lines(older) == [
        line for line in lines if not line.startswith("Resolved unacknowledged")]


async def test_the_web_page_shows_the_same_report_as_tables(api: Api) -> None:
    from tests.test_web_page import Browser

    await _seed(api)
    browser = Browser(api)
    try:
        await browser.sign_in()
        status, page = await browser.get("/reports?since=30d")
        assert status == 200
        table = re.search(r'<table id="response-times">(.*?)</table>', page, re.S)
        assert table
        rows = re.findall(r"<tr><td>(.*?)</tr>", table.group(1), re.S)
        cells = [re.findall(r"(?:^|<td>)([^<]*)</td>", row) for row in rows]
        assert cells[0] == ["payments", "SEV1", "3", "1m", "1m", "2m", "3m", "2m", "7m",
                            "18m", "20m", "30m"]
        assert cells[1] == ["platform", "SEV3", "1", "30s", "30s", "30s", "-", "-", "-",
                            "15m", "15m", "15m"]
        assert "1 of 4 (25.0%)" in page
        status, page = await browser.get("/reports?since=soon")
        assert status == 400
        assert "since: not a duration" in page
    finally:
        await browser.session.close()


async def test_declared_incidents_count_as_reported(api: Api) -> None:
    await _open(api, PAY_A, 60)
    status, body = await api.call("POST", "/api/v1/incidents", {
        "team": "payments", "severity": "SEV1", "summary": "customers cannot pay"})
    assert status == 201, body
    report = await _report(api)
    assert (report["incidents"], report["detected"], report["reported"]) == (2, 1, 1)
    [row] = report["by_team_severity"]
    assert row["incidents"] == 2
    assert row["mttd"]["count"] == 1  # a declared incident has no alert to detect it by


async def test_an_incident_let_go_and_resolved_counts_as_resolved_unacknowledged_everywhere(
    api: Api, caplog: pytest.LogCaptureFixture,
) -> None:
    """Acknowledged, un-acknowledged, then resolved with nobody holding it (by a person; by
    Alertmanager): the API and the page name no acknowledger, /metrics and the report count
    it as resolved unacknowledged, MTTA keeps its first acknowledgement, the post-mortem says
    both, and so does the resolution's log line. One still held when resolved is none of it."""
    a = await _open(api, PAY_A, 30)
    await _after(api, 60, "ack", a)
    await _after(api, 60, "unack", a)
    b = await _open(api, PAY_B, 30)
    await _after(api, 60, "ack", b)
    await _after(api, 60, "unack", b)
    c = await _open(api, DISK, 30)
    await _after(api, 60, "ack", c)
    await api.clock.jump(60)
    with caplog.at_level(logging.INFO, logger="receiver"):
        status, body = await api.call("POST", f"/api/v1/incidents/{a}/resolve", token=ANA_TOKEN)
        assert (status, body["acknowledged_by"], body["acknowledged_at"]) == (200, None, None)
        starts = api.clock.now() - timedelta(minutes=10)
        ended = Alert(fingerprint_of(PAY_B), AlertStatus.RESOLVED, PAY_B, {}, starts,
                      api.clock.now())
        status, _ = await api.call("POST", "/api/v1/alerts", build_webhook([ended]),
                                   token=TOKEN)
        assert status == 200
        await api.settle()
        await _after(api, 0, "resolve", c)
    unheld = " while nobody held it (unacknowledged)"
    assert f"incident #{a} resolved by ana{unheld}" in caplog.messages
    assert f"incident #{b} resolved by alertmanager{unheld}" in caplog.messages
    assert f"incident #{c} resolved by e2e" in caplog.messages

    for number, resolved_by in ((a, "ana"), (b, "alertmanager")):
        _, found = await api.call("GET", f"/api/v1/incidents/{number}")
        assert (found["state"], found["resolved_by"], found["acknowledged_by"],
                found["acknowledged_at"]) == ("resolved", resolved_by, None, None)
        assert [e["actor"] for e in found["timeline"] if e["kind"] == "acknowledged"] == [
            "e2e"]
        _, listing = await api.call("GET", "/api/v1/incidents?state=resolved")
        assert {i["id"]: i["acknowledged_by"] for i in listing["incidents"]} == {
            a: None, b: None, c: "e2e"}
        status, text = await api.call("GET", f"/api/v1/incidents/{number}/postmortem")
        assert status == 200, text
        assert re.search(r"^First acknowledged by e2e at .* after step 1\.$", text, re.M), text
        assert "\nNobody held it when it was resolved: the acknowledgement had been let go" \
            in text
    _, found = await api.call("GET", f"/api/v1/incidents/{c}")
    assert (found["acknowledged_by"], found["resolved_by"]) == ("e2e", "e2e")
    status, text = await api.call("GET", f"/api/v1/incidents/{c}/postmortem")
    assert "Nobody held it" not in text

    metrics = (await api.call("GET", "/metrics", token=None))[1]
    assert 'ackd_incidents_resolved_unacknowledged_total{severity="SEV1",team="payments"} 2.0' \
        in metrics
    assert 'ackd_incidents_resolved_unacknowledged_total{severity="SEV3"' not in metrics
    assert 'ackd_time_to_acknowledge_seconds_count{severity="SEV1",team="payments"} 2.0' \
        in metrics
    report = await _report(api)
    assert report["resolved_unacknowledged"] == {"count": 2, "incidents": 3,
                                                 "rate": pytest.approx(2 / 3)}
    [payments, _] = report["by_team_severity"]
    assert payments["mtta"]["count"] == 2  # the first acknowledgements, as in /metrics
    assert "Resolved unacknowledged (nobody held it when resolved): 2 of 3 (66.7%)" in \
        report_lines(report)

    from tests.test_web_page import Browser

    browser = Browser(api)
    try:
        await browser.sign_in()
        _, page = await browser.get(f"/incidents/{a}")
        assert re.search(r'id="state"[^>]*>resolved<', page), page
        assert "<dt>Acknowledged</dt><dd>" not in page  # names no holder: says why
        assert '<dt>Acknowledged</dt><dd id="unheld">first ' in page
        _, page = await browser.get(f"/incidents/{c}")
        assert "<dt>Acknowledged</dt><dd>" in page
        _, page = await browser.get("/reports?since=30d")
        assert re.search(r"Resolved unacknowledged \(nobody held it when resolved\)</th>"
                         r"<td>2 of 3 \(66\.7%\)</td>", page), page
    finally:
        await browser.session.close()


async def test_time_to_resolve_ends_when_alertmanager_says_the_alerts_ended(api: Api) -> None:
    """Alertmanager sends a resolution at the group's next group_interval: the alert ended
    3m 6s after the incident opened, its resolution came 4m 45s later. MTTR's observation
    ends at the alert's end, in /metrics, the report and the post-mortem alike; the incident
    keeps the arrival as its resolution (the timeline stays in the order ackd learned it)."""
    number = await _open(api, PAY_A, 60)
    opened = api.clock.now()
    await api.clock.jump(186)
    ended = api.clock.now()
    await api.clock.jump(285)
    arrived = api.clock.now()
    fired = Alert(fingerprint_of(PAY_A), AlertStatus.RESOLVED, PAY_A, {},
                  opened - timedelta(seconds=60), ended)
    status, body = await api.call("POST", "/api/v1/alerts", build_webhook([fired]),
                                  token=TOKEN)
    assert status == 200, body
    await api.settle()
    _, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    assert (incident["state"], incident["resolved_by"]) == ("resolved", "alertmanager")
    assert incident["resolved_at"].startswith(arrived.strftime("%Y-%m-%dT%H:%M:%S"))

    [row] = (await _report(api))["by_team_severity"]
    assert row["mttr"] == _stats(1, 186.0, 186.0, 186.0)
    _, metrics = await api.call("GET", "/metrics")
    labels = {"team": "payments", "severity": "SEV1"}
    assert _metric(metrics, "ackd_time_to_resolve_seconds_count", **labels) == 1
    assert _metric(metrics, "ackd_time_to_resolve_seconds_sum", **labels) == 186.0
    # Its help says where it ends too: a dashboard's reader sees no resolution time in it.
    assert "# HELP ackd_time_to_resolve_seconds From incident open to the end of its problem: " \
        "its alerts' endsAt when Alertmanager resolved it" in metrics

    status, text = await api.call("GET", f"/api/v1/incidents/{number}/postmortem")
    assert status == 200, text
    at = "%Y-%m-%d %H:%M:%S"
    assert (f"- Resolved: {arrived:{at}} by alertmanager (alerts ended {ended:{at}};"
            f" Alertmanager reported it {arrived:{at}})") in text, text
    assert (f"| Time to resolve | incident opened {opened:{at}} | alerts ended {ended:{at}}"
            " | 3m 6s |") in text, text
