"""The daemon in-process on a fake clock: HTTP errors name the field, actions move the state
machine, and a whole escalation policy runs through the real store and timer loop in
milliseconds. Notifications go to the recording twin of the Apprise adapter."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.config.model import WebhookAuth
from receiver.core.model import Alert, AlertStatus
from receiver.escalation.policy import Policy, Step, Target, TargetKind
from receiver.escalation.responder import AT_ONCE_LIMIT
from receiver.ingest.grouping import HeldGroups
from receiver.notify.notifier import DeliveryStatus
from receiver.testing import FakeClock, Outcome, RecordingNotifier
from tests.harness import ANA_TOKEN, API_TOKEN, ROOT, TOKEN, wait_until, write_config

# Looks in a row that must find nothing to do (see Api.idle).
SETTLED = 3
LABELS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
          "severity": "critical"}


class Api:
    def __init__(self, daemon: Daemon, notifier: RecordingNotifier, clock: FakeClock) -> None:
        self.daemon = daemon
        self.notifier = notifier
        self.clock = clock
        self.url = f"http://127.0.0.1:{daemon.port}"

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = API_TOKEN,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data: Any = io.BytesIO(raw) if raw is not None else (
            json.dumps(body) if body is not None else None
        )
        async with aiohttp.ClientSession() as session, session.request(
            method, self.url + path, data=data, headers=headers
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text.startswith("{") else text

    async def press_link(self, number: int, action: str, recipient: str) -> int:
        """POST the signed link a page to `recipient` carries, as their phone would (no
        token); the answer's status."""
        links = self.daemon.services.links
        assert links is not None
        token = links.token(number, action, recipient, self.clock.now())
        async with aiohttp.ClientSession() as session, session.post(
            f"{self.url}/l/{token}"
        ) as response:
            await response.read()
            return response.status

    async def fire(self, labels: dict[str, str] = LABELS) -> int:
        starts = self.clock.now() - timedelta(seconds=30)
        alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, starts, None)
        status, body = await self.call(
            "POST", "/api/v1/alerts", build_webhook([alert]), token=TOKEN
        )
        assert status == 200, body
        number: int = body["incidents"][0]
        return number

    async def settle(self, within: float = 10) -> None:
        """Wait until the timer loop, the writer and the dispatcher finished what is due now
        (`idle` on SETTLED looks in a row), for `within` seconds at most. A fired deadline's
        write and a page's send run on threads the fake clock cannot wait for, and a loaded
        machine takes longer than any fixed number of loop turns: a page not sent yet read
        as one never to be sent."""
        clean = 0

        async def settled() -> bool:
            nonlocal clean
            await self.clock.jump(0)
            clean = clean + 1 if await self.idle() else 0
            return clean >= SETTLED

        await wait_until(settled, within, "ackd to finish what is due now", interval=0.005)

    async def idle(self) -> bool:
        """Nothing due now is left to do: no deadline due, no outbox row due or being sent,
        no handoff notice due or being sent. Work moves that way (a deadline taken with the
        rows it enqueues, a row leased as its send starts), so it is looked for in that
        order; a send that ends may start more (a failed page escalates at once) between
        two looks, hence several looks in a row."""
        daemon, now = self.daemon, self.clock.now()
        if any(due <= now for _, due in await daemon.store.deadlines()):
            return False
        if await daemon.store.due_notifications(now, 1):
            return False
        if daemon.dispatcher.in_flight:
            return False
        notices = await daemon.store.write(lambda tx: tx.unsent_notices())
        return not any(notice.at <= now for notice in notices) and not daemon.handoffs.in_flight

    def paged(self) -> list[str]:
        return [url.rsplit("/", 1)[1] for url, _ in self.notifier.sent]

    async def paged_once(self, count: int) -> list[str]:
        """Who was paged, once `count` pages went or 5 s passed: a fired deadline's write and
        send run on threads the fake clock cannot wait for, and a loaded machine takes longer
        than `settle`'s fixed turns (seen as a missing step-2 page in a full CI run)."""
        deadline = asyncio.get_running_loop().time() + 5
        await self.settle()
        while len(self.paged()) < count and asyncio.get_running_loop().time() < deadline:
            await self.settle()
        return self.paged()


def _daemon(
    directory: Path, reloadable: bool = False
) -> tuple[Daemon, RecordingNotifier, FakeClock]:
    directory.mkdir(exist_ok=True)
    path = write_config(directory / "ackd.yaml", "127.0.0.1:9", step_delay="5m")
    loaded = config_module.load(path)
    loaded = replace(loaded, listen_port=0, data_dir=directory / "data")
    clock, notifier = FakeClock(), RecordingNotifier()
    # reloadable: started with its file, as `ackd serve` is (reloads read it again);
    # without, a reload is refused (test_access's 422).
    daemon = Daemon(loaded, clock=clock, notifier=notifier,
                    config_path=path if reloadable else None)
    return daemon, notifier, clock


async def start_api(directory: Path, *, reloadable: bool = False) -> Api:
    daemon, notifier, clock = _daemon(directory, reloadable)
    await daemon.start()
    return Api(daemon, notifier, clock)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


