"""A status reminder and a responder paged in reach the person as a step's page does: the
immediate contacts at once, a delayed one (SMS two minutes after push) once its delay passed,
unless they answered meanwhile. Pure rules, then the daemon in-process on the fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import EventKind, MessageReason, TimelineEvent
from receiver.escalation.keys import contact_digest
from receiver.escalation.policy import Contact, User
from receiver.incidents import follow
from receiver.incidents.follow import FollowUp
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import ANA_TOKEN, CY_TOKEN, write_config
from tests.test_api import Api
from tests.test_reload_targets import reload, rewrite

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
PUSH, SMS = Contact("json://x/push"), Contact("json://x/sms", timedelta(minutes=2), short=True)


def test_immediate_contacts_now_and_delayed_ones_later() -> None:
    reached = follow.reach(User("cy", (PUSH, SMS)), MessageReason.RESPONDER_ADDED, NOW,
                           actor="ana")
    assert [(m.recipient, m.contact, m.reason, m.actor) for m in reached.now] == [
        ("cy", 0, MessageReason.RESPONDER_ADDED, "ana")]
    [(due, later)] = reached.later
    assert due == NOW + timedelta(minutes=2)
    assert later == FollowUp(MessageReason.RESPONDER_ADDED, "cy", 1, NOW, "ana",
                             contact_digest(SMS.url))
    assert FollowUp.from_key(later.key()) == later
    again = follow.message(later, User("cy", (PUSH, SMS)), None)
    assert again is not None
    assert (again.contact, again.short, again.actor) == (1, True, "ana")
    assert follow.message(later, User("cy", (PUSH,)), None) is None  # a reload took it


VOICE = Contact("json://x/voice", timedelta(minutes=5))


@pytest.mark.parametrize(
    ("contacts", "contact"),
    [((SMS, PUSH), 0), ((VOICE, PUSH, SMS), 2), ((VOICE, PUSH), None)],
    ids=["reordered", "inserted", "removed"],
)
def test_a_reload_that_moves_contacts_leaves_the_follow_up_its_url(
    contacts: tuple[Contact, ...], contact: int | None
) -> None:
    """The SMS follow-up finds the SMS wherever a reload moved it; one the reload removed is
    not sent, not the contact now at its place."""
    [(_, later)] = follow.reach(User("cy", (PUSH, SMS)), MessageReason.STATUS_DUE, NOW).later
    again = follow.message(FollowUp.from_key(later.key()), User("cy", contacts), None)
    if contact is None:
        assert again is None
    else:
        assert again is not None
        assert (again.contact, again.url_digest, again.short) == (
            contact, contact_digest(SMS.url), True)


def test_a_lost_follow_up_names_the_message_the_person_and_the_contact() -> None:
    later = FollowUp(MessageReason.STATUS_DUE, "cy", 1, NOW)
    gone = follow.lost(later, User("cy", (PUSH,)), NOW + timedelta(minutes=2))
    assert (gone.at, gone.kind, gone.actor) == (
        NOW + timedelta(minutes=2), EventKind.NOTIFICATION_FAILED, "ackd")
    assert dict(gone.detail) == {
        "recipient": "cy", "recipient_kind": "user", "reason": "status_due", "step": None,
        "contact": 2, "since": NOW.isoformat(), "error": "user cy no longer has contact 2"}
    assert follow.lost(later, None, NOW).detail["error"] == "user cy is no longer configured"


def test_a_follow_up_armed_before_digests_goes_by_its_index() -> None:
    old = '["status_due","cy",1,"2026-01-05T09:00:00+00:00",""]'
    later = FollowUp.from_key(old)
    assert later == FollowUp(MessageReason.STATUS_DUE, "cy", 1, NOW)
    again = follow.message(later, User("cy", (PUSH, SMS)), None)
    assert again is not None
    assert (again.contact, again.short) == (1, True)


def test_a_person_with_only_delayed_contacts_gets_the_first_at_once() -> None:
    reached = follow.reach(User("cy", (SMS, replace(SMS, delay=timedelta(minutes=5)))),
                           MessageReason.STATUS_DUE, NOW, status_every=900.0)
    assert [(m.contact, m.status_every) for m in reached.now] == [(0, 900.0)]
    assert [(due - NOW, f.contact) for due, f in reached.later] == [(timedelta(minutes=5), 1)]


def _event(kind: EventKind, actor: str) -> TimelineEvent:
    return TimelineEvent(NOW, kind, actor)


STATUS = FollowUp(MessageReason.STATUS_DUE, "ana", 1, NOW)
JOIN = FollowUp(MessageReason.RESPONDER_ADDED, "cy", 1, NOW, "ana")
WANTED = [
    pytest.param(STATUS, True, [], True, id="reminder-unanswered"),
    pytest.param(STATUS, True, [_event(EventKind.STATUS_UPDATE, "bo")], False,
                 id="reminder-someone-updated"),
    pytest.param(STATUS, True, [_event(EventKind.NOTE, "ana")], True,
                 id="reminder-a-plain-note-is-no-update"),
    pytest.param(JOIN, True, [_event(EventKind.NOTE, "bo")], True, id="join-others-spoke"),
    pytest.param(JOIN, True, [_event(EventKind.NOTE, "cy")], False, id="join-they-spoke"),
    pytest.param(JOIN, True, [_event(EventKind.ROLE_ASSIGNED, "cy")], False,
                 id="join-they-took-a-role"),
    pytest.param(JOIN, False, [], False, id="resolved"),
]


@pytest.mark.parametrize(("later", "open_", "events", "wanted"), WANTED)
def test_wanted(later: FollowUp, open_: bool, events: list[TimelineEvent], wanted: bool) -> None:
    assert follow.wanted(later, open_, events) is wanted


# -- in-process, on the fake clock ----------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """ana and cy have an SMS two minutes after their push; SEV1 owes an update every 15m."""
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9", step_delay="1h",
                        extra="severities:\n  - {name: SEV1, status_every: 15m}\n"
                              "  - {name: SEV2}\n  - {name: SEV3}\n")
    text = path.read_text()
    for name in ("ana", "cy"):
        push = f'{{url: "json://127.0.0.1:9/{name}"}}'
        text = text.replace(push, f'{push}, {{url: "json://127.0.0.1:9/{name}-sms", '
                                  f'delay: 2m, short: true}}')
    path.write_text(text)
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    clock, notifier = FakeClock(), RecordingNotifier()
    daemon = Daemon(loaded, clock=clock, notifier=notifier, config_path=path)  # reloadable
    await daemon.start()
    yield Api(daemon, notifier, clock)
    await daemon.stop()


async def _later(api: Api, minutes: float) -> None:
    await api.clock.jump(timedelta(minutes=minutes))
    await api.settle()


async def _acknowledged(api: Api) -> int:
    number = await api.fire()
    await api.settle()
    await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    await api.settle()
    return number


@pytest.mark.parametrize("joins", [False, True], ids=["silent", "posts-a-note"])
async def test_a_responder_paged_in_gets_their_sms_unless_they_join(
    api: Api, joins: bool
) -> None:
    number = await _acknowledged(api)
    sent = len(api.paged())
    await api.call("POST", f"/api/v1/incidents/{number}/responders", {"user": "cy"},
                   token=ANA_TOKEN)
    await api.settle()
    assert api.paged()[sent:] == ["cy"]
    if joins:
        await _later(api, 1)
        await api.call("POST", f"/api/v1/incidents/{number}/notes", {"text": "here"},
                       token=CY_TOKEN)
    await _later(api, 2)
    if joins:
        assert api.paged()[sent:] == ["cy"]
        return
    assert api.paged()[sent:] == ["cy", "cy-sms"]
    sms = api.notifier.sent[-1][1]
    assert sms.body.startswith(f"[SEV1] JOIN #{number} payments:")
    assert len(sms.body) <= 160


@pytest.mark.parametrize("updated", [False, True], ids=["silent", "status-update"])
async def test_a_status_reminder_gets_to_the_sms_unless_an_update_came(
    api: Api, updated: bool
) -> None:
    number = await _acknowledged(api)
    await api.call("PUT", f"/api/v1/incidents/{number}/roles/commander", {"user": "ana"},
                   token=ANA_TOKEN)
    sent = len(api.paged())
    await _later(api, 15)
    assert api.paged()[sent:] == ["ana"]  # the reminder's push at once
    if updated:
        await _later(api, 1)
        await api.call("POST", f"/api/v1/incidents/{number}/notes", {"text": "mitigating"},
                       token=ANA_TOKEN)
    await _later(api, 2)
    if updated:
        assert api.paged()[sent:] == ["ana"]
        return
    assert api.paged()[sent:] == ["ana", "ana-sms"]
    assert api.notifier.sent[-1][1].body.startswith(f"#{number} no status update for 15m")


async def test_a_responder_who_acknowledges_through_the_link_has_joined(api: Api) -> None:
    """Pressing the link in their page is something the person did on the incident: their
    SMS is not sent (an earlier release recorded "cy (link)", not cy)."""
    number = await api.fire()
    await api.settle()
    sent = len(api.paged())
    await api.call("POST", f"/api/v1/incidents/{number}/responders", {"user": "cy"},
                   token=ANA_TOKEN)
    await api.settle()
    assert api.paged()[sent:] == ["cy"]
    await _later(api, 1)
    assert await api.press_link(number, "ack", "cy") == 200
    await _later(api, 2)
    assert "cy-sms" not in api.paged()[sent:]


async def test_resolving_cancels_the_follow_up(api: Api) -> None:
    number = await _acknowledged(api)
    await api.call("POST", f"/api/v1/incidents/{number}/responders", {"user": "cy"},
                   token=ANA_TOKEN)
    await api.settle()
    await api.call("POST", f"/api/v1/incidents/{number}/resolve", token=ANA_TOKEN)
    await _later(api, 5)
    assert "cy-sms" not in api.paged()


def _without_sms(name: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        sms = f', {{url: "json://127.0.0.1:9/{name}-sms", delay: 2m, short: true}}'
        assert sms in text
        return text.replace(sms, "")
    return edit


async def _failed(api: Api, number: int) -> list[tuple[str, dict[str, Any]]]:
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    return [(e["actor"], e["detail"]) for e in body["timeline"]
            if e["kind"] == "notification_failed"]


@pytest.mark.parametrize("reason", ["responder_added", "status_due"])
async def test_a_follow_up_whose_contact_a_reload_removed_is_recorded_not_dropped(
    api: Api, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """cy's SMS (a responder paged in) or ana's (a status reminder) waits its two minutes; a
    reload takes it away meanwhile: nothing goes to what is left, and the timeline and a
    WARNING line name the message, the person and the contact that is gone."""
    number = await _acknowledged(api)
    who = "cy" if reason == "responder_added" else "ana"
    if reason == "responder_added":
        await api.call("POST", f"/api/v1/incidents/{number}/responders", {"user": "cy"},
                       token=ANA_TOKEN)
        await api.settle()
    else:
        await api.call("PUT", f"/api/v1/incidents/{number}/roles/commander", {"user": "ana"},
                       token=ANA_TOKEN)
        await _later(api, 15)
    sent = len(api.paged())
    assert api.paged()[-1] == who  # the push at once; the SMS armed two minutes on
    await reload(api, _without_sms(who))
    caplog.clear()
    await _later(api, 2)
    assert api.paged()[sent:] == []
    [(actor, detail)] = await _failed(api, number)
    assert actor == "ackd"
    assert {k: detail[k] for k in ("recipient", "reason", "contact", "error")} == {
        "recipient": who, "reason": reason, "contact": 2,
        "error": f"user {who} no longer has contact 2"}
    [line] = [r for r in caplog.records if "delayed contact" in r.getMessage()]
    assert line.levelname == "WARNING"
    assert line.getMessage() == (
        f"incident #{number}: the {reason} message to {who}'s delayed contact 2 was not sent:"
        f" user {who} no longer has contact 2")


async def test_a_reload_names_the_follow_ups_and_reminders_it_leaves_without_a_recipient(
    api: Api,
) -> None:
    """cy, paged in, waits for his SMS; bo commands, so the next status reminder is his. A
    reload that gives cy's SMS another URL and removes bo (and his layer) answers both now,
    not when they come due."""
    number = await _acknowledged(api)
    await api.call("POST", f"/api/v1/incidents/{number}/responders", {"user": "cy"},
                   token=ANA_TOKEN)
    status, _ = await api.call("PUT", f"/api/v1/incidents/{number}/roles/commander",
                               {"user": "bo"}, token=ANA_TOKEN)
    assert status == 200
    await api.settle()

    def edit(text: str) -> str:
        text = text.replace("/cy-sms", "/cy-new-sms")
        lines = [line for line in text.splitlines() if "name: bo," not in line
                 and "name: secondary" not in line and "oncall: secondary" not in line]
        return "\n".join(lines) + "\n"

    rewrite(Path(str(api.daemon.config_path)), edit)
    status, body = await api.call("POST", "/-/reload")
    assert status == 200, body
    assert [w["message"] for w in body["warnings"] if w["kind"] == "config_message_lost"] == [
        "1 open incident(s) wait to send cy the responder_added message through a delayed"
        " contact (contact 2) that this config removes or gives another URL: it will not be"
        f" sent (#{number})",
        "1 open incident(s) owe status updates, and bo (their commander), whom their reminder"
        f" goes to, is no user of this config: it will remind nobody (#{number})"]
    assert {w["incident_count"] for w in body["warnings"]} == {1}
