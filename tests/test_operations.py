"""What an operator watches and does: the metrics beyond the incident ones (webhook latency,
reload state, build info), POST /-/reload and its answers, and `--log-format json`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from receiver import __version__
from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app import daemon as daemon_module
from receiver.app.daemon import Daemon
from receiver.cli import remote
from receiver.cli.local import _Handoff, _logging_off_the_loop
from receiver.config import build as config_module
from receiver.config.model import Config
from receiver.core.errors import StoreUnavailable
from receiver.core.model import Alert, AlertStatus
from receiver.core.oneline import EscapeArgs
from receiver.escalation.keys import contact_digest
from receiver.ingest.regroup import regroup_line
from receiver.telemetry.logformat import JsonFormatter, fields
from receiver.telemetry.loopmetrics import LoopCounter, LoopHistogram
from receiver.telemetry.metrics import FAST_BUCKETS
from receiver.testing import FakeClock, RecordingNotifier
from receiver.web import health
from receiver.web.openapi import SCHEMAS
from tests.harness import (
    ANA_TOKEN,
    API_TOKEN,
    READY_WITHIN,
    ROOT,
    TOKEN,
    Ackd,
    Process,
    free_port,
    http_ok,
    wait_until,
    write_config,
)
from tests.test_api import Api, start_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path, reloadable=True)
    yield started
    await started.daemon.stop()


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample in the exposition text, None when it is absent."""
    for line in metrics.splitlines():
        found = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if found and dict(re.findall(r'(\w+)="([^"]*)"', found.group(1) or "")) == labels:
            return float(found.group(2))
    return None


async def scrape(api: Api) -> str:
    status, text = await api.call("GET", "/metrics", token=None)
    assert status == 200
    return str(text)


async def test_webhook_latency_is_observed_by_result(api: Api) -> None:
    await api.fire()
    assert (await api.call("POST", "/api/v1/alerts", raw=b"{}", token="nope"))[0] == 401
    assert (await api.call("POST", "/api/v1/alerts", raw=b"{", token=TOKEN))[0] == 400
    metrics = await scrape(api)
    for result in ("accepted", "unauthorized", "bad_request"):
        assert sample(metrics, "ackd_webhook_duration_seconds_count", result=result) == 1.0
        assert sample(metrics, "ackd_webhooks_total", result=result) == 1.0
    assert sample(metrics, "ackd_webhook_duration_seconds_count", result="error") is None


@pytest.mark.parametrize(
    ("labelnames", "buckets"),
    [(("result",), FAST_BUCKETS), ((), (1, 2, 4, 8)), ((), (0.5, float("inf")))],
)
def test_a_loop_histogram_reads_as_a_prometheus_histogram(
    labelnames: tuple[str, ...], buckets: tuple[float, ...],
) -> None:
    """The histograms observed on the loop (the webhook's and the commit's) give /metrics the
    samples prometheus_client's Histogram gives for the same observations, bounds included."""
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("x_seconds", "doc", labelnames, buckets=buckets, registry=theirs)
    loop = LoopHistogram("x_seconds", "doc", labelnames, buckets=buckets, registry=ours)
    created = re.compile(r"^(x_seconds_created\S*) \S+$", re.MULTILINE)
    assert created.sub(r"\1", generate_latest(ours).decode()) == created.sub(
        r"\1", generate_latest(theirs).decode())
    values = [0.0, 0.0004, 0.0005, 0.0006, 0.001, 0.3, 1, 1.0, 2, 3.5, 8, 9.99, 10, 400, 1e9]
    for n, value in enumerate(values):
        label = ("ok", "bad")[n % 2:n % 2 + 1] if labelnames else ()
        (histogram.labels(*label) if label else histogram).observe(value)
        (loop.labels(*label) if label else loop).observe(value)
    text = generate_latest(ours).decode()
    assert created.sub(r"\1", text) == created.sub(r"\1", generate_latest(theirs).decode())
    assert sample(text, "x_seconds_count", **dict(zip(labelnames, ["ok"], strict=False))) == (
        8.0 if labelnames else 15.0)


@pytest.mark.parametrize(
    ("name", "labelnames"), [("x", ("team", "severity")), ("x_total", ()), ("x", ())],
)
def test_a_loop_counter_reads_as_a_prometheus_counter(
    name: str, labelnames: tuple[str, ...],
) -> None:
    """The counters moved on the loop give /metrics the samples prometheus_client's Counter
    gives for the same increments, and refuse what it refuses."""
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter(name, "doc", labelnames, registry=theirs)
    loop = LoopCounter(name, "doc", labelnames, registry=ours)
    created = re.compile(r"^(x_created\S*) \S+$", re.MULTILINE)
    assert created.sub(r"\1", generate_latest(ours).decode()) == created.sub(
        r"\1", generate_latest(theirs).decode())
    for n, amount in enumerate([1, 1, 2.5, 0, 10]):
        label = ("payments", ("SEV1", "SEV2")[n % 2]) if labelnames else ()
        (counter.labels(*label) if label else counter).inc(amount)
        (loop.labels(*label) if label else loop).inc(amount)
    text = generate_latest(ours).decode()
    assert created.sub(r"\1", text) == created.sub(r"\1", generate_latest(theirs).decode())
    assert sample(text, "x_total", **dict(zip(labelnames, ["payments", "SEV1"], strict=False))) \
        == (13.5 if labelnames else 14.5)
    with pytest.raises(ValueError, match="non-negative"):
        (loop.labels("payments", "SEV1") if labelnames else loop).inc(-1)
    with pytest.raises(ValueError, match="labels"):
        loop.labels("payments", "SEV1", "extra")


async def test_build_info_names_the_version(api: Api) -> None:
    metrics = await scrape(api)
    python = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert sample(metrics, "ackd_build_info", version=__version__, python=python) == 1.0


async def test_open_incidents_are_read_from_the_store_at_each_scrape(api: Api) -> None:
    number = await api.fire()
    await api.settle()
    metrics = await scrape(api)
    labels = {"team": "payments", "severity": "SEV1"}
    assert sample(metrics, "ackd_open_incidents", state="triggered", **labels) == 1.0
    assert (await api.call("POST", f"/api/v1/incidents/{number}/ack"))[0] == 200
    metrics = await scrape(api)
    assert sample(metrics, "ackd_open_incidents", state="acknowledged", **labels) == 1.0
    assert sample(metrics, "ackd_open_incidents", state="triggered", **labels) == 0.0
    assert (await api.call("POST", f"/api/v1/incidents/{number}/resolve"))[0] == 200
    metrics = await scrape(api)
    # Every configured team, severity and open state is there, at 0 when none is open.
    for team in ("payments", "platform"):
        for severity in ("SEV1", "SEV2", "SEV3", "SEV4"):
            for state in ("triggered", "acknowledged"):
                assert sample(metrics, "ackd_open_incidents", team=team, severity=severity,
                              state=state) == 0.0
    assert "resolved" not in re.findall(r'ackd_open_incidents\{.*state="(\w+)"', metrics)


