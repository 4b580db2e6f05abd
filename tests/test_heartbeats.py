"""Heartbeats (a dead man's switch) on a fake clock through the real store, timer loop,
escalation and dispatcher: a `Watchdog` alert or a cron job's POST that stops arriving opens
an incident for the heartbeat's team, which resolves when it arrives again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.alertmanager.matchers import parse_matcher
from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.access import Scope
from receiver.core.errors import ConfigError
from receiver.core.model import Alert, AlertStatus
from receiver.heartbeats import domain
from receiver.heartbeats.domain import Heartbeat, State
from receiver.testing.clock import FakeClock
from receiver.testing.notifier import RecordingNotifier
from tests.harness import API_TOKEN, TOKEN, write_config
from tests.test_api import LABELS, Api, run_cli

MINUTE = timedelta(minutes=1)
WATCHDOG = {"alertname": "Watchdog", "severity": "none", "prometheus": "monitoring/k8s"}
HEARTBEATS = """heartbeats:
  - name: watchdog
    every: 5m
    team: payments
    severity: SEV1
    matchers: ['alertname="Watchdog"']
  - name: nightly-backup
    every: 1h
    team: platform
    severity: SEV3
api: {tokens: [{name: e2e, token: e2e-api-token},
               {name: cron, token: cron-token, scope: heartbeat}]}
"""


def heartbeat_config(directory: Path, extra: str = HEARTBEATS) -> Path:
    path = write_config(directory / "ackd.yaml", "127.0.0.1:9", step_delay="5m")
    text = path.read_text().replace(
        "api: {tokens: [{name: e2e, token: e2e-api-token}]}\n", "")
    path.write_text(text + extra)
    return path


Start = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    daemons: list[Daemon] = []

    async def started(clock: FakeClock | None = None) -> Api:
        loaded = config_module.load(heartbeat_config(tmp_path))
        loaded = replace(loaded, listen_port=0, data_dir=tmp_path / "data")
        clock = clock or FakeClock()
        notifier = RecordingNotifier()
        daemon = Daemon(loaded, clock=clock, notifier=notifier,
                        config_path=tmp_path / "ackd.yaml")
        await daemon.start()
        daemons.append(daemon)
        return Api(daemon, notifier, clock)

    yield started
    for daemon in daemons:
        if daemon.services.ready and not daemon.services.draining:
            await daemon.stop()


async def watchdog(api: Api, status: AlertStatus = AlertStatus.FIRING) -> dict[str, Any]:
    """Alertmanager's Watchdog notification, with another firing alert beside it."""
    starts = api.clock.now() - timedelta(hours=1)
    alert = Alert(fingerprint_of(WATCHDOG), status, WATCHDOG, {}, starts,
                  api.clock.now() if status is AlertStatus.RESOLVED else None)
    code, body = await api.call("POST", "/api/v1/alerts", build_webhook([alert]), token=TOKEN)
    assert code == 200, body
    return dict(body)


async def listed(api: Api) -> dict[str, dict[str, Any]]:
    code, body = await api.call("GET", "/api/v1/heartbeats")
    assert code == 200, body
    return {h["name"]: h for h in body["heartbeats"]}


async def incidents(api: Api, route: str = "heartbeat/watchdog") -> list[dict[str, Any]]:
    """The incidents of one route, oldest first (the cron job's heartbeat is late too after
    an hour without its POST)."""
    code, body = await api.call("GET", "/api/v1/incidents")
    assert code == 200
    return [i for i in reversed(body["incidents"]) if i["route_id"] == route]


async def test_late_watchdog_opens_an_incident_for_its_team_and_escalates(start: Start) -> None:
    api = await start()
    assert (await watchdog(api))["incidents"] == []  # a heartbeat opens nothing
    await api.clock.jump(4 * MINUTE)
    await watchdog(api)
    await api.clock.jump(5 * MINUTE - timedelta(seconds=1))
    await api.settle()
    assert await incidents(api) == []  # 4:59 since the last arrival: not late yet
    assert (await listed(api))["watchdog"]["state"] == "ok"

    await api.clock.jump(timedelta(seconds=1))
    await api.settle()
    [found] = await incidents(api)
    assert (found["team"], found["severity"], found["state"]) == ("payments", "SEV1", "triggered")
    assert "heartbeat watchdog is late" in found["summary"]
    assert api.paged() == ["ana"]  # the policy's first step: payments' primary on call
    hb = (await listed(api))["watchdog"]
    assert (hb["state"], hb["incident"]) == ("late", found["id"])
    await api.clock.jump(5 * MINUTE)  # the policy's next step, as for any incident
    await api.settle()
    assert api.paged() == ["ana", "bo"]
    assert len(await incidents(api)) == 1  # still late: the same incident, not another