WEBHOOK_ERRORS = [
    ("no credentials", None, b"{}", 401, "Authorization"),
    ("wrong token", "nope", b"{}", 401, "Authorization"),
    ("invalid json", TOKEN, b"{", 400, "body"),
    ("bad field", TOKEN, b'{"alerts": [{"status": "x"}]}', 400, "alerts[0].status"),
    ("too large", TOKEN, b"x" * (1024 * 1024 + 1), 413, "body"),
    ("fingerprint holding NUL", TOKEN,
     b'{"version": "4", "status": "firing", "alerts": [{"status": "firing",'
     b' "labels": {"alertname": "X"}, "startsAt": "2026-03-01T12:00:00Z",'
     b' "fingerprint": "00ff\\u0000"}]}', 400, "alerts[0].fingerprint"),
]


@pytest.mark.parametrize(
    ("token", "raw", "status", "field"), [c[1:] for c in WEBHOOK_ERRORS],
    ids=[c[0] for c in WEBHOOK_ERRORS],
)
async def test_webhook_errors_name_the_field(
    api: Api, token: str | None, raw: bytes, status: int, field: str
) -> None:
    got, body = await api.call("POST", "/api/v1/alerts", raw=raw, token=token)
    assert (got, body["field"]) == (status, field)
    assert (await api.call("GET", "/api/v1/incidents"))[1]["incidents"] == []


ACTION_ERRORS = [
    ("unknown incident", "POST", "/api/v1/incidents/999/ack", None, 404, "id"),
    ("id not a number", "POST", "/api/v1/incidents/x/ack", None, 400, "id"),
    ("unknown action", "POST", "/api/v1/incidents/{id}/shrug", None, 404, "action"),
    ("snooze without time", "POST", "/api/v1/incidents/{id}/snooze", {}, 400, "for"),
    ("snooze bad duration", "POST", "/api/v1/incidents/{id}/snooze", {"for": "soon"}, 400, "for"),
    ("snooze naive until", "POST", "/api/v1/incidents/{id}/snooze",
     {"until": "2030-01-01T00:00:00"}, 400, "until"),
    ("unack when triggered", "POST", "/api/v1/incidents/{id}/unack", None, 409, "state"),
    ("bad state filter", "GET", "/api/v1/incidents?state=sleeping", None, 400, "state"),
    ("bad limit", "GET", "/api/v1/incidents?limit=0", None, 400, "limit"),
    # PostgreSQL's text cannot hold NUL: refused alike on both stores, not a store's 503.
    ("team filter holding NUL", "GET", "/api/v1/incidents?team=pay%00ments", None, 400, "team"),
    ("severity filter holding NUL", "GET", "/api/v1/incidents?severity=SEV%001", None, 400,
     "severity"),
    # Digits Python reads but a URL should not carry: superscripts, other scripts' digits.
    ("id a superscript digit", "GET", "/api/v1/incidents/\u00b2", None, 400, "id"),
    ("id in Arabic-Indic digits", "POST", "/api/v1/incidents/\u0661/ack", None, 400, "id"),
    ("id past 64 bits", "GET", "/api/v1/incidents/18446744073709551616", None, 400, "id"),
    ("id past 5,000 digits", "GET", "/api/v1/incidents/" + "9" * 5000, None, 400, "id"),
    ("limit a superscript digit", "GET", "/api/v1/incidents?limit=\u00b2", None, 400, "limit"),
    ("before past 64 bits", "GET", "/api/v1/incidents?before=9223372036854775808", None, 400,
     "before"),
    ("snooze for more than a week", "POST", "/api/v1/incidents/{id}/snooze",
     {"for": "5000w"}, 400, "for"),
    ("snooze until more than a week ahead", "POST", "/api/v1/incidents/{id}/snooze",
     {"until": "2122-01-01T00:00:00Z"}, 400, "until"),
    ("snooze for longer than a timedelta", "POST", "/api/v1/incidents/{id}/snooze",
     {"for": "99999999999w"}, 400, "for"),
    ("snooze past the year 9999", "POST", "/api/v1/incidents/{id}/snooze",
     {"for": "520000w"}, 400, "for"),
    ("snooze until past the year 9999 in UTC", "POST", "/api/v1/incidents/{id}/snooze",
     {"until": "9999-12-31T23:00:00-14:00"}, 400, "until"),
    ("snooze body nested too deeply", "POST", "/api/v1/incidents/{id}/snooze",
     b'{"for": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "body"),
    ("snooze body with a 5,000-digit number", "POST", "/api/v1/incidents/{id}/snooze",
     b'{"for": ' + b"9" * 5000 + b"}", 400, "for"),
    # Every action refuses a field it does not read, as the other endpoints do.
    ("ack with an unknown field", "POST", "/api/v1/incidents/{id}/ack", {"x": 1}, 400, "x"),
    ("resolve with an unknown field", "POST", "/api/v1/incidents/{id}/resolve",
     {"comment": "done"}, 400, "comment"),
    ("unack with an unknown field", "POST", "/api/v1/incidents/{id}/unack", {"x": 1}, 400, "x"),
    ("snooze with an unknown field", "POST", "/api/v1/incidents/{id}/snooze",
     {"for": "30m", "reason": "lunch"}, 400, "reason"),
    ("ack with a body not an object", "POST", "/api/v1/incidents/{id}/ack", [], 400, "body"),
    ("snooze with both for and until", "POST", "/api/v1/incidents/{id}/snooze",
     {"for": "30m", "until": "2030-01-01T00:00:00Z"}, 400, "until"),
    ("snooze until a past time", "POST", "/api/v1/incidents/{id}/snooze",
     {"until": "2020-01-01T00:00:00Z"}, 400, "until"),
    ("snooze for a boolean", "POST", "/api/v1/incidents/{id}/snooze", {"for": True}, 400, "for"),
    ("snooze for null", "POST", "/api/v1/incidents/{id}/snooze", {"for": None}, 400, "for"),
    ("snooze until a number", "POST", "/api/v1/incidents/{id}/snooze", {"until": 1}, 400,
     "until"),
]


@pytest.mark.parametrize(("body", "shown"), [({"for": True}, "not true"),
                                             ({"for": None}, "not null"),
                                             ({"until": False}, "not false")])
async def test_snooze_messages_show_json_values(api: Api, body: Any, shown: str) -> None:
    number = await api.fire()
    status, answer = await api.call("POST", f"/api/v1/incidents/{number}/snooze", body)
    assert status == 400
    assert shown in answer["error"], answer
    assert not {"True", "False", "None"} & set(answer["error"].split()), answer


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"), [c[1:] for c in ACTION_ERRORS],
    ids=[c[0] for c in ACTION_ERRORS],
)
async def test_api_errors_name_the_field(
    api: Api, method: str, path: str, body: Any, status: int, field: str
) -> None:
    number = await api.fire()
    raw = body if isinstance(body, bytes) else None
    got, answer = await api.call(method, path.format(id=number), None if raw else body, raw=raw)
    assert (got, answer["field"]) == (status, field), answer
    status, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    assert (status, incident.get("state")) == (200, "triggered"), incident