async def test_reload_needs_an_api_token(api: Api) -> None:
    status, body = await api.call("POST", "/-/reload", token=None)
    assert (status, body["field"]) == (401, "Authorization")
    assert (await api.call("POST", "/-/reload", token=TOKEN))[0] == 401  # the webhook's


async def test_a_refused_reload_names_file_line_and_key_and_keeps_the_config(
    api: Api,
) -> None:
    path = api.daemon.config_path
    assert isinstance(path, Path)
    loaded_at = sample(await scrape(api), "ackd_config_last_reload_success_timestamp_seconds")
    assert loaded_at == api.clock.now().timestamp()
    good = path.read_text()
    assert sample(await scrape(api), "ackd_config_hash") == _hash_of(good)
    path.write_text(good.replace("policy: standard\n  group_by", "policy: nonesuch\n  group_by"))

    status, body = await api.call("POST", "/-/reload")
    assert status == 422, body
    line = 1 + good[: good.index("policy: standard\n  group_by")].count("\n")
    assert body == {"error": "reload refused, the running config is kept", "problems": [
        {"file": str(path), "line": line, "key": "route.policy",
         "message": "unknown policy 'nonesuch'"}]}
    jsonschema.validate(body, SCHEMAS["ReloadRefused"])  # as the API's document says
    metrics = await scrape(api)
    assert sample(metrics, "ackd_config_last_reload_successful") == 0.0
    assert sample(metrics, "ackd_config_last_reload_success_timestamp_seconds") == loaded_at
    assert sample(metrics, "ackd_config_hash") == _hash_of(good)  # the file that runs
    await api.fire()  # the running config still routes and pages
    await api.settle()
    assert api.paged() == ["ana"]

    await api.clock.jump(timedelta(minutes=1))
    path.write_text(good.replace("name: ana,", "name: anna,").replace("[ana]", "[anna]"))
    status, body = await api.call("POST", "/-/reload")
    assert (status, body["status"], body["changed"]) == (200, "reloaded", True)
    assert "anna" in api.daemon.config.users
    metrics = await scrape(api)
    assert sample(metrics, "ackd_config_last_reload_successful") == 1.0
    assert sample(metrics, "ackd_config_last_reload_success_timestamp_seconds") == \
        api.clock.now().timestamp()
    assert sample(metrics, "ackd_config_hash") == _hash_of(path.read_text()) != _hash_of(good)


def _hash_of(text: str) -> float:
    """What ackd_config_hash shows for a file (no variables, no `*_file`s): the first 48 bits
    of its published digest (tests/test_config_digest.py holds what that covers)."""
    return float(int(config_module.parse("ackd.yaml", text).published_digest()[:12], 16))


async def test_a_reload_of_the_same_file_says_nothing_changed(api: Api) -> None:
    status, body = await api.call("POST", "/-/reload")
    assert status == 200, body
    digest = api.daemon.config.published_digest()
    assert body == {"status": "reloaded", "changed": False,
                    "config_hash": {"before": digest, "after": digest},
                    "warnings": [], "file_checks": {"status": "checked"},
                    "open_incidents": {"status": "checked", "message": (
                        "the file is the running config: nothing was swapped in; what the"
                        " look at the open incidents found when ackd started with it is in"
                        " `warnings`")}}
    jsonschema.validate(body, SCHEMAS["Reloaded"])
    # The hash is the one /metrics shows (its first 48 bits).
    assert sample(await scrape(api), "ackd_config_hash") == float(int(digest[:12], 16))