async def test_a_returned_heartbeat_resolves_its_incident(start: Start) -> None:
    api = await start()
    await watchdog(api)
    await api.clock.jump(6 * MINUTE)
    await api.settle()
    [opened] = await incidents(api)
    await watchdog(api)
    await api.settle()
    [found] = await incidents(api)
    assert found["id"] == opened["id"]
    assert (found["state"], found["resolved_by"]) == ("resolved", "alertmanager")
    assert (await listed(api))["watchdog"]["state"] == "ok"
    # And the wait starts again from this arrival.
    await api.clock.jump(5 * MINUTE - timedelta(seconds=1))
    await api.settle()
    assert len(await incidents(api)) == 1


async def test_a_flapping_heartbeat_opens_one_incident_per_absence(start: Start) -> None:
    api = await start()
    await watchdog(api)
    for absences in range(3):
        # Arrivals just in time keep it quiet...
        for _ in range(3):
            await api.clock.jump(5 * MINUTE - timedelta(seconds=1))
            await watchdog(api)
        await api.settle()
        assert len(await incidents(api)) == absences
        # ...a gap opens an incident, the next arrival resolves it.
        await api.clock.jump(7 * MINUTE)
        await api.settle()
        await watchdog(api)
        await api.settle()
    found = await incidents(api)
    assert [i["state"] for i in found] == ["resolved"] * 3
    # Each absence is its own episode: each incident links to the one before.
    assert [i["previous_id"] for i in found] == [None, found[0]["id"], found[1]["id"]]
    for number in (i["id"] for i in found):  # each paged once (its first step), then resolved
        code, body = await api.call("GET", f"/api/v1/incidents/{number}")
        kinds = [e["kind"] for e in body["timeline"]]
        assert kinds.count("step_fired") == 1, kinds


async def test_a_resolved_watchdog_is_no_arrival(start: Start) -> None:
    api = await start()
    await watchdog(api)
    await api.clock.jump(4 * MINUTE)
    await watchdog(api, AlertStatus.RESOLVED)  # taken by the heartbeat, opens nothing
    await api.clock.jump(MINUTE)
    await api.settle()
    [found] = await incidents(api)
    assert found["route_id"] == "heartbeat/watchdog"


async def test_other_alerts_beside_the_watchdog_are_ingested(start: Start) -> None:
    api = await start()
    starts = api.clock.now()
    alerts = [Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, starts, None)
              for labels in (WATCHDOG, LABELS)]
    body = build_webhook(alerts)
    for _ in range(2):  # the resend too: the memo of bodies must not skip the heartbeat
        await api.clock.jump(4 * MINUTE)
        code, answer = await api.call("POST", "/api/v1/alerts", body, token=TOKEN)
        assert code == 200, answer
        assert len(answer["incidents"]) == 1
    await api.clock.jump(4 * MINUTE)
    await api.settle()
    assert await incidents(api) == []  # the watchdog arrived in both
    code, body = await api.call("GET", "/api/v1/incidents")
    [other] = [i for i in body["incidents"] if not i["route_id"].startswith("heartbeat/")]
    assert (other["summary"], other["team"]) == ("PaymentApiDown", "payments")