async def test_actions_need_a_token(api: Api) -> None:
    number = await api.fire()
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack", token="wrong")
    assert (status, body["field"]) == (401, "Authorization")


async def test_policy_runs_on_the_fake_clock_until_acknowledged(api: Api) -> None:
    number = await api.fire()
    await api.settle()
    assert await api.paged_once(1) == ["ana"]  # step 1 at once: the primary
    await api.clock.jump(timedelta(minutes=5))
    await api.settle()
    assert await api.paged_once(2) == ["ana", "bo"]  # step 2 five minutes later: the secondary

    status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack")
    assert (status, body["state"], body["acknowledged_by"]) == (200, "acknowledged", "e2e")
    await api.settle()
    notices = api.paged()[2:]
    assert sorted(notices) == ["ana", "bo"]  # both paged people hear of the ack
    await api.clock.jump(timedelta(hours=1))
    await api.settle()
    assert api.paged()[4:] == []  # the lead (step 3) is never paged

    status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack")
    assert (status, body["field"]) == (409, "state")


def lateness_count(metrics: str) -> float:
    found = re.search(r"^ackd_deadline_lateness_seconds_count (\S+)$", metrics, re.M)
    assert found is not None, metrics
    return float(found.group(1))


async def test_deadline_lateness_is_observed_where_the_deadline_is_taken(api: Api) -> None:
    """ackd_deadline_lateness_seconds counts a deadline once, where it fired, against its
    due time. A deadline another replica took (here: taken from the store behind this
    replica's back) is not counted when this replica's timer comes to it: every replica's
    timer holds every deadline, and each counted every one (three replicas, three counts)."""
    await api.fire()
    await api.settle()
    armed = await api.daemon.store.deadlines()
    assert armed  # the next step's
    taken = await api.daemon.store.write(
        lambda tx: tx.take_deadlines([i for i, _ in armed], max(due for _, due in armed)))
    assert len(taken) == len(armed)
    await api.clock.jump(timedelta(minutes=5))
    await api.settle()
    metrics = (await api.call("GET", "/metrics", token=None))[1]
    assert lateness_count(metrics) == 0
    assert api.paged() == ["ana"]  # the other replica fired it (here: nobody)

    await api.fire({**LABELS, "alertname": "Another"})
    await api.settle()
    await api.clock.jump(timedelta(minutes=5))
    await api.settle()
    metrics = (await api.call("GET", "/metrics", token=None))[1]
    assert lateness_count(metrics) == 1


async def test_a_compressed_api_body_that_does_not_inflate_is_a_named_400(api: Api) -> None:
    # aiohttp's parser inflated request bodies itself: gzip that was not gzip surfaced while
    # the handler read the body, as a 500 with a traceback.
    number = await api.fire()
    async with aiohttp.ClientSession() as session, session.post(
        f"{api.url}/api/v1/incidents/{number}/snooze", data=b"not gzip",
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Encoding": "gzip"},
    ) as response:
        assert response.status == 400, await response.text()
        assert (await response.json())["field"] == "body"