async def test_a_reload_of_the_same_file_swaps_nothing_in_and_nothing_reacts(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deploy pipeline reloads on every run: when the file, its variables and its
    `*_file`s are as they were, the running Config stays (the same object), no subscriber
    hears of it (the memos, the handoffs' plan, the heartbeats' timers), and the look at the
    open incidents does not run, by POST /-/reload or by SIGHUP; the file's own checks do
    (test_an_unchanged_reload_warns_of_a_coverage_gap_come_nearer)."""
    await api.fire()
    await api.settle()
    running = api.daemon.config
    heard: list[Config] = []
    api.daemon.coordinator.subscribe(heard.append)
    looked: list[str] = []
    store = api.daemon.store
    for read in ("open_escalations", "open_firing_alerts", "open_contacts", "count_open",
                 "waiting_messages"):
        monkeypatch.setattr(store, read, lambda name=read: looked.append(name))
    monkeypatch.setattr(config_module, "warnings",
                        lambda *_: looked.append("warnings") or [])
    caplog.set_level(logging.INFO)

    status, body = await api.call("POST", "/-/reload")
    assert (status, body["changed"], body["open_incidents"]["status"]) == (200, False,
                                                                           "checked")
    assert api.daemon.reload()  # SIGHUP's: the file took, as it was
    await asyncio.gather(*api.daemon._tasks)  # the file's checks, nothing else
    assert api.daemon.config is running
    assert (heard, looked) == ([], ["warnings", "warnings"])
    digest = running.published_digest()[:12]
    said = [(r.levelname, r.getMessage(), getattr(r, "event", None)) for r in caplog.records
            if r.name == "receiver.app.daemon"]
    line = (f"configuration reloaded from {api.daemon.config_path}: unchanged (config hash"
            f" {digest}), the running config is kept and the open incidents are not looked"
            " at again")
    assert said == [("INFO", line, "config_unchanged")] * 2

    monkeypatch.undo()
    path = api.daemon.config_path
    assert isinstance(path, Path)
    path.write_text(path.read_text() + "# edited\n")  # another file, if alike: swapped in
    assert api.daemon.reload()
    assert api.daemon.config is not running
    assert heard == [api.daemon.config]



async def test_a_reload_forgets_the_contact_urls_remembered_for_their_digests(
    api: Api,
) -> None:
    """escalation.keys.contact_digest remembers the URLs it was asked of, credentials and
    all: a config swapped in empties it, so a URL a reload rotated away is not kept."""
    await api.fire()
    await api.settle()
    assert contact_digest.cache_info().currsize > 0  # the page asked it
    path = api.daemon.config_path
    assert isinstance(path, Path)
    path.write_text(path.read_text() + "# rotated\n")
    assert api.daemon.reload()
    assert contact_digest.cache_info().currsize == 0

# A layer of the payments schedule whose first hole is on 2026-03-09, 07:00 to 08:00 in
# Amsterdam: bo's evenings follow New York's clocks, which move an hour three weeks before
# Amsterdam's (tests/test_schedule_gaps.py's "follow").
FOLLOW_LAYER = (
    "      - {name: follow, rotations: [\n"
    "          {users: [ana], shift: 1w, start: 2026-01-01T00:00:00,\n"
    "           restrictions: [{start: '08:00', end: '20:00'}]},\n"
    "          {users: [bo], shift: 1w, start: 2026-01-01T00:00:00,\n"
    "           timezone: America/New_York, restrictions: [{start: '14:00', end: '02:00'}]}]}\n")


async def test_an_unchanged_reload_warns_of_a_coverage_gap_come_nearer(api: Api) -> None:
    """A schedule's hole more than 4 weeks ahead is no warning when the file is loaded; the
    same file reloaded once it is within 4 weeks is not swapped in (nothing changed), but
    its answer warns of the hole, as check-config would then."""
    path = api.daemon.config_path
    assert isinstance(path, Path)
    text = path.read_text()
    secondary = text.index("      - {name: secondary")
    secondary = text.index("\n", secondary) + 1
    path.write_text(text[:secondary] + FOLLOW_LAYER + text[secondary:])
    status, body = await api.call("POST", "/-/reload")
    assert (status, body["changed"], body["warnings"]) == (200, True, []), body
    running = api.daemon.config

    api.clock.set(datetime(2026, 2, 20, 9, tzinfo=UTC))  # 17 days before the hole
    status, body = await api.call("POST", "/-/reload")

    # Not looked at again: the look of the reload that swapped it in (nothing open) stands.
    assert (status, body["changed"], body["open_incidents"]["status"]) == (
        200, False, "checked")
    assert api.daemon.config is running
    line = 1 + text[:secondary].count("\n")
    assert body["warnings"] == [{
        "file": str(path), "line": line, "key": "schedules[0].layers[2]",
        "kind": "coverage_gap",
        "message": "warning: nobody is on call in layer 'follow' of schedule 'payments' from"
                   " 2026-03-09T07:00:00+01:00 to 2026-03-09T08:00:00+01:00 (the first"
                   " uncovered span in the next 28 days)"}]
    jsonschema.validate(body, SCHEMAS["Reloaded"])


def _renamed_without_payments_route(text: str) -> str:
    """Schedule `payments` renamed `pay-eu` (both teams moved to it), and the payments route
    removed: its alerts fall to the root route, team payments is reached by none."""
    text = text.replace("  - name: payments\n    timezone", "  - name: pay-eu\n    timezone")
    text = text.replace("schedule: payments", "schedule: pay-eu")
    route = """  routes:\n    - matchers: ['team="payments"']\n      team: payments\n"""
    return text.replace(route, "")


async def test_a_changed_reload_answers_every_warning_it_logs(
    api: Api, caplog: pytest.LogCaptureFixture,
) -> None:
    """What the file warns of (check-config's: a team no route leads to) and what it does to
    the open incidents (their alerts grouped elsewhere, their schedule read through the team)
    are in the answer, located as a refusal's problems are, each as the log says it."""
    number = await api.fire()
    await api.settle()
    path = api.daemon.config_path
    assert isinstance(path, Path)
    before = api.daemon.config.published_digest()
    text = _renamed_without_payments_route(path.read_text())
    path.write_text(text)
    caplog.set_level(logging.INFO)

    status, body = await api.call("POST", "/-/reload")
    assert status == 200, body
    after = api.daemon.config.published_digest()
    assert (body["status"], body["changed"]) == ("reloaded", True)
    assert body["config_hash"] == {"before": before, "after": after}
    assert before != after
    assert body["open_incidents"] == {"status": "checked"}
    team_line = 1 + text[: text.index("  - {name: payments, schedule")].count("\n")
    by_kind = {w["kind"]: w for w in body["warnings"]}
    assert sorted(by_kind) == ["config_regrouped", "config_unreached", "unrouted_team"]
    assert len(body["warnings"]) == 3
    jsonschema.validate(body, SCHEMAS["Reloaded"])
    assert by_kind["unrouted_team"] == {
        "kind": "unrouted_team", "file": str(path), "line": team_line, "key": "teams[0].name",
        "message": "warning: no route leads to team 'payments': no alert reaches it, and an"
                   " incident declared or a drill started for it is refused"}
    assert by_kind["config_unreached"] == {
        "kind": "config_unreached", "file": str(path), "line": None, "key": "(open incidents)",
        "message": f"1 open incident(s) name schedule payments, which this config removes:"
                   f" they page team payments's schedule pay-eu instead (#{number})",
        "incidents": [number], "incident_count": 1}
    regrouped = by_kind["config_regrouped"]
    assert (regrouped["line"], regrouped["key"]) == (None, "(open incidents)")
    assert (regrouped["incidents"], regrouped["incident_count"]) == ([number], 1)
    assert regrouped["message"].startswith("1 open incident(s) hold firing alerts this config"
                                           " groups under another key")
    # The log says each of them, as before the answer did.
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(logged) == sorted([
        f"{path}:{team_line}: teams[0].name: {by_kind['unrouted_team']['message']}",
        by_kind["config_unreached"]["message"], regrouped["message"]])


async def test_an_unchanged_reload_keeps_giving_what_the_running_configs_look_found(
    api: Api,
) -> None:
    """A deploy pipeline reloads on every run. The reload that swapped the running config
    in found open incidents it leaves paging elsewhere (ackd_config_warnings counts them,
    AckdConfigWarnings points to `ackd reload --status`); an unchanged reload after its look
    ended answered, and GET /-/reload then gave, the file's warning alone: what the look
    found was only in the log. It gives that look's findings, as it did while it ran."""
    await api.fire()
    await api.settle()
    path = api.daemon.config_path
    assert isinstance(path, Path)
    path.write_text(_renamed_without_payments_route(path.read_text()))
    changed = await _answered(api)
    found = sorted(w["kind"] for w in changed["warnings"])
    assert found == ["config_regrouped", "config_unreached", "unrouted_team"]

    unchanged = await _answered(api)
    assert unchanged["changed"] is False
    assert unchanged["open_incidents"] == {"status": "checked", "message": (
        "the file is the running config: nothing was swapped in; what the look at the open"
        " incidents found when the reload that swapped it in began it is in `warnings`")}
    assert sorted(w["kind"] for w in unchanged["warnings"]) == found
    now = await _answered(api, "GET")
    assert (now["changed"], sorted(w["kind"] for w in now["warnings"])) == (False, found)
    assert sample(await scrape(api), "ackd_config_warnings", kind="config_unreached") == 1.0


async def test_the_files_warnings_are_logged_at_start_as_a_reload_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """check-config's warnings (here a team no route leads to) were logged at reloads only: a
    daemon started with such a file said nothing until its first reload. The start logs the
    same lines with the same fields, from the document the file was read into."""
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9", step_delay="5m")
    path.write_text(_renamed_without_payments_route(path.read_text()))
    located, loaded = config_module.load_located(path)
    daemon = Daemon(replace(loaded, listen_port=0, data_dir=tmp_path / "data"),
                    clock=FakeClock(), notifier=RecordingNotifier(), config_path=path,
                    source=located)
    caplog.set_level(logging.INFO)

    def warned() -> list[tuple[str, str, str]]:
        return [(r.name, r.getMessage(), getattr(r, "event", "")) for r in caplog.records
                if r.levelno == logging.WARNING]

    await daemon.start()
    try:
        for task in list(daemon._tasks):
            await task
        text = path.read_text()
        line = 1 + text[: text.index("  - {name: payments, schedule")].count("\n")
        at_start = warned()
        assert at_start == [("receiver.app.daemon", (
            f"{path}:{line}: teams[0].name: warning: no route leads to team 'payments': no"
            " alert reaches it, and an incident declared or a drill started for it is"
            " refused"), "unrouted_team")]
        caplog.clear()
        path.write_text(text + "# edited\n")
        assert daemon.reload()
        for task in list(daemon._tasks):
            await task
        assert warned() == at_start
    finally:
        await daemon.stop()


async def _served(
    directory: Path, edit: Callable[[str], str] = lambda text: text,
    before: Callable[[Daemon], object] = lambda daemon: None,
) -> Api:
    """A daemon started as `ackd serve` starts one: from its file, which it reloads, and the
    document the file was read into, whose warnings the start checks. `edit` changes the
    test's file first, `before` the daemon before it starts; the store is the directory's,
    kept across daemons."""
    daemon, notifier, clock = _built(directory, edit)
    before(daemon)
    await daemon.start()
    return Api(daemon, notifier, clock)


def _built(
    directory: Path, edit: Callable[[str], str]
) -> tuple[Daemon, RecordingNotifier, FakeClock]:
    directory.mkdir(exist_ok=True)
    path = write_config(directory / "ackd.yaml", "127.0.0.1:9", step_delay="5m")
    path.write_text(edit(path.read_text()))
    located, loaded = config_module.load_located(path)
    clock, notifier = FakeClock(), RecordingNotifier()
    daemon = Daemon(replace(loaded, listen_port=0, data_dir=directory / "data"), clock=clock,
                    notifier=notifier, config_path=path, source=located)
    return daemon, notifier, clock


async def _open_one(directory: Path) -> int:
    """An incident opened under the test's file, left open in the directory's store."""
    first = await _served(directory)
    try:
        number = await first.fire()
        await first.settle()
    finally:
        await first.daemon.stop()
    return number


async def test_before_any_reload_get_reload_gives_what_the_start_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The start runs a reload's checks (the file's own, the look at the open incidents) and
    ackd_config_warnings counts what they find, but GET /-/reload answered 404 until a
    reload took and `ackd reload --status` said nothing was reloaded: what the last check of
    the running config found was in the log alone. It gives the start's checks, said to be
    the start's (`started`), and an unchanged reload gives the start's look as its own."""
    number = await _open_one(tmp_path)
    api = await _served(tmp_path, _renamed_without_payments_route)
    try:
        await asyncio.gather(*api.daemon._tasks)
        digest = api.daemon.config.published_digest()
        started = await _answered(api, "GET")
        assert {k: v for k, v in started.items() if k != "warnings"} == {
            "status": "started", "changed": False,
            "config_hash": {"before": digest, "after": digest},
            "file_checks": {"status": "checked"}, "open_incidents": {"status": "checked"},
            "at": api.clock.now().isoformat()}
        found = sorted(w["kind"] for w in started["warnings"])
        assert found == ["config_regrouped", "config_unreached", "unrouted_team"]
        metrics = await scrape(api)
        assert [sample(metrics, "ackd_config_warnings", kind=kind) for kind in found] == [1.0] * 3
        asked = argparse.Namespace(url=api.url, token=API_TOKEN, status=True)
        code = await asyncio.to_thread(remote.reload, asked)
        out, err = capsys.readouterr()
        assert (code, out) == (0, f"no reload since ackd started at {started['at']}, config"
                                  f" hash {digest[:12]}, 3 warning(s)\n")
        assert f"(#{number})" in err
        assert "teams[0].name: warning: no route leads" in err

        unchanged = await _answered(api)
        assert (unchanged["status"], unchanged["changed"]) == ("reloaded", False)
        assert unchanged["open_incidents"] == {"status": "checked", "message": (
            "the file is the running config: nothing was swapped in; what the look at the"
            " open incidents found when ackd started with it is in `warnings`")}
        assert sorted(w["kind"] for w in unchanged["warnings"]) == found
    finally:
        await api.daemon.stop()


async def test_a_start_look_past_its_limit_is_skipped_and_the_next_reload_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Past START_LOOK_LIMIT open incidents the start does not look at them, and its log line
    says a reload does; the look was recorded `checked`, as if it had found nothing, and a
    reload of the same file did not look either. It is `skipped`, saying why, and the next
    reload looks, an unchanged file's too."""
    number = await _open_one(tmp_path)
    monkeypatch.setattr(daemon_module, "START_LOOK_LIMIT", 0)
    caplog.set_level(logging.INFO)
    api = await _served(tmp_path, _renamed_without_payments_route)
    try:
        await asyncio.gather(*api.daemon._tasks)
        why = ("1 open incident(s) at start, more than the 0 the start looks at: the next"
               " reload (SIGHUP, ackd reload) looks at them")
        started = await _answered(api, "GET")
        assert started["open_incidents"] == {"status": "skipped", "message": why}
        assert [w["kind"] for w in started["warnings"]] == ["unrouted_team"]  # the file's
        assert [(r.levelname, r.getMessage()) for r in caplog.records
                if getattr(r, "event", "") == "config_look_skipped"] == [
            ("INFO", "not looking at what the config does to the open incidents: " + why)]

        unchanged = await _answered(api)
        assert unchanged["changed"] is False
        assert unchanged["open_incidents"] == {"status": "checked", "message": (
            "the file is the running config: nothing was swapped in; what the look at the"
            " open incidents found when a reload of it began it, the start having skipped its"
            " look (more open incidents than it looks at) is in `warnings`")}
        assert [r.getMessage() for r in caplog.records
                if getattr(r, "event", "") == "config_unchanged"] == [
            f"configuration reloaded from {api.daemon.config_path}: unchanged (config hash"
            f" {unchanged['config_hash']['after'][:12]}), the running config is kept; the"
            " start did not look at the open incidents, this reload does"]
        await asyncio.gather(*api.daemon._tasks)
        looked = await _answered(api, "GET")
        assert looked["open_incidents"]["status"] == "checked"
        assert sorted(w["kind"] for w in looked["warnings"]) == [
            "config_regrouped", "config_unreached", "unrouted_team"]
        assert any(f"(#{number})" in w["message"] for w in looked["warnings"])
        assert sample(await scrape(api), "ackd_config_warnings",
                      kind="config_unreached") == 1.0
    finally:
        await api.daemon.stop()


async def test_a_reload_behind_the_starts_look_says_the_start_began_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A changed reload while the start's look still runs waits for it; its answer said the
    look it waits for was "begun by an earlier reload"."""
    release = asyncio.Event()

    def hold(daemon: Daemon) -> None:
        read = daemon.store.open_firing_alerts

        async def held() -> list[tuple[int, str, dict[str, str]]]:
            await release.wait()
            return await read()

        monkeypatch.setattr(daemon.store, "open_firing_alerts", held)

    monkeypatch.setattr(health, "REPLY_WAIT", 0.05)
    api = await _served(tmp_path, before=hold)
    try:
        started = api.daemon.config.published_digest()
        path = api.daemon.config_path
        assert isinstance(path, Path)
        path.write_text(path.read_text() + "# edited\n")
        body = await _answered(api)
        assert body["open_incidents"] == {"status": "running", "message": (
            f"the look under config hash {started[:12]}, begun when ackd started, was still"
            " running at this reload: the look under this config follows it; what it finds"
            " goes to the log as WARNING lines, to GET /-/reload (ackd reload --status) and"
            " to ackd_config_warnings")}
    finally:
        release.set()
        await asyncio.gather(*api.daemon._tasks)
        await api.daemon.stop()


def _slow_look(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, list[str]]:
    """The look at the open incidents held at its read of their alerts until the event is
    set, each read noting the running config's digest; the answer waits 0.05 s for it."""
    store, release, reads = api.daemon.store, asyncio.Event(), []
    read = store.open_firing_alerts

    async def slow() -> list[tuple[int, str, dict[str, str]]]:
        reads.append(api.daemon.config.published_digest())
        await release.wait()
        return await read()

    monkeypatch.setattr(store, "open_firing_alerts", slow)
    monkeypatch.setattr(health, "REPLY_WAIT", 0.05)
    return release, reads


async def test_a_look_past_its_bound_is_answered_as_running_and_logged(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With many open incidents the look takes seconds: the answer does not wait past
    REPLY_WAIT for it, says it is running and where its warnings go, and they go there."""
    number = await api.fire()
    await api.settle()
    release, _ = _slow_look(api, monkeypatch)
    path = api.daemon.config_path
    assert isinstance(path, Path)
    path.write_text(_renamed_without_payments_route(path.read_text()))
    caplog.set_level(logging.INFO)
    status, body = await api.call("POST", "/-/reload")
    assert status == 200, body
    assert body["open_incidents"] == {"status": "running", "message": (
        "still looking at the open incidents: what it finds goes to the log as WARNING lines,"
        " to GET /-/reload (ackd reload --status) and to ackd_config_warnings")}
    assert [w["kind"] for w in body["warnings"]] == ["unrouted_team"]  # the file's own: known
    jsonschema.validate(body, SCHEMAS["Reloaded"])
    release.set()
    for task in list(api.daemon._tasks):
        await task
    events = [getattr(r, "event", "") for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(events) == ["config_regrouped", "config_unreached", "unrouted_team"]
    assert any(f"(#{number})" in r.getMessage() for r in caplog.records)


async def _answered(api: Api, method: str = "POST") -> dict[str, Any]:
    """/-/reload's answer, which must come within a second (REPLY_WAIT is 0.05 s here)."""
    status, body = await asyncio.wait_for(api.call(method, "/-/reload"), 1.0)
    assert status == 200, body
    jsonschema.validate(body, SCHEMAS["Reloaded"])
    return dict(body)


def _held(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The file's checks (config.build.warnings, on their thread) held until the event."""
    release, check = threading.Event(), config_module.warnings

    def held(*args: Any) -> list[Any]:
        release.wait(10)
        return check(*args)

    monkeypatch.setattr(config_module, "warnings", held)
    return release


async def test_a_reload_answers_within_its_bound_while_the_files_checks_run(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The answer waited for the file's checks with no bound (hourly rotations' weeks take
    seconds). It comes within REPLY_WAIT with what is done (the look: checked), the file's
    checks `running`; the file is swapped in whole meanwhile; once they end, their warning
    is logged, GET /-/reload (and `ackd reload --status`) gives it and
    ackd_config_warnings counts it."""
    status, body = await api.call("GET", "/-/reload")
    assert (status, body["status"]) == (200, "started")  # no reload yet: the start's checks
    number = await api.fire()
    await api.settle()
    monkeypatch.setattr(health, "REPLY_WAIT", 0.05)
    release = _held(monkeypatch)
    path = api.daemon.config_path
    assert isinstance(path, Path)
    path.write_text(_renamed_without_payments_route(path.read_text()))
    caplog.set_level(logging.INFO)
    try:
        body = await _answered(api)
        # Swapped in whole before anything was awaited: every reader has the new config.
        running = api.daemon.config
        assert body["config_hash"]["after"] == running.published_digest()
        assert api.daemon.services.config is running
        assert "pay-eu" in running.schedules
        assert "payments" not in running.schedules
        assert body["file_checks"] == {"status": "running", "message": (
            "still checking the file as check-config does: what it finds goes to the log as"
            " WARNING lines, to GET /-/reload (ackd reload --status) and to"
            " ackd_config_warnings")}
        assert body["open_incidents"] == {"status": "checked"}
        assert sorted(w["kind"] for w in body["warnings"]) == ["config_regrouped",
                                                                "config_unreached"]
        assert (await _answered(api, "GET"))["file_checks"]["status"] == "running"
        metrics = await scrape(api)
        assert sample(metrics, "ackd_config_warnings", kind="config_unreached") == 1.0
        assert sample(metrics, "ackd_config_warnings", kind="unrouted_team") is None
    finally:
        release.set()
    await asyncio.gather(*api.daemon._tasks)

    later = await _answered(api, "GET")
    assert later["at"] == api.clock.now().isoformat()
    assert later["file_checks"] == {"status": "checked"}
    assert sorted(w["kind"] for w in later["warnings"]) == [
        "config_regrouped", "config_unreached", "unrouted_team"]
    assert {k: later[k] for k in ("changed", "config_hash", "open_incidents")} == {
        k: body[k] for k in ("changed", "config_hash", "open_incidents")}
    assert sample(await scrape(api), "ackd_config_warnings", kind="unrouted_team") == 1.0
    assert "unrouted_team" in [getattr(r, "event", "") for r in caplog.records
                               if r.levelno == logging.WARNING]
    # `ackd reload --status`, in process (on a thread: the command runs its own loop).
    asked = argparse.Namespace(url=api.url, token=API_TOKEN, status=True)
    code = await asyncio.to_thread(remote.reload, asked)
    out, err = capsys.readouterr()
    after = api.daemon.config.published_digest()[:12]
    assert (code, out) == (0, f"last reload at {later['at']}, changed (config hash"
                              f" {body['config_hash']['before'][:12]} -> {after}),"
                              " 3 warning(s)\n")
    assert f"(#{number})" in err
    assert "teams[0].name: warning: no route leads" in err
    # SIGHUP's reload, whose answer is the log: GET /-/reload gives it too.
    path.write_text(path.read_text() + "# by SIGHUP\n")
    assert api.daemon.reload()
    await asyncio.gather(*api.daemon._tasks)
    hup = await _answered(api, "GET")
    assert hup["config_hash"] == {"before": body["config_hash"]["after"],
                                  "after": api.daemon.config.published_digest()}
    assert (hup["changed"], hup["open_incidents"]) == (True, {"status": "checked"})


async def test_a_reload_while_a_look_runs_swaps_at_once_and_looks_after_it(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second reload while the first's look at the open incidents runs (11-20 s at
    100,000): its config is swapped in at once, whole; its look waits for the running one
    (one thread at a time), whose findings, about a config no longer running, are neither
    logged nor given nor counted (`superseded`); an unchanged reload meanwhile answers with
    the running config's look. Each answer says so, within its bound."""
    number = await api.fire()
    await api.settle()
    release, reads = _slow_look(api, monkeypatch)
    path = api.daemon.config_path
    assert isinstance(path, Path)
    original = path.read_text()
    path.write_text(_renamed_without_payments_route(original))
    caplog.set_level(logging.INFO)
    first = await _answered(api)
    assert first["open_incidents"]["status"] == "running"
    moved = first["config_hash"]["after"]

    path.write_text(original + "# edited\n")  # the incident's schedule and route are back
    second = await _answered(api)
    assert api.daemon.config.published_digest() == second["config_hash"]["after"]
    assert "payments" in api.daemon.services.config.schedules  # the whole file, at once
    assert second["open_incidents"] == {"status": "running", "message": (
        f"the look under config hash {moved[:12]}, begun by an earlier reload, was still"
        " running at this one: the look under this config follows it; what it finds goes to"
        " the log as WARNING lines, to GET /-/reload (ackd reload --status) and to"
        " ackd_config_warnings")}
    third = await _answered(api)  # the same file again: not swapped in, its look is this one
    assert (third["changed"], third["open_incidents"]["status"]) == (False, "running")
    assert reads == [moved]  # one look at a time: the second has not begun

    release.set()
    await asyncio.gather(*api.daemon._tasks)
    assert reads == [moved, second["config_hash"]["after"]]
    now = await _answered(api, "GET")
    assert (now["changed"], now["open_incidents"]["status"], now["warnings"]) == (
        False, "checked", [])
    events = [(r.levelname, getattr(r, "event", "")) for r in caplog.records
              if r.name == "receiver.app.daemon"]
    assert ("INFO", "config_look_queued") in events
    assert ("INFO", "config_look_superseded") in events
    assert [e for level, e in events if level == "WARNING"] == ["unrouted_team"]  # the file's
    metrics = await scrape(api)
    assert sample(metrics, "ackd_config_warnings", kind="config_unreached") is None
    assert sample(metrics, "ackd_config_warnings", kind="unrouted_team") is None
    # The first file's look named the incident; nothing said so, nor answered it.
    assert [r.getMessage() for r in caplog.records if f"(#{number})" in r.getMessage()] == []
    assert all(f"(#{number})" not in w["message"] for w in second["warnings"] + now["warnings"])


async def test_a_look_that_fails_is_answered_as_failed(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A look that cannot read the store is answered `failed`; ackd_config_warnings counts
    it as `unchecked` (as a file whose checks broke), not as what the previous config's look
    found: those findings were about a config no longer running."""
    await api.fire()
    await api.settle()
    path = api.daemon.config_path
    assert isinstance(path, Path)
    original = path.read_text()
    path.write_text(_renamed_without_payments_route(original))
    assert (await _answered(api))["open_incidents"] == {"status": "checked"}
    assert sample(await scrape(api), "ackd_config_warnings", kind="config_unreached") == 1.0

    async def unavailable() -> list[tuple[int, dict[str, Any]]]:
        raise StoreUnavailable("database is locked")

    monkeypatch.setattr(api.daemon.store, "open_escalations", unavailable)
    path.write_text(original + "# edited\n")  # changed: the look runs
    caplog.clear()
    status, body = await api.call("POST", "/-/reload")
    assert status == 200, body
    assert (body["changed"], body["warnings"]) == (True, [])
    assert body["open_incidents"] == {
        "status": "failed", "message": "cannot look at the open incidents, see the log"}
    jsonschema.validate(body, SCHEMAS["Reloaded"])
    metrics = await scrape(api)
    assert sample(metrics, "ackd_config_warnings", kind="config_unreached") is None
    assert sample(metrics, "ackd_config_warnings", kind="config_regrouped") is None
    assert sample(metrics, "ackd_config_warnings", kind="unchecked") == 1.0
    assert [(r.getMessage(), getattr(r, "event", "")) for r in caplog.records
            if r.levelno == logging.WARNING] == [
        ("cannot look at the open incidents: database is locked", "unchecked")]


async def _reload_cli(
    api: Api, token: str = API_TOKEN, *flags: str
) -> tuple[int, str, str]:
    """`ackd reload` against the running ackd: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "reload", "--url", api.url, "--token", token,
        *flags, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_ackd_reload_prints_the_warnings_and_fails_only_on_a_refusal(api: Api) -> None:
    digest = api.daemon.config.published_digest()[:12]
    assert await _reload_cli(api) == (0, f"reloaded, unchanged (config hash {digest} ->"
                                         f" {digest})\n", "")

    number = await api.fire()
    await api.settle()
    path = api.daemon.config_path
    assert isinstance(path, Path)
    good = path.read_text()
    text = _renamed_without_payments_route(good)
    path.write_text(text)
    code, out, err = await _reload_cli(api)
    after = api.daemon.config.published_digest()[:12]
    assert (code, out) == (0, f"reloaded, changed (config hash {digest} -> {after}), 3"
                              f" warning(s)\n")
    team_line = 1 + text[: text.index("  - {name: payments, schedule")].count("\n")
    assert sorted(err.splitlines()) == sorted([
        f"{path}:{team_line}: teams[0].name: warning: no route leads to team 'payments': no"
        " alert reaches it, and an incident declared or a drill started for it is refused",
        f"{path}: (open incidents): 1 open incident(s) name schedule payments, which this"
        f" config removes: they page team payments's schedule pay-eu instead (#{number})",
        f"{path}: (open incidents): " + regroup_line([number])])

    path.write_text(text.replace("policy: standard\n  group_by", "policy: nonesuch\n  group_by"))
    line = 1 + text[: text.index("policy: standard\n  group_by")].count("\n")
    assert await _reload_cli(api) == (1, "", (
        f"{path}:{line}: route.policy: unknown policy 'nonesuch'\n"
        "reload refused, the running config is kept: 1 problem(s)\n"))
    code, out, err = await _reload_cli(api, token=ANA_TOKEN)  # a user of scope respond
    assert (code, out) == (1, "")
    assert err.startswith("reload: HTTP 403: admin: ")


async def test_an_unreadable_file_is_a_refusal_too(api: Api) -> None:
    path = api.daemon.config_path
    assert isinstance(path, Path)
    path.unlink()
    status, body = await api.call("POST", "/-/reload")
    assert status == 422
    assert body["problems"][0]["file"] == str(path)
    assert body["problems"][0]["key"] == "(file)"


async def test_a_reload_of_an_impossible_date_is_a_422_and_the_gauge_goes_to_0(api: Api) -> None:
    """A value that YAML reads as a timestamp but no calendar has (2020-02-30) was a ValueError
    out of the loader: a 500 in text and a gauge still at 1."""
    path = api.daemon.config_path
    assert isinstance(path, Path)
    good = path.read_text()
    path.write_text(good.replace("start: 2020-01-06T09:00:00}]}\n      - {name: secondary",
                                 "start: 2020-02-30T09:00:00}]}\n      - {name: secondary"))
    status, body = await api.call("POST", "/-/reload")
    assert status == 422, body
    [problem] = body["problems"]
    assert problem["key"] == "schedules[0].layers[0].rotations[0].start"
    assert problem["line"] == 1 + good[: good.index("{name: primary")].count("\n")
    assert problem["message"].startswith("not a valid date: '2020-02-30T09:00:00'")
    assert sample(await scrape(api), "ackd_config_last_reload_successful") == 0.0


async def test_a_reload_with_a_zero_duration_where_one_is_needed_is_refused(api: Api) -> None:
    """`ttl: 0s` passed the schema and raised as the links were rebuilt (a 500, the gauge at
    1); `timeout: 0s` was "reloaded" and broke the next start."""
    path = api.daemon.config_path
    assert isinstance(path, Path)
    good = path.read_text()
    for old, new, key in [("ttl: 1h", "ttl: 0s", "links.ttl"),
                          ("timeout: 2s", "timeout: 0s", "notifications.timeout"),
                          ("timeout: 2s", "timeout: false", "notifications.timeout")]:
        path.write_text(good.replace(old, new))
        status, body = await api.call("POST", "/-/reload")
        assert status == 422, body
        assert [p["key"] for p in body["problems"]] == [key]
        assert sample(await scrape(api), "ackd_config_last_reload_successful") == 0.0
    assert api.daemon.config.link_ttl == timedelta(hours=1)


async def test_any_failure_of_a_reload_is_a_refusal_with_the_gauge_at_0(api: Api) -> None:
    """Whatever a load raises (here a check broken by an odd value), the reload is refused
    with a problem naming the file, and /metrics says so."""

    def broken(path: str | Path) -> Config:
        raise RecursionError("maximum recursion depth exceeded")

    coordinator = api.daemon.coordinator
    coordinator._load = broken
    status, body = await api.call("POST", "/-/reload")
    assert status == 422, body
    [problem] = body["problems"]
    assert (problem["file"], problem["key"]) == (str(api.daemon.config_path), "(file)")
    assert problem["message"] == \
        "cannot be loaded: RecursionError: maximum recursion depth exceeded"
    assert sample(await scrape(api), "ackd_config_last_reload_successful") == 0.0


# -- JSON logs ---------------------------------------------------------------------------------


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("receiver.x", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_carries_the_record_fields_and_stays_one_line() -> None:
    record = _record("incident #%d opened: %s", 7, "evil\n2026 INFO forged\u2028",
                     **fields("incident_opened", 7, "payments"))
    EscapeArgs().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "\u2028" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "warning"
    assert parsed["logger"] == "receiver.x"
    assert parsed["message"] == "incident #7 opened: evil\\n2026 INFO forged\\u2028"
    assert (parsed["event"], parsed["incident"], parsed["team"]) == \
        ("incident_opened", 7, "payments")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed["time"])


def test_a_json_line_without_fields_has_none() -> None:
    parsed = json.loads(JsonFormatter().format(_record("ackd stopped")))
    assert set(parsed) == {"time", "level", "logger", "message"}


def test_an_exception_is_one_escaped_field() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    EscapeArgs().filter(record)
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["exception"].endswith("ValueError: bad\\nvalue")


async def test_serve_logs_json_lines_about_incidents_without_secrets(tmp_path: Path) -> None:
    """The real command: every line it writes is a JSON object; the incident's lines name it
    and its team; the contact's secret never appears (the delivery fails: nothing listens);
    the file's warning (team billing, which no route reaches) is logged at start."""
    secret = "s3cr3t-hook-path-xyz"
    dead = free_port()
    config = write_config(tmp_path / "ackd.yaml", f"127.0.0.1:{dead}")
    config.write_text(config.read_text().replace(
        f'json://127.0.0.1:{dead}/ana', f'json://user:{secret}@127.0.0.1:{dead}/ana').replace(
        "teams:\n", "teams:\n  - {name: billing, schedule: payments, lead: cy}\n"))
    port = free_port()
    argv = [sys.executable, "-m", "receiver", "serve", "--config", str(config), "--listen",
            f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data"), "--log-format", "json"]
    ackd = Process("ackd", argv, tmp_path / "ackd.log", os.environ)
    ackd.start()
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_until(lambda: http_ok(f"{url}/-/ready"), READY_WITHIN, "ackd to be ready")
        await _post_alert(url, {"alertname": "Down\nforged", "team": "payments"})
        await wait_until(lambda: _logged(ackd, "delivery"), 20, "the failed delivery's line")
        await wait_until(lambda: _logged(ackd, "unrouted_team"), 10, "the file's warning")
    finally:
        ackd.stop()
    lines = [json.loads(line) for line in ackd.log().splitlines()]
    # check-config's warning, logged at start as at a reload (the file's line, its event).
    warned = [x for x in lines if x.get("event") == "unrouted_team"]
    assert [(x["level"], x["message"].split(": ", 1)[1]) for x in warned] == [
        ("warning", "teams[0].name: warning: no route leads to team 'billing': no alert"
         " reaches it, and an incident declared or a drill started for it is refused")]
    assert secret not in ackd.log()
    opened = [x for x in lines if x.get("event") == "incident_opened"]
    assert [(x["incident"], x["team"]) for x in opened] == [(1, "payments")]
    assert "Down\\nforged" in opened[0]["message"]
    delivery = next(x for x in lines if x.get("event") == "delivery")
    assert (delivery["incident"], delivery["level"]) == (1, "warning")


async def _logged(process: Process, event: str) -> bool:
    return f'"event": "{event}"' in process.log()


async def _post_alert(url: str, labels: dict[str, str]) -> None:
    starts = datetime.now(UTC) - timedelta(seconds=30)
    alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, starts, None)
    async with aiohttp.ClientSession() as session, session.post(
        f"{url}/api/v1/alerts", json=build_webhook([alert]),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 200, await response.text()


async def test_a_sighup_before_ackd_is_ready_is_a_reload_not_its_end(tmp_path: Path) -> None:
    """The default action of SIGHUP ends a process, and ackd installed its handler only after
    seconds of imports and the config load: `systemctl reload` just after a start killed it.
    The config here is a FIFO, so the signal comes while ackd reads it; the daemon then
    reloads (reads the FIFO again) once it is ready."""
    text = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9").read_text()
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    ackd = Ackd(tmp_path, fifo)

    def feed(hangup: bool) -> None:
        with fifo.open("w") as out:  # returns once ackd opened the FIFO to read it
            out.write(text)
            if hangup:
                assert ackd.proc is not None
                ackd.proc.send_signal(signal.SIGHUP)

    ackd.start()
    try:
        await asyncio.wait_for(asyncio.to_thread(feed, True), READY_WITHIN)

        async def started() -> bool:
            return "ackd listening on" in ackd.log()

        await wait_until(started, READY_WITHIN, "ackd to start")
        await asyncio.wait_for(asyncio.to_thread(feed, False), READY_WITHIN)  # the reload
        assert ackd.proc is not None
        await wait_until(lambda: http_ok(f"{ackd.url}/-/ready"), READY_WITHIN, "ackd ready")
        assert ackd.proc.poll() is None
        assert "configuration reloaded from" in ackd.log()
    finally:
        ackd.stop()


async def test_sighup_reloads_the_file_ackd_started_with(tmp_path: Path) -> None:
    """The signal path of a real `ackd serve`: a refused file is logged with its problem and
    shows on /metrics as 0; once fixed, the next SIGHUP takes it."""
    config = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9")
    good = config.read_text()
    ackd = Ackd(tmp_path, config)
    await ackd.start_ready()
    try:
        config.write_text(good.replace("policy: standard\n  group_by", "policy: gone\n  group_by"))
        assert ackd.proc is not None
        ackd.proc.send_signal(signal.SIGHUP)

        async def reloaded(value: float) -> bool:
            return sample(await ackd.metrics(), "ackd_config_last_reload_successful") == value

        await wait_until(lambda: reloaded(0.0), 10, "the refused reload on /metrics")
        assert "route.policy" in ackd.log()
        config.write_text(good)
        ackd.proc.send_signal(signal.SIGHUP)
        await wait_until(lambda: reloaded(1.0), 10, "the reload on /metrics")
        assert await http_ok(f"{ackd.url}/-/ready")
    finally:
        ackd.stop()


def test_the_daemons_records_skip_only_what_no_format_prints() -> None:
    switches = (logging._srcfile, logging.logThreads, logging.logProcesses,
                logging.logMultiprocessing)
    seen: list[logging.LogRecord] = []
    kept = logging.Handler()
    kept.emit = seen.append  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(kept)
    try:
        with _logging_off_the_loop():
            logging.getLogger("ackd.test").warning("incident #%d opened", 7,
                                                   extra=fields("incident_opened", 7, "db"))
    finally:
        root.removeHandler(kept)
    [record] = seen
    assert (record.funcName, record.lineno, record.thread, record.process) == (
        "(unknown function)", 0, None, None)
    assert logging.Formatter("%(levelname)s %(name)s: %(message)s").format(record) == (
        "WARNING ackd.test: incident #7 opened")
    assert json.loads(JsonFormatter().format(record))["incident"] == 7
    assert (logging._srcfile, logging.logThreads, logging.logProcesses,
            logging.logMultiprocessing) == switches


def test_the_log_handoff_queues_only_what_its_filters_pass() -> None:
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handoff = _Handoff(records)
    handoff.addFilter(lambda record: record.levelno >= logging.WARNING)
    info, warning = (logging.LogRecord("ackd.test", level, "", 0, "line", (), None)
                     for level in (logging.INFO, logging.WARNING))
    assert handoff.handle(info) is False
    assert handoff.handle(warning) is True
    assert records.get_nowait() is warning
    assert records.empty()