async def test_a_cron_job_posts_with_its_own_scope(start: Start) -> None:
    api = await start()
    assert (await api.call("POST", "/api/v1/heartbeats/nightly-backup", token="cron-token"))[0] \
        == 200
    code, body = await api.call("POST", "/api/v1/heartbeats/nope", token="cron-token")
    assert (code, body["field"]) == (404, "name")
    assert "nightly-backup" in body["error"]
    # The cron token can do nothing else.
    code, body = await api.call("GET", "/api/v1/incidents", token="cron-token")
    assert (code, body["field"]) == (403, "Authorization")
    assert body["scope"] == "read"
    code, body = await api.call("POST", "/api/v1/heartbeats/nightly-backup", token="wrong")
    assert code == 401
    code, _ = await api.call("POST", "/api/v1/heartbeats/nightly-backup", token=API_TOKEN)
    assert code == 200  # an admin token may post too
    hb = (await listed(api))["nightly-backup"]
    assert hb["last_arrival"] == api.clock.now().isoformat().replace("+00:00", "Z")
    await api.clock.jump(timedelta(hours=1))
    await api.settle()
    [found] = await incidents(api, "heartbeat/nightly-backup")
    assert (found["team"], found["severity"]) == ("platform", "SEV3")
    assert (await api.call("POST", "/api/v1/heartbeats/nightly-backup",
                           token="cron-token"))[0] == 200
    await api.settle()
    assert (await incidents(api, "heartbeat/nightly-backup"))[0]["state"] == "resolved"


async def test_arrivals_and_late_incidents_survive_a_restart(start: Start) -> None:
    clock = FakeClock()
    api = await start(clock)
    await watchdog(api)
    await clock.jump(6 * MINUTE)
    await api.settle()
    arrived = (await listed(api))["nightly-backup"]
    assert arrived["last_arrival"] is None
    await api.daemon.stop()

    again = await start(clock)
    hb = (await listed(again))["watchdog"]
    assert hb["state"] == "late"  # its incident is still open
    assert hb["last_arrival"] == (clock.now() - 6 * MINUTE).isoformat().replace("+00:00", "Z")
    await watchdog(again)
    await again.settle()
    [found] = await incidents(again)
    assert found["state"] == "resolved"


async def test_a_restart_counts_the_wait_from_the_start_not_from_before(start: Start) -> None:
    clock = FakeClock()
    api = await start(clock)
    await watchdog(api)
    await api.daemon.stop()
    await clock.jump(4 * MINUTE)  # ackd down: nobody could see an arrival
    again = await start(clock)
    await clock.jump(4 * MINUTE)
    await again.settle()
    assert await incidents(again) == []  # 8 minutes since the last arrival, 4 since start
    await clock.jump(MINUTE)
    for _ in range(50):  # the store's commit runs on a thread: slow on a loaded machine
        await again.settle()
        if await incidents(again):
            break
    assert len(await incidents(again)) == 1


async def test_heartbeat_age_on_metrics(start: Start) -> None:
    api = await start()
    await watchdog(api)
    await api.clock.jump(90)
    code, text = await api.call("GET", "/metrics")
    assert code == 200
    assert 'ackd_heartbeat_age_seconds{heartbeat="watchdog"} 90.0' in text
    assert 'ackd_heartbeat_interval_seconds{heartbeat="watchdog"} 300.0' in text
    assert 'ackd_heartbeat_age_seconds{heartbeat="nightly-backup"} 90.0' in text


def test_domain_states_and_due_times() -> None:
    beat = Heartbeat("w", timedelta(minutes=5), "t", "SEV1", "p",
                     (parse_matcher('alertname="Watchdog"'),))
    start = FakeClock().now()
    assert domain.state(beat, None, start, start) is State.WAITING
    assert domain.state(beat, None, start, start + 5 * MINUTE) is State.LATE
    assert domain.state(beat, start, start, start + MINUTE) is State.OK
    # An arrival from before the start counts from the start.
    assert domain.due(beat.every, start - MINUTE, start) == start + 5 * MINUTE
    assert domain.due(beat.every, start + MINUTE, start) == start + 6 * MINUTE
    other = Heartbeat("cron", timedelta(hours=1), "t", "SEV1", "p")  # no matchers: API only
    assert not other.matches({})
    resolved = Alert("f", AlertStatus.RESOLVED, WATCHDOG, {}, start, start)
    firing = Alert("g", AlertStatus.FIRING, WATCHDOG, {}, start, None)
    plain = Alert("h", AlertStatus.FIRING, LABELS, {}, start, None)
    split = domain.split([beat, other], [resolved, firing, plain])
    assert (split.arrived, split.rest, split.taken) == (frozenset({"w"}), [plain], 2)


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        ("{name: a, every: 5m, team: nobody, severity: SEV1}", "heartbeats[0].team",
         "unknown team 'nobody'"),
        ("{name: a, every: 5m, team: payments, severity: SEV9}", "heartbeats[0].severity",
         "unknown severity 'SEV9'"),
        ("{name: a, every: 5m, team: payments, severity: SEV1, policy: x}",
         "heartbeats[0].policy", "unknown policy 'x'"),
        ("{name: a, every: 0s, team: payments, severity: SEV1}", "heartbeats[0].every",
         "every must be longer than 0s"),
        ("{name: a, every: 5m, team: payments, severity: SEV1, matchers: ['a=~(']}",
         "heartbeats[0].matchers[0]", "regex"),
    ],
)
def test_config_errors_name_file_line_and_key(
    tmp_path: Path, entry: str, key: str, message: str
) -> None:
    path = heartbeat_config(tmp_path, f"heartbeats:\n  - {entry}\n")
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    [problem] = caught.value.problems
    assert (problem.key, problem.line) == (key, path.read_text().count("\n"))
    assert message in problem.message


