"""Maintenance windows on a fake clock through the real store, timer loop, escalation and
dispatcher: alerts are recorded and grouped, nobody is paged, every held page is on the
timeline; when the window ends, what still fires escalates from its first step."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.errors import ConfigError
from receiver.core.model import Alert, AlertStatus
from receiver.testing.clock import FakeClock
from receiver.testing.notifier import RecordingNotifier
from tests.harness import API_TOKEN, TOKEN, write_config
from tests.test_api import LABELS, Api, run_cli
from tests.test_web_page import HOSTILE, Browser

MINUTE = timedelta(minutes=1)
START = FakeClock().now()  # where every test's clock starts
EU1_WINDOW = f"""maintenance:
  - name: eu1-upgrade
    matchers: ['cluster="eu1"']
    start: {(START + 10 * MINUTE).isoformat()}
    end: {(START + 70 * MINUTE).isoformat()}
    comment: database upgrade
"""
OTHER = {"alertname": "LatencyHigh", "cluster": "us1", "team": "payments",
         "severity": "critical"}


def maintenance_config(directory: Path, extra: str = "") -> Path:
    return write_config(directory / "ackd.yaml", "127.0.0.1:9", step_delay="5m", extra=extra)


Start = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    daemons: list[Daemon] = []

    async def started(clock: FakeClock | None = None, extra: str = "") -> Api:
        loaded = config_module.load(maintenance_config(tmp_path, extra))
        loaded = replace(loaded, listen_port=0, data_dir=tmp_path / "data")
        clock = clock or FakeClock()
        daemon = Daemon(loaded, clock=clock, notifier=RecordingNotifier(),
                        config_path=tmp_path / "ackd.yaml")
        await daemon.start()
        daemons.append(daemon)
        assert isinstance(daemon.notifier, RecordingNotifier)
        return Api(daemon, daemon.notifier, clock)

    yield started
    for daemon in daemons:
        if not daemon.services.draining:
            await daemon.stop()


async def add(api: Api, **body: Any) -> dict[str, Any]:
    code, answer = await api.call("POST", "/api/v1/maintenance", body)
    assert code == 201, answer
    return dict(answer)


async def timeline(api: Api, number: int) -> list[dict[str, Any]]:
    code, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert code == 200
    return list(body["timeline"])


def kinds(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


async def resolve_alert(api: Api, labels: dict[str, str]) -> None:
    starts = api.clock.now() - timedelta(hours=1)
    alert = Alert(fingerprint_of(labels), AlertStatus.RESOLVED, labels, {}, starts,
                  api.clock.now())
    code, body = await api.call("POST", "/api/v1/alerts", build_webhook([alert]), token=TOKEN)
    assert code == 200, body


async def test_a_window_holds_pages_on_the_timeline_and_its_end_escalates_from_the_start(
    start: Start,
) -> None:
    api = await start()
    window = await add(api, team="payments", **{"for": "1h"}, comment="failover drill")
    assert (window["id"], window["active"], window["created_by"]) == (1, True, "e2e")
    number = await api.fire()
    await api.fire(LABELS)  # a resend: recorded and grouped into the same incident
    await api.settle()
    assert api.paged() == []  # nobody is paged
    [held] = kinds(await timeline(api, number), "page_suppressed")
    assert held["actor"] == "maintenance"
    assert {k: held["detail"][k] for k in ("recipient", "reason", "step", "window")} == {
        "recipient": "ana", "reason": "triggered", "step": 0, "window": "#1"}
    await api.clock.jump(30 * MINUTE)  # the policy's later steps wait: nobody paged
    await api.settle()
    assert api.paged() == []

    await api.clock.jump(30 * MINUTE)  # the window ends: the first step, then the second
    assert await api.paged_once(1) == ["ana"]
    # Her first page, saying why it comes an hour after the alert began firing.
    page = api.notifier.sent[0][1]
    assert page.title.startswith("[SEV1] AFTER MAINTENANCE #1 payments")
    assert page.body.splitlines()[0] == (
        "AFTER MAINTENANCE: held by maintenance window #1 since "
        f"{START.strftime('%Y-%m-%d %H:%M:%S UTC')} (step 1).")
    events = await timeline(api, number)
    assert [e["detail"]["window"] for e in kinds(events, "maintenance_ended")] == ["#1"]
    await api.clock.jump(5 * MINUTE)
    assert await api.paged_once(2) == ["ana", "bo"]


async def test_a_config_window_with_matchers_holds_only_what_all_match(start: Start) -> None:
    api = await start(extra=EU1_WINDOW)
    code, body = await api.call("GET", "/api/v1/maintenance")
    assert code == 200
    [listed] = body["windows"]
    assert (listed["name"], listed["source"], listed["active"]) == ("eu1-upgrade", "config", False)
    await api.clock.jump(10 * MINUTE)
    held = await api.fire(LABELS)  # cluster eu1: held
    paged = await api.fire(OTHER)  # cluster us1: paged at once
    assert await api.paged_once(1) == ["ana"]
    assert [m.title for _, m in api.notifier.sent][0].startswith(f"[SEV1] #{paged}")
    [event] = kinds(await timeline(api, held), "page_suppressed")
    assert event["detail"]["window"] == "eu1-upgrade"
    assert kinds(await timeline(api, paged), "page_suppressed") == []
    await api.clock.jump(60 * MINUTE)
    await api.settle()
    # The held one's first page, naming the window (the other escalated on meanwhile).
    [first] = [m for _, m in api.notifier.sent if f"#{held} " in m.title]
    assert first.title.startswith(f"[SEV1] AFTER MAINTENANCE #{held} payments")
    assert first.body.startswith("AFTER MAINTENANCE: held by maintenance window eu1-upgrade")
    assert kinds(await timeline(api, held), "maintenance_ended")


async def test_a_window_opened_mid_escalation_holds_the_next_step(start: Start) -> None:
    api = await start()
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]
    await add(api, team="payments", **{"for": "20m"})
    await api.clock.jump(5 * MINUTE)  # bo's step comes due inside the window: held
    await api.settle()
    assert api.paged() == ["ana"]
    [event] = kinds(await timeline(api, number), "page_suppressed")
    assert (event["detail"]["recipient"], event["detail"]["step"]) == ("bo", 1)
    await api.clock.jump(15 * MINUTE)  # the end: from the first step again
    assert await api.paged_once(2) == ["ana", "ana"]
    # ana's second page is not her first one again: it says what held it, and since when
    # (bo's step, the first page the window held).
    first, again = (message for _, message in api.notifier.sent)
    assert not first.body.startswith("AFTER MAINTENANCE")
    assert again.title.startswith(f"[SEV1] AFTER MAINTENANCE #{number} payments: ")
    held_since = (START + 5 * MINUTE).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert again.body.splitlines()[0] == (
        f"AFTER MAINTENANCE: held by maintenance window #1 since {held_since} (step 1).")
    await api.clock.jump(5 * MINUTE)  # bo's step of that run says so too
    assert await api.paged_once(3) == ["ana", "ana", "bo"]
    assert api.notifier.sent[2][1].body.splitlines()[0] == (
        f"AFTER MAINTENANCE: held by maintenance window #1 since {held_since}; nobody has "
        "acknowledged yet (step 2).")


async def test_what_resolved_or_was_taken_during_the_window_pages_nobody_at_its_end(
    start: Start,
) -> None:
    api = await start()
    await add(api, team="payments", **{"for": "1h"})
    first = await api.fire(LABELS)
    second = await api.fire(OTHER)
    await api.settle()
    await resolve_alert(api, LABELS)  # Alertmanager resolved it in the window
    code, _ = await api.call("POST", f"/api/v1/incidents/{second}/ack")
    assert code == 200
    await api.clock.jump(2 * 60 * MINUTE)
    await api.settle()
    assert api.paged() == []
    assert kinds(await timeline(api, first), "maintenance_ended") == []


async def test_deleting_a_window_lets_what_it_held_escalate_at_once(start: Start) -> None:
    api = await start()
    window = await add(api, team="payments", **{"for": "2h"})
    number = await api.fire()
    await api.settle()
    assert api.paged() == []
    code, body = await api.call("DELETE", f"/api/v1/maintenance/{window['id']}")
    assert (code, body) == (200, {"deleted": window["id"]})
    for _ in range(50):  # through the timer and the dispatcher's thread
        await api.settle()
        if api.paged():
            break
    assert api.paged() == ["ana"]
    assert kinds(await timeline(api, number), "maintenance_ended")
    code, body = await api.call("DELETE", f"/api/v1/maintenance/{window['id']}")
    assert (code, body["field"]) == (404, "id")
    code, body = await api.call("GET", "/api/v1/maintenance")
    assert body["windows"] == []


async def test_windows_and_held_incidents_survive_a_restart(start: Start) -> None:
    clock = FakeClock()
    api = await start(clock)
    await add(api, team="payments", **{"for": "1h"}, comment="kept")
    number = await api.fire()
    await api.settle()
    await api.daemon.stop()

    again = await start(clock)
    code, body = await again.call("GET", "/api/v1/maintenance")
    assert [(w["id"], w["comment"]) for w in body["windows"]] == [(1, "kept")]
    await clock.jump(30 * MINUTE)
    await again.fire(OTHER)  # still held after the restart
    await again.settle()
    assert again.paged() == []
    await clock.jump(30 * MINUTE)
    await again.settle()
    assert sorted(again.paged()) == ["ana"]  # both incidents: one bundled page to ana
    assert kinds(await timeline(again, number), "maintenance_ended")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"team": "nobody", "for": "1h"}, "team"),
        ({"for": "1h"}, "team"),
        ({"matchers": ["cluster=~("], "for": "1h"}, "matchers[0]"),
        ({"matchers": ['a="b"', 'a=~"(a)\\1"'], "for": "1h"}, "matchers[1]"),
        ({"matchers": ["a=~" + "(" * 5000 + ")" * 5000], "for": "1h"}, "matchers[0]"),
        ({"matchers": "cluster=eu1", "for": "1h"}, "matchers"),
        ({"team": "payments"}, "end"),
        ({"team": "payments", "for": "1h", "end": "2030-01-01T00:00:00Z"}, "end"),
        ({"team": "payments", "for": "soon"}, "for"),
        ({"team": "payments", "end": "2020-01-01T00:00:00Z"}, "end"),
        ({"team": "payments", "start": "2026-01-05T12:00:00", "for": "1h"}, "start"),
        ({"team": "payments", "start": "2026-01-05T12:00:00Z",
          "end": "2026-01-05T11:00:00Z"}, "end"),
        ({"team": "payments", "for": "1h", "teams": "x"}, "teams"),
        ({"team": "payments", "for": "1h", "comment": 3}, "comment"),
    ],
)
async def test_bad_windows_are_400s_naming_the_field(
    start: Start, body: dict[str, Any], field: str
) -> None:
    api = await start()
    code, answer = await api.call("POST", "/api/v1/maintenance", body)
    assert (code, answer["field"]) == (400, field), answer
    code, answer = await api.call("POST", "/api/v1/maintenance", {"for": "1h"}, token=None)
    assert code == 401


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        ("{name: a, team: nobody, start: 2026-01-01T00:00:00Z, end: 2026-01-02T00:00:00Z}",
         "maintenance[0].team", "unknown team 'nobody'"),
        ("{name: a, start: 2026-01-01T00:00:00Z, end: 2026-01-02T00:00:00Z}",
         "maintenance[0]", "a window needs a team, matchers, or both"),
        ("{name: a, team: payments, start: 2026-01-02T00:00:00Z, end: 2026-01-01T00:00:00Z}",
         "maintenance[0].end", "end must be after start"),
        ("{name: a, team: payments, start: 2026-01-01T00:00:00, end: 2026-01-02T00:00:00Z}",
         "maintenance[0].start", "time zone"),
        ("{name: a, matchers: ['a=~('], start: 2026-01-01T00:00:00Z, "
         "end: 2026-01-02T00:00:00Z}", "maintenance[0].matchers[0]", "regex"),
        ("{name: a, matchers: ['a=~\"(a)\\\\1\"'], start: 2026-01-01T00:00:00Z, "
         "end: 2026-01-02T00:00:00Z}", "maintenance[0].matchers[0]",
         "invalid escape sequence: \\1"),
    ],
)
def test_config_errors_name_file_line_and_key(
    tmp_path: Path, entry: str, key: str, message: str
) -> None:
    path = maintenance_config(tmp_path, f"maintenance:\n  - {entry}\n")
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    [problem] = caught.value.problems
    assert (problem.file, problem.key, problem.line) == (
        str(path), key, path.read_text().count("\n"))
    assert message in problem.message


async def test_cli_adds_lists_and_deletes_windows(start: Start) -> None:
    api = await start()
    flags = ("--url", api.url, "--token", API_TOKEN)
    code, out = await run_cli("maintenance", "add", "--team", "payments", "--matcher",
                              'cluster="eu1"', "--for", "2h", "--comment", "upgrade", *flags)
    assert code == 0, out
    assert out.startswith("maintenance window #1 from ")
    code, out = await run_cli("maintenance", "list", *flags)
    assert code == 0, out
    assert '"matchers": ["cluster=\\"eu1\\""]' in out
    assert '"comment": "upgrade"' in out
    code, out = await run_cli("maintenance", "delete", "1", *flags)
    assert (code, out.strip()) == (0, "maintenance window #1 deleted")
    code, out = await run_cli("maintenance", "delete", "1", *flags)
    assert code == 1
    assert "HTTP 404" in out


async def test_two_windows_over_one_incident_resume_it_once_after_the_later(
    start: Start,
) -> None:
    api = await start()
    await add(api, team="payments", **{"for": "10m"})
    number = await api.fire()
    await api.settle()
    await add(api, matchers=['cluster="eu1"'], **{"for": "30m"})
    await api.clock.jump(15 * MINUTE)  # the first ended: the second holds it still
    await api.settle()
    assert api.paged() == []
    await api.clock.jump(30 * MINUTE)
    await api.settle()
    assert api.paged().count("ana") == 1  # one resumption, after the later window
    events = await timeline(api, number)
    assert [e["detail"]["window"] for e in kinds(events, "maintenance_ended")] == ["#2"]


async def test_the_web_page_shows_windows_and_heartbeats(start: Start) -> None:
    api = await start(extra="heartbeats: [{name: nightly-job, every: 1h, team: payments, "
                            "severity: SEV3}]\n")
    await add(api, team="payments", matchers=['cluster="eu1"'], **{"for": "1h"},
              comment=HOSTILE)
    code, _ = await api.call("POST", "/api/v1/heartbeats/nightly-job")
    assert code == 200
    browser = Browser(api)
    try:
        await browser.sign_in()
        code, page = await browser.get("/")
    finally:
        await browser.session.close()
    assert code == 200
    maintenance = page[page.index('<table id="maintenance">'):]
    assert "#1 (now)" in maintenance
    assert "cluster=&#34;eu1&#34;" in maintenance
    assert HOSTILE not in page  # the comment is escaped
    beats = page[page.index('<table id="heartbeats">'):page.index('<table id="maintenance">')]
    assert "nightly-job" in beats
    assert '<td class="heartbeat-ok">ok</td>' in beats


async def test_a_reload_that_drops_a_window_lets_what_it_held_escalate(
    start: Start, tmp_path: Path
) -> None:
    window = (f"maintenance: [{{name: all-day, team: payments, start: {START.isoformat()}, "
              f"end: {(START + 24 * 60 * MINUTE).isoformat()}}}]\n")
    api = await start(extra=window)
    number = await api.fire()
    await api.settle()
    assert api.paged() == []
    maintenance_config(tmp_path)  # the same file without the window
    assert api.daemon.reload()
    for _ in range(50):  # the reload's look again runs as a task, then through the timer
        await api.settle()
        if api.paged():
            break
    assert api.paged() == ["ana"]
    [ended] = kinds(await timeline(api, number), "maintenance_ended")
    assert ended["detail"]["window"] == "all-day"