async def test_snooze_ends_and_escalation_starts_again(api: Api) -> None:
    number = await api.fire()
    await api.settle()
    status, body = await api.call(
        "POST", f"/api/v1/incidents/{number}/snooze", {"for": "30m"}
    )
    assert (status, body["state"]) == (200, "acknowledged")
    await api.clock.jump(timedelta(minutes=29))
    await api.settle()
    assert api.paged() == ["ana"]
    await api.clock.jump(timedelta(minutes=1))
    await api.settle()
    state = (await api.call("GET", f"/api/v1/incidents/{number}"))[1]
    assert state["state"] == "triggered"
    assert await api.paged_once(2) == ["ana", "ana"]  # re-escalated from step 1
    kinds = [e["kind"] for e in state["timeline"]]
    assert "snoozed" in kinds
    assert "snooze_ended" in kinds


async def test_unack_then_resolve_by_hand(api: Api) -> None:
    number = await api.fire()
    await api.settle()
    assert (await api.call("POST", f"/api/v1/incidents/{number}/ack"))[0] == 200
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/unack")
    assert (status, body["state"]) == (200, "triggered")
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/resolve")
    assert (status, body["state"], body["resolved_by"]) == (200, "resolved", "e2e")
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/resolve")
    assert (status, body["field"]) == (409, "state")
    metrics = (await api.call("GET", "/metrics", token=None))[1]
    assert 'ackd_time_to_resolve_seconds_count{severity="SEV1",team="payments"} 1.0' in metrics
    assert 'ackd_time_to_acknowledge_seconds_count{severity="SEV1",team="payments"} 1.0' in metrics


async def test_tampered_link_is_refused(api: Api) -> None:
    status, text = await api.call("POST", "/l/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", token=None)
    assert status == 403
    assert "Link not accepted" in text


async def run_cli(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", *argv, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_cli_acknowledges_and_lists(api: Api) -> None:
    number = await api.fire()
    flags = ("--url", api.url, "--token", API_TOKEN)
    code, out = await run_cli("ack", str(number), *flags)
    assert (code, out.strip()) == (0, f"#{number} acknowledged")
    code, out = await run_cli("ack", str(number), *flags)
    assert code == 1
    assert "HTTP 409" in out
    code, out = await run_cli("incidents", "--state", "acknowledged", *flags)
    assert json.loads(out.splitlines()[0])["id"] == number
    code, out = await run_cli("ack", str(number), "--url", api.url, "--token", "bad")
    assert code == 1
    assert "HTTP 401" in out


ONCALL = [
    # The example's platform schedule: cy covers 08:00-20:00 Amsterdam, dee the rest.
    ("2026-03-02T10:00:00+01:00", "cy"),
    ("2026-03-02T21:00:00+01:00", "dee"),
    ("2026-07-06T07:30:00+02:00", "dee"),
    ("2026-07-06T08:00:00+02:00", "cy"),
]


@pytest.mark.parametrize(("at", "who"), ONCALL)
async def test_oncall_cli(at: str, who: str) -> None:
    code, out = await run_cli("oncall", "platform", "--config", "config.example.yaml", "--at", at)
    assert code == 0, out
    primary = next(line for line in out.splitlines() if line.strip().startswith("primary"))
    assert primary.split()[1] == who
    assert "until" in primary


async def test_oncall_cli_asks_a_running_ackd_without_a_config(api: Api) -> None:
    """`--url` alone is enough: the running ackd knows the team's schedule and zone, so a
    responder without the config file (a laptop, ACKD_URL set) can ask who is on call."""
    flags = ("--url", api.url, "--token", API_TOKEN)
    at = "2026-03-02T10:00:00+00:00"
    code, out = await run_cli("oncall", "platform", "--at", at, *flags)
    assert code == 0, out
    head, primary, secondary = out.splitlines()
    assert head == f"platform (schedule payments, Europe/Amsterdam) at {at}:"
    assert primary.split()[:2] == ["primary", "ana"]
    assert secondary.split()[:2] == ["secondary", "bo"]
    assert primary.endswith("for good")  # a rotation of one person never changes hands
    code, out = await run_cli("oncall", "nope", *flags)
    assert code == 1
    assert "HTTP 404: team: unknown team 'nope'; teams: payments, platform" in out
    status, body = await api.call("GET", "/api/v1/teams/payments/oncall?at=2026-03-02T10:00Z")
    assert status == 200, body
    assert (body["team"], body["schedule"], body["tz"]) == (
        "payments", "payments", "Europe/Amsterdam")
    assert [layer["user"] for layer in body["layers"]] == ["ana", "bo"]
    # Neither a config nor a running ackd to ask: a usage error naming both.
    code, out = await run_cli("oncall", "platform")
    assert code == 2
    assert "give --config FILE or --url URL (or ACKD_URL)" in out


async def test_routes_test_cli() -> None:
    code, out = await run_cli(
        "routes", "test", "--config", "config.example.yaml",
        "team=payments", "alertname=PaymentApiDown", "env=prod", "severity=warning",
    )
    assert code == 0, out
    assert "team=payments" in out
    assert "severity=SEV1" in out  # the explicit child severity beats the label map
    assert "policy=standard" in out


async def test_the_first_step_pages_in_the_webhook_transaction(api: Api) -> None:
    """A step due at once fires with the incident's own commit: when the webhook is answered
    the step is on the timeline, its page in the outbox and its metric counted, and only the
    next step waits as a durable deadline. Nothing else ran: the fake clock has not moved."""
    number = await api.fire()
    timeline = (await api.call("GET", f"/api/v1/incidents/{number}"))[1]["timeline"]
    fired = [e["detail"] for e in timeline if e["kind"] == "step_fired"]
    assert [(d["step"], d["recipients"]) for d in fired] == [(0, ["ana"])]
    with closing(sqlite3.connect(api.daemon.config.db_path)) as db:
        assert db.execute("SELECT kind, key FROM deadlines").fetchall() == [("step", "0:0:1")]
    metrics = (await api.call("GET", "/metrics", token=None))[1]
    assert 'ackd_escalation_steps_total{policy="standard",step="0",team="payments"} 1.0' in metrics
    await api.settle()
    assert api.paged() == ["ana"]


async def test_an_incident_is_as_urgent_as_the_most_urgent_of_its_opening_alerts(
    api: Api,
) -> None:
    """A group opened by alerts of several severities takes the most urgent of them, whichever
    alert carries it (the route maps critical to SEV1, warning to SEV3, no label to SEV2)."""
    starts = api.clock.now() - timedelta(seconds=30)
    groups = {"Mixed": ["warning", "critical", None, "warning"], "Unlabelled": ["warning", None],
              "Warned": ["warning", "warning"]}
    alerts = [
        Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, starts, None)
        for name, severities in groups.items()
        for n, severity in enumerate(severities)
        for labels in [{"alertname": name, "cluster": "eu1", "instance": str(n),
                        **({"severity": severity} if severity else {})}]
    ]
    status, body = await api.call("POST", "/api/v1/alerts", build_webhook(alerts), token=TOKEN)
    assert status == 200, body
    opened = [(await api.call("GET", f"/api/v1/incidents/{n}"))[1] for n in body["incidents"]]
    assert {i["group_labels"]["alertname"]: i["severity"] for i in opened} == {
        "Mixed": "SEV1", "Unlabelled": "SEV2", "Warned": "SEV3"}