async def test_cli_lists_heartbeats_with_last_arrival_and_state(start: Start) -> None:
    api = await start()
    await watchdog(api)
    arrived = api.clock.now().isoformat().replace("+00:00", "Z")
    await api.clock.jump(timedelta(hours=1))
    await api.settle()
    [late] = await incidents(api, "heartbeat/nightly-backup")
    code, out = await run_cli("heartbeats", "--url", api.url, "--token", API_TOKEN)
    assert code == 0, out
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "STATE", "LAST", "ARRIVAL", "LATE", "AT", "INCIDENT"]
    assert [r.split()[:3] for r in rows] == [
        ["watchdog", "late", arrived], ["nightly-backup", "late", "never"]]
    assert rows[1].split()[-1] == f"#{late['id']}"
    code, out = await run_cli("heartbeats", "--url", api.url, "--token", "cron-token")
    assert code == 1
    assert "HTTP 403" in out


def test_the_heartbeat_scope_stands_apart_from_the_ranked_ones() -> None:
    assert Scope.ADMIN.grants(Scope.HEARTBEAT)
    assert Scope.HEARTBEAT.grants(Scope.HEARTBEAT)
    assert not any(Scope.HEARTBEAT.grants(s) for s in (Scope.READ, Scope.RESPOND, Scope.ADMIN))
    assert not Scope.RESPOND.grants(Scope.HEARTBEAT)
    assert not Scope.READ.grants(Scope.HEARTBEAT)
    assert Scope.ADMIN.grants(Scope.RESPOND)
    assert Scope.RESPOND.grants(Scope.READ)


async def test_an_arrival_another_replica_recorded_keeps_it_from_going_late(
    start: Start,
) -> None:
    """Replicas on one database each wait for each heartbeat: an arrival another one took
    (written to the store, not seen here) counts when the deadline comes."""
    api = await start()
    await watchdog(api)
    await api.clock.jump(4 * MINUTE)
    elsewhere = api.clock.now()
    await api.daemon.store.write(lambda tx: tx.heartbeats_arrived(["watchdog"], elsewhere))
    await api.clock.jump(2 * MINUTE)  # 6 minutes after the arrival this ackd saw
    await api.settle()
    assert await incidents(api) == []
    assert (await listed(api))["watchdog"]["last_arrival"] is not None
    await api.clock.jump(3 * MINUTE + timedelta(seconds=1))  # 5 minutes after the other one
    for _ in range(50):
        await api.settle()
        if await incidents(api):
            break
    assert len(await incidents(api)) == 1


async def test_the_late_line_says_never_or_when_it_last_arrived(
    start: Start, caplog: pytest.LogCaptureFixture,
) -> None:
    """It said "nothing since" ackd's start, to the microsecond, for a heartbeat that never
    came, while its incident said "never arrived"."""
    caplog.set_level("WARNING", logger="receiver.heartbeats.service")
    api = await start()
    started = api.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    await api.clock.jump(5 * MINUTE)
    await api.settle()
    await api.clock.jump(MINUTE)
    await watchdog(api)
    arrived = api.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    await api.clock.jump(5 * MINUTE)
    await api.settle()
    lines = [r.getMessage() for r in caplog.records if "is late" in r.getMessage()]
    assert f"heartbeat watchdog is late: never arrived since ackd started at {started}," \
        " expected every 5m" in lines
    assert f"heartbeat watchdog is late: last arrived at {arrived}, expected every 5m" in lines