async def test_steps_that_reach_nobody_run_on_through_the_timer(api: Api) -> None:
    """101 steps due at once, each naming nobody: one transaction fires AT_ONCE_LIMIT of
    them, then the timer loop takes over, and the policy still runs to its end exactly.
    (Steps, not repeats: a repeat waits `repeat_after` even after a step that reached nobody.)"""
    ghost = Step(timedelta(0), (Target(TargetKind.USER, "ghost"),))
    policy = Policy("standard", (ghost,) * 101, repeat=0, repeat_after=timedelta(minutes=1))
    # Swapped in as a reload would; the routed pairs were bound to the old policy.
    api.daemon.coordinator.swap(
        replace(api.daemon.config, policies={"standard": policy}, team_policies={})
    )
    number = await api.fire()
    await api.settle()
    timeline = (await api.call("GET", f"/api/v1/incidents/{number}"))[1]["timeline"]
    kinds = [e["kind"] for e in timeline]
    assert kinds.count("step_fired") == 101
    assert kinds.count("escalation_exhausted") == 1
    # The chain was cut: the timer loop fired the deadlines left for it, 101 // 33 of them.
    metrics = (await api.call("GET", "/metrics", token=None))[1]
    assert f"ackd_deadline_lateness_seconds_count {101 // (AT_ONCE_LIMIT + 1)}.0" in metrics
    assert api.paged() == []


async def test_every_channel_failing_escalates_at_once(api: Api) -> None:
    """ana's only contact fails on every attempt: bo (step 2, due in 5 min) is paged now."""
    ana = next(url for url in (c.url for c in api.daemon.config.users["ana"].contacts))
    api.notifier.set_outcome(ana, Outcome(DeliveryStatus.FAILURE, error="gateway down"))
    number = await api.fire()
    for _ in range(4):  # two attempts with backoff 200 ms, on the fake clock
        await api.clock.jump(timedelta(milliseconds=300))
        await api.settle()
    assert await api.paged_once(3) == ["ana", "ana", "bo"]
    events = (await api.call("GET", f"/api/v1/incidents/{number}"))[1]["timeline"]
    failed = [e["detail"] for e in events if e["kind"] == "notification_failed"]
    assert [d["error"] for d in failed if d.get("recipient") == "ana"][-1] == "gateway down"
    assert any(d.get("escalating_early") for d in failed)


def _swap_policy(api: Api, *steps: Step) -> None:
    """The policy every new incident takes, swapped in as a reload would."""
    policy = Policy("standard", steps, repeat=0)
    api.daemon.coordinator.swap(
        replace(api.daemon.config, policies={"standard": policy}, team_policies={})
    )


def _url(api: Api, name: str) -> str:
    return api.daemon.config.users[name].contacts[0].url


async def _retries_over(api: Api) -> None:
    for _ in range(4):  # two attempts with backoff 200 ms, on the fake clock
        await api.clock.jump(timedelta(milliseconds=300))
        await api.settle()


async def _early(api: Api, number: int) -> list[dict[str, Any]]:
    timeline = (await api.call("GET", f"/api/v1/incidents/{number}"))[1]["timeline"]
    return [e["detail"] for e in timeline if e["detail"].get("escalating_early")]


async def test_a_step_that_reached_one_of_its_two_people_keeps_its_time(api: Api) -> None:
    """ana and bo are paged at once, ana's only contact fails on every attempt: bo has the
    page, so cy (the next step) is paged when the step's 5 minutes are up, not at once."""
    users = (Target(TargetKind.USER, "ana"), Target(TargetKind.USER, "bo"))
    _swap_policy(api, Step(timedelta(0), users),
                 Step(timedelta(minutes=5), (Target(TargetKind.USER, "cy"),)))
    api.notifier.set_outcome(_url(api, "ana"), Outcome(DeliveryStatus.FAILURE))
    number = await api.fire()
    await _retries_over(api)
    assert sorted(await api.paged_once(3)) == ["ana", "ana", "bo"]
    assert await _early(api, number) == []
    await api.clock.jump(timedelta(minutes=5) - timedelta(milliseconds=1300))
    await api.settle()
    assert api.paged()[3:] == []
    await api.clock.jump(timedelta(milliseconds=100))
    assert (await api.paged_once(4))[3:] == ["cy"]


async def test_a_repeat_after_a_last_step_nobody_could_be_reached_at_keeps_its_time(
    api: Api, caplog: pytest.LogCaptureFixture,
) -> None:
    """ana at once, bo 5 minutes later (the last step), the repeat 15 minutes after that;
    bo's contact fails on every attempt. Nobody of the last step can be reached, but ana,
    whom step 1 paged, is within her wait: the repeat reminds her at 20 minutes, as after a
    last step that reached nobody, not at once (5 minutes and a second in)."""
    steps = (Step(timedelta(0), (Target(TargetKind.USER, "ana"),)),
             Step(timedelta(minutes=5), (Target(TargetKind.USER, "bo"),)))
    policy = Policy("standard", steps, repeat=1, repeat_after=timedelta(minutes=15))
    api.daemon.coordinator.swap(
        replace(api.daemon.config, policies={"standard": policy}, team_policies={}))
    api.notifier.set_outcome(_url(api, "bo"), Outcome(DeliveryStatus.FAILURE))
    opened = api.clock.now()
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]
    await api.clock.jump(timedelta(minutes=5))
    await api.settle()
    with caplog.at_level(logging.WARNING, logger="receiver.escalation.responder"):
        await _retries_over(api)
        assert await api.paged_once(3) == ["ana", "bo", "bo"]
    assert any(f"incident #{number} step 2: every page to bo failed" in line
               and "the repeat keeps its time" in line for line in caplog.messages)
    timeline = (await api.call("GET", f"/api/v1/incidents/{number}"))[1]["timeline"]
    assert [e["detail"] for e in timeline if "unreachable" in e["detail"]] == [{
        "escalating_early": False, "step": 1, "cycle": 0, "run": 0, "next_step": 0,
        "unreachable": ["bo"], "repeat_at": (opened + timedelta(minutes=20)).isoformat()}]
    await api.clock.jump(timedelta(minutes=15) - timedelta(milliseconds=1300))
    await api.settle()
    assert api.paged()[3:] == []
    await api.clock.jump(timedelta(milliseconds=100))
    assert (await api.paged_once(4))[3:] == ["ana"]


async def test_a_person_reached_in_an_earlier_run_is_escalated_past_when_unreachable_now(
    api: Api,
) -> None:
    """ana had the page of run 0; acknowledged, then handed back (run 1), her contact fails:
    nobody of run 1's step can be reached, so bo is paged at once."""
    _swap_policy(api, Step(timedelta(0), (Target(TargetKind.USER, "ana"),)),
                 Step(timedelta(minutes=5), (Target(TargetKind.USER, "bo"),)))
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]
    for action in ("ack", "unack"):
        api.notifier.set_outcome(_url(api, "ana"), Outcome(DeliveryStatus.FAILURE))
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/{action}")
        assert status == 200, body
    await _retries_over(api)
    # ana: run 0's page, then the acknowledged note and run 1's page, twice each.
    assert sorted(await api.paged_once(6)) == ["ana"] * 5 + ["bo"]
    assert [(d["run"], d["unreachable"]) for d in await _early(api, number)] == [(1, ["ana"])]


async def test_stakeholders_hear_of_a_sev1_declared_and_resolved(tmp_path: Path) -> None:
    loaded = replace(config_module.load(ROOT / "config.example.yaml", environ={}),
                     listen_port=0, data_dir=tmp_path / "data",
                     webhook_auth=WebhookAuth(bearer_token=TOKEN))
    clock, notifier = FakeClock(), RecordingNotifier()
    daemon = Daemon(loaded, clock=clock, notifier=notifier)
    await daemon.start()
    try:
        api = Api(daemon, notifier, clock)
        labels = {"alertname": "PaymentGatewayDown", "team": "payments", "env": "prod"}
        number = await api.fire(labels)  # the payments child route makes it SEV1
        await api.settle()
        assert "exec-status" in api.paged()
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/resolve",
                                      token="change-me-too")
        assert (status, body["state"]) == (200, "resolved")
        # The room heard of this incident a moment ago: the resolution bundles with any other
        # notes of the next bundle_window (30s), then goes.
        await api.settle()
        await api.clock.jump(timedelta(seconds=30))
        await api.settle()
        room = [m.title for url, m in notifier.sent if url.endswith("/exec-status")]
        assert len(room) == 2
        assert "resolved" in room[1]
    finally:
        await daemon.stop()


async def test_reload_refuses_a_bad_file_and_swaps_a_good_one(api: Api, tmp_path: Path) -> None:
    number = await api.fire()
    await api.settle()
    broken = tmp_path / "broken.yaml"
    broken.write_text("teams: [{name: ops}]\nroute: {team: nobody}\n")
    assert api.daemon.reload(broken) is False
    assert "bo" in api.daemon.config.users  # the running config is untouched

    fresh = write_config(tmp_path / "fresh.yaml", "127.0.0.1:9", step_delay="1m")
    fresh.write_text(fresh.read_text().replace("name: bo,", "name: bob,").replace(
        "users: [bo]", "users: [bob]"))
    assert api.daemon.reload(fresh) is True
    assert "bob" in api.daemon.config.users
    assert api.daemon.config.listen_port == 0  # where ackd listens is not reloaded
    # The open incident keeps the policy it started with: step 2 still comes at 5 minutes.
    await api.clock.jump(timedelta(minutes=1))
    await api.settle()
    assert api.paged() == ["ana"]
    await api.clock.jump(timedelta(minutes=4))
    await api.settle()
    assert len(await api.paged_once(2)) == 2
    events = (await api.call("GET", f"/api/v1/incidents/{number}"))[1]["timeline"]
    fired = [e["detail"]["recipients"] for e in events if e["kind"] == "step_fired"]
    assert fired == [["ana"], ["bob"]]  # ...to whoever the schedule names now


async def _group_traffic(api: Api) -> tuple[list[Any], list[int]]:
    """One group's webhooks as Alertmanager sends them, resends and a lagging replica's stale
    view among them, with a person resolving the incident in between: each answer, and how
    many commits each made."""
    labels = [{**LABELS, "instance": name} for name in ("a", "b")]
    starts = api.clock.now() - timedelta(seconds=30)

    def webhook(*statuses: AlertStatus) -> Any:
        alerts = [Alert(fingerprint_of(ls), s, ls, {}, starts, None if s is AlertStatus.FIRING
                        else api.clock.now()) for ls, s in zip(labels, statuses, strict=True)]
        return build_webhook(alerts)

    f, r = AlertStatus.FIRING, AlertStatus.RESOLVED
    steps: list[Any] = [webhook(f, f), webhook(f, f), webhook(r, f), webhook(f, f),
                        webhook(r, f), "resolve", webhook(r, f), webhook(f, f), webhook(r, r)]
    answers, commits = [], []
    for step in steps:
        await api.settle()  # the pages of the step before are delivered and recorded
        before = api.daemon.store.stats.commits
        if step == "resolve":
            answers.append((await api.call("POST", "/api/v1/incidents/1/resolve"))[1]["state"])
        else:
            answers.append((await api.call("POST", "/api/v1/alerts", step, token=TOKEN))[1])
        commits.append(api.daemon.store.stats.commits - before)
    return answers, commits


def _stored(api: Api) -> list[Any]:
    with closing(sqlite3.connect(api.daemon.config.db_path)) as db:
        return [
            db.execute("SELECT id, state FROM incidents ORDER BY id").fetchall(),
            db.execute("SELECT incident_id, fingerprint, status FROM alerts"
                       " ORDER BY incident_id, fingerprint").fetchall(),
            db.execute("SELECT incident_id, kind FROM timeline ORDER BY id").fetchall(),
        ]


async def test_a_body_seen_before_is_routed_again_once_the_config_changes(
    api: Api, tmp_path: Path
) -> None:
    """The same bytes are answered from memory while they repeat what is committed, and only
    under the config that routed them: after a reload that groups otherwise, they open the
    group they fall into now, though the group they fell into before is still open."""
    webhook = build_webhook([Alert(fingerprint_of(LABELS), AlertStatus.FIRING, LABELS, {},
                                   api.clock.now() - timedelta(seconds=30), None)])
    first = (await api.call("POST", "/api/v1/alerts", webhook, token=TOKEN))[1]
    await api.settle()  # the page is delivered and recorded
    before = api.daemon.store.stats.commits
    again = (await api.call("POST", "/api/v1/alerts", webhook, token=TOKEN))[1]
    assert (again["incidents"], again["outcomes"]) == (first["incidents"], {"duplicate": 1})
    assert api.daemon.store.stats.commits == before
    assert len(api.daemon.incidents.bodies) == 1

    fresh = write_config(tmp_path / "fresh.yaml", "127.0.0.1:9", step_delay="5m")
    fresh.write_text(fresh.read_text().replace("group_by: [alertname, cluster]",
                                               "group_by: [alertname]"))
    assert api.daemon.reload(fresh) is True
    regrouped = (await api.call("POST", "/api/v1/alerts", webhook, token=TOKEN))[1]
    assert regrouped["outcomes"] == {"added": 1}
    assert len(regrouped["opened"]) == 1
    assert regrouped["opened"] != first["opened"]


async def test_resends_are_answered_without_a_transaction_as_one_would(tmp_path: Path) -> None:
    """A webhook repeating what the open incident holds is answered from memory: the same
    answer and the same store as with every webhook written through, and no commit."""
    shortcut, through = await start_api(tmp_path / "a"), await start_api(tmp_path / "b")
    try:
        through.daemon.incidents.held = HeldGroups(0)  # never holds: every webhook writes
        answers, commits = await _group_traffic(shortcut)
        assert (answers, _stored(shortcut)) == (
            (await _group_traffic(through))[0], _stored(through)
        )
    finally:
        await shortcut.daemon.stop()
        await through.daemon.stop()
    assert answers[1]["outcomes"] == {"duplicate": 2}
    assert answers[6]["incidents"] == []  # resolved by hand: no open incident holds them
    # Only the resend (1) and the resend of the half-resolved state (4) committed nothing.
    assert [i for i, n in enumerate(commits) if n == 0] == [1, 4]


def _memo_gauges(metrics: str) -> dict[str, float]:
    return {
        f"{m[1]} {m[2]}": float(m[3])
        for m in re.finditer(r'^ackd_memo_(bytes|entries)\{memo="(\w+)"\} (\S+)$', metrics, re.M)
    }


async def test_the_memos_show_their_size_on_metrics_and_take_their_budget_on_reload(
    api: Api, tmp_path: Path
) -> None:
    webhook = build_webhook([Alert(fingerprint_of(LABELS), AlertStatus.FIRING, LABELS, {},
                                   api.clock.now() - timedelta(seconds=30), None)])
    for _ in range(2):
        assert (await api.call("POST", "/api/v1/alerts", webhook, token=TOKEN))[0] == 200
    gauges = _memo_gauges((await api.call("GET", "/metrics", token=None))[1])
    assert gauges["entries bodies"] == gauges["entries groups"] == 1
    assert gauges["bytes bodies"] == api.daemon.incidents.bodies.memo.bytes > 0
    assert gauges["bytes groups"] == api.daemon.incidents.held.memo.bytes > 0

    fresh = write_config(tmp_path / "fresh.yaml", "127.0.0.1:9", step_delay="5m")
    fresh.write_text(fresh.read_text().replace(
        f"webhook: {{bearer_token: {TOKEN}}}", f"webhook: {{bearer_token: {TOKEN}, memo_bytes: 0}}"
    ))
    assert api.daemon.reload(fresh) is True
    gauges = _memo_gauges((await api.call("GET", "/metrics", token=None))[1])
    assert set(gauges.values()) == {0.0}
    assert (await api.call("POST", "/api/v1/alerts", webhook, token=TOKEN))[0] == 200
    assert (len(api.daemon.incidents.bodies), len(api.daemon.incidents.held)) == (0, 0)


@pytest.mark.parametrize("how", ["token", "link"])
async def test_the_acknowledger_is_not_sent_their_own_acknowledged_note(
    api: Api, how: str
) -> None:
    """ana acknowledges on the phone she was paged on: bo, paged too, is told; ana, who has
    just acted, is not (with her own token or through her page's signed link alike)."""
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]
    await api.clock.jump(timedelta(minutes=5))
    assert await api.paged_once(2) == ["ana", "bo"]
    if how == "token":
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack",
                                      token=ANA_TOKEN)
        assert status == 200, body
    else:
        assert await api.press_link(number, "ack", "ana") == 200
    assert await api.paged_once(3) == ["ana", "bo", "bo"]
    await api.settle()
    assert api.paged() == ["ana", "bo", "bo"]
    assert api.notifier.sent[2][1].title == f"#{number} acknowledged by ana"


@pytest.mark.parametrize("how", ["token", "link"])
async def test_who_resolves_by_hand_is_not_sent_their_own_resolved_note(
    api: Api, how: str
) -> None:
    """ana resolves on the phone she was paged on: bo, paged too, is told who resolved it;
    ana, who has just acted, is not (her own token or her page's signed link alike). The
    acknowledgement's rule, for the resolution."""
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]
    await api.clock.jump(timedelta(minutes=5))
    assert await api.paged_once(2) == ["ana", "bo"]
    if how == "token":
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/resolve",
                                      token=ANA_TOKEN)
        assert status == 200, body
    else:
        assert await api.press_link(number, "resolve", "ana") == 200
    assert await api.paged_once(3) == ["ana", "bo", "bo"]
    await api.settle()
    assert api.paged() == ["ana", "bo", "bo"]
    resolved = api.notifier.sent[2][1]
    assert resolved.title == f"#{number} resolved"
    assert "Resolved by ana after 5m" in resolved.body
