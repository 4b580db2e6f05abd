"""What a reload says of the messages still waiting to go that name their recipient: the
incident layer's delayed ones (a follow-up's contact, a status reminder's person) and the
queued notifications (outbox rows) whose contact the new file removes or gives another URL.
Pure rules as tables, the store's one read on both stores, and a queued page in-process on
the fake clock: named at the reload, failed (never sent to the new URL) at its turn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.core.model import IncidentState, MessageReason, Severity
from receiver.delivery.channels import channel_key, lost_summaries
from receiver.delivery.noise import ChannelHistory
from receiver.escalation.keys import contact_digest
from receiver.escalation.policy import Channel, Contact, User
from receiver.incidents import cadence, follow
from receiver.incidents.follow import FollowUp
from receiver.incidents.roles import Role, RoleHolder
from receiver.notify.contacts import unsendable
from receiver.notify.notifier import Delivery, DeliveryStatus, Message
from receiver.store import OutboxMessage, Transaction
from receiver.store.base import Store
from receiver.store.records import ChannelRecord
from receiver.testing import Outcome
from tests.harness import wait_until
from tests.test_api import LABELS, Api, start_api
from tests.test_reload_targets import new_incident, rewrite
from tests.test_store import insert_outbox_payloads
from tests.test_store import store as store  # noqa: F401  (both stores, a fixture)

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
PUSH, SMS = "json://x/push", "json://x/sms"
USERS = {"cy": User("cy", (Contact(PUSH), Contact(SMS, timedelta(minutes=2))))}


def _follow(name: str = "cy", contact: int = 1, url: str = SMS) -> str:
    return FollowUp(MessageReason.RESPONDER_ADDED, name, contact, NOW, "ana",
                    contact_digest(url)).key()


@pytest.mark.parametrize(("key", "lines"), [
    # Still hers to send: at its place, or moved (the digest finds it).
    (_follow(), []),
    (_follow(contact=0), []),
    # Its URL changed, or the contact removed.
    (_follow(url="json://x/old-sms"), [
        "1 open incident(s) wait to send cy the responder_added message through a delayed"
        " contact (contact 2) that this config removes or gives another URL: it will not be"
        " sent (#7)"]),
    # The person removed.
    (_follow(name="zed"), [
        "1 open incident(s) wait to send zed, whom this config removes, the responder_added"
        " message through a delayed contact: it will not be sent (#7)"]),
    # Armed before digests: by its index.
    ('["status_due","cy",1,"2026-01-05T09:00:00+00:00",""]', []),
    ('["status_due","cy",2,"2026-01-05T09:00:00+00:00",""]', [
        "1 open incident(s) wait to send cy the status_due message through a delayed contact"
        " (contact 3) that this config removes or gives another URL: it will not be sent"
        " (#7)"]),
    ("not a follow-up's key", []),
], ids=["kept", "moved", "url-changed", "person-removed", "old-key", "old-key-gone", "unread"])
def test_a_waiting_follow_up_the_config_drops_is_named(key: str, lines: list[str]) -> None:
    assert [line for line, _ in follow.lost_at_reload([(7, key)], USERS)] == lines


def test_follow_ups_lost_alike_make_one_line_counting_each_incident_once() -> None:
    gone = _follow(url="json://x/old-sms")
    found = follow.lost_at_reload([(7, gone), (7, gone), (8, gone), (9, _follow())], USERS)
    assert [numbers for _, numbers in found] == [[7, 8]]
    assert found[0][0].startswith("2 open incident(s) wait to send cy")


SEVERITIES = {"SEV1": Severity("SEV1", 0, status_every=timedelta(minutes=15)),
              "SEV3": Severity("SEV3", 2)}


@pytest.mark.parametrize(("armed", "lines"), [
    # The commander, or whoever acknowledged, still a user: reminded.
    ((7, "SEV1", "cy", None), []),
    ((7, "SEV1", None, "cy"), []),
    # A commander the config removes: the reminder reminds nobody.
    ((7, "SEV1", "zed", "cy"), [
        "1 open incident(s) owe status updates, and zed (their commander), whom their"
        " reminder goes to, is no user of this config: it will remind nobody (#7)"]),
    ((7, "SEV1", None, "zed"), [
        "1 open incident(s) owe status updates, and zed (who acknowledged them), whom their"
        " reminder goes to, is no user of this config: it will remind nobody (#7)"]),
    # A script's token acknowledged: never reminded, so nothing changed.
    ((7, "SEV1", None, "deploy-bot"), []),
    # Nobody accountable yet, or a severity without a cadence now: nothing to lose.
    ((7, "SEV1", None, None), []),
    ((7, "SEV3", "zed", None), []),
], ids=["commander", "acknowledger", "commander-gone", "acknowledger-gone", "token",
        "nobody", "no-cadence"])
def test_a_status_reminder_whose_person_the_config_drops_is_named(
    armed: tuple[int, str, str | None, str | None], lines: list[str],
) -> None:
    found = cadence.unreminded([armed], SEVERITIES.__getitem__, frozenset({"cy"}),
                               frozenset({"deploy-bot"}))
    assert [line for line, _ in found] == lines


CHANNELS = {"ops": Channel("ops", ("json://chat/ops",))}


@pytest.mark.parametrize(("queued", "lines"), [
    ((7, "cy", "user", 1, contact_digest(SMS)), []),
    ((7, "cy", "user", 0, contact_digest(SMS)), []),  # moved: the digest finds it
    ((7, "ops", "channel", 0, contact_digest("json://chat/ops")), []),
    ((7, "cy", "user", 1, contact_digest("json://x/old-sms")), [
        "1 incident(s) have notification(s) queued that this config cannot send, as user cy"
        " no longer has contact 2 (removed, or its URL changed): each fails at its turn, on"
        " its incident's timeline (#7)"]),
    ((7, "zed", "user", 0, contact_digest(PUSH)), [
        "1 incident(s) have notification(s) queued that this config cannot send, as user zed"
        " is no longer configured: each fails at its turn, on its incident's timeline (#7)"]),
    ((7, "ops", "channel", 0, contact_digest("json://chat/old-ops")), [
        "1 incident(s) have notification(s) queued that this config cannot send, as channel"
        " ops no longer has url 1 (removed, or its URL changed): each fails at its turn, on"
        " its incident's timeline (#7)"]),
    ((7, "war-room", "channel", 0, ""), [
        "1 incident(s) have notification(s) queued that this config cannot send, as channel"
        " war-room is no longer configured: each fails at its turn, on its incident's"
        " timeline (#7)"]),
    ((7, "cy", "user", None, ""), []),  # names no contact: it fails whatever the config
], ids=["kept", "moved", "channel-kept", "url-changed", "person-removed", "channel-url-changed",
        "channel-removed", "no-contact"])
def test_a_queued_notification_the_config_cannot_send_is_named(
    queued: tuple[int, str, str, int | None, str], lines: list[str],
) -> None:
    assert [line for line, _ in unsendable([queued], USERS, CHANNELS)] == lines


def _addressee(name: str = "cy", kind: str = "user", contact: int | None = 1,
               url: str = SMS) -> OutboxMessage:
    return OutboxMessage(recipient=name, recipient_kind=kind, contact=contact,
                         url_digest=contact_digest(url) if url else "",
                         reason=MessageReason.TRIGGERED, step=0, run=0)


_HELD = ("1 incident(s) have notification(s) held back by the rate limit whose summary this"
         " config cannot send, as ")


@pytest.mark.parametrize(("summary", "lines"), [
    ((7, channel_key(SMS), _addressee()), []),
    ((7, channel_key(SMS), _addressee(contact=0)), []),  # moved: the digest finds it
    ((7, channel_key("json://chat/ops"), _addressee("ops", "channel", 0, "json://chat/ops")),
     []),
    ((7, channel_key("json://x/old-sms"), _addressee(url="json://x/old-sms")), [
        _HELD + "user cy no longer has contact 2 (removed, or its URL changed): the summary"
        " is dropped at its turn (#7)"]),
    ((7, channel_key(PUSH), _addressee("zed", contact=0, url=PUSH)), [
        _HELD + "user zed is no longer configured: the summary is dropped at its turn (#7)"]),
    ((7, channel_key("json://chat/old"), _addressee("ops", "channel", 0, "json://chat/old")), [
        _HELD + "channel ops no longer has url 1 (removed, or its URL changed): the summary"
        " is dropped at its turn (#7)"]),
    # Addressed before digests: by its index, and the channel's digest says the URL changed.
    ((7, channel_key("json://x/old-sms"), _addressee(url="")), [
        _HELD + "user cy has another URL for contact 2: the summary is dropped at its turn"
        " (#7)"]),
    ((7, channel_key(SMS), _addressee(url="")), []),
], ids=["kept", "moved", "channel-kept", "url-changed", "person-removed", "channel-url-changed",
        "old-addressee-url-changed", "old-addressee-kept"])
def test_a_held_back_summary_the_config_cannot_send_is_named(
    summary: tuple[int, str, OutboxMessage], lines: list[str],
) -> None:
    assert [line for line, _ in lost_summaries([summary], USERS, CHANNELS)] == lines


def test_a_summary_holding_back_several_incidents_is_one_line_naming_each() -> None:
    gone = channel_key("json://x/old-sms"), _addressee(url="json://x/old-sms")
    found = lost_summaries([(7, *gone), (8, *gone), (9, channel_key(SMS), _addressee())],
                           USERS, CHANNELS)
    assert [numbers for _, numbers in found] == [[7, 8]]
    assert found[0][0].startswith("2 incident(s) have notification(s) held back")


async def test_the_store_gives_what_waits_to_be_sent_in_one_read(
    store: Store,  # noqa: F811
) -> None:
    """Follow-ups and armed cadences of open incidents (with whom a reminder goes to, read
    as the person where an earlier release stored an acknowledgement through a link as
    "eve (link)": a reload warned that "eve (link)" was no user), and every outbox row whose
    payload reads, by incident."""
    later = NOW + timedelta(minutes=10)
    page = OutboxMessage(recipient="ana", recipient_kind="user", contact=0, url_digest="d",
                         reason=MessageReason.TRIGGERED, step=0, run=0)
    note = OutboxMessage(recipient="ops", recipient_kind="channel", contact=0,
                         reason=MessageReason.STAKEHOLDER_RESOLVED)

    async def job(tx: Transaction) -> list[int]:
        numbers = [await tx.insert_incident(new_incident(k), None) for k in "abcde"]
        a, b, c, d, e = numbers
        await tx.arm(a, [(later, "follow", "fa"), (later, "cadence", "status"),
                         (later, "contact", "0:0:0:ana:1.x"), (later, "step", "0:0:1")])
        await tx.arm(b, [(later, "follow", "fb"), (later, "cadence", "status")])
        await tx.arm(c, [(later, "cadence", "status")])
        await tx.arm(d, [(later, "cadence", "status")])
        await tx.arm(e, [(later, "cadence", "status")])
        await tx.set_role(a, RoleHolder(Role.COMMANDER, "cy", NOW, "ana"))
        await tx.set_role(c, RoleHolder(Role.SCRIBE, "cy", NOW, "ana"))
        await tx.update_incident(b, NOW, state=IncidentState.RESOLVED, resolved_at=NOW,
                                 resolved_by="ana")
        await tx.update_incident(c, NOW, state=IncidentState.ACKNOWLEDGED,
                                 acknowledged_at=NOW, acknowledged_by="bo")
        # d was acknowledged by dan, who un-acknowledged it: nobody holds it.
        await tx.update_incident(d, NOW, acknowledged_at=NOW, acknowledged_by="dan")
        await tx.update_incident(e, NOW, state=IncidentState.ACKNOWLEDGED,
                                 acknowledged_at=NOW, acknowledged_by="eve (link)")
        await tx.enqueue(a, [page], NOW)
        await tx.enqueue(b, [note], NOW)  # a resolved incident's note still goes
        # The rate limit held back messages about c, then a, from ana's URL: its summary
        # waits, addressed to her; a channel with nothing held back names nobody.
        await tx.save_channels([
            ChannelRecord("held", ChannelHistory(held_back=2), page, later),
            ChannelRecord("quiet", ChannelHistory(), note, None)])
        await tx.hold_back("held", [c], NOW)
        await tx.hold_back("held", [a], later)
        return numbers

    a, b, c, d, e = await store.write(job)
    await insert_outbox_payloads(store, a, ["{not json"])  # fails at its turn regardless
    waiting = await store.waiting_messages()
    assert waiting.follow_ups == [(a, "fa")]
    assert waiting.reminders == [(a, "SEV1", "cy", None), (c, "SEV1", None, "bo"),
                                 (d, "SEV1", None, None), (e, "SEV1", None, "eve")]
    assert waiting.queued == [(a, page), (b, note)]
    assert waiting.summaries == [(a, "held", page), (c, "held", page)]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path, reloadable=True)
    yield started
    await started.daemon.stop()


async def test_a_queued_page_whose_url_a_reload_changes_is_named_then_failed_not_redirected(
    api: Api, caplog: pytest.LogCaptureFixture,
) -> None:
    """ana's page failed once and waits for its retry when a reload gives her push another
    URL. The answer names it; at its turn it is not sent (neither to the URL it was queued
    for nor to the new one): it fails on the timeline, and the step, which reached nobody,
    escalates at once rather than at its 5 minutes."""
    old, new = "json://127.0.0.1:9/ana", "json://127.0.0.1:9/ana-new"
    api.notifier.set_outcome(old, Outcome(DeliveryStatus.FAILURE))
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]  # failed; its retry is due in 200 ms
    path = Path(str(api.daemon.config_path))
    rewrite(path, lambda text: text.replace(f'"{old}"', f'"{new}"'))
    caplog.set_level(logging.WARNING)

    status, body = await api.call("POST", "/-/reload")
    assert status == 200, body
    line = ("1 incident(s) have notification(s) queued that this config cannot send, as user"
            " ana no longer has contact 1 (removed, or its URL changed): each fails at its"
            f" turn, on its incident's timeline (#{number})")
    assert body["warnings"] == [{
        "kind": "config_queued_lost", "file": str(path), "line": None,
        "key": "(open incidents)", "message": line, "incidents": [number],
        "incident_count": 1}]
    assert [(r.getMessage(), getattr(r, "event", "")) for r in caplog.records
            if r.name == "receiver.app.daemon"] == [(line, "config_queued_lost")]

    api.clock.advance(timedelta(seconds=1))  # the retry's turn
    await api.settle()
    assert [u for u, _ in api.notifier.sent] == [old, "json://127.0.0.1:9/bo"]
    _, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    failed = [e["detail"] for e in incident["timeline"] if e["kind"] == "notification_failed"]
    assert [d.get("error") for d in failed if d.get("recipient") == "ana"] == [
        "simulated failure", "user ana no longer has contact 1"]
    assert any(d.get("escalating_early") for d in failed)


async def test_a_page_waiting_for_its_urls_turn_is_not_sent_to_a_url_a_reload_replaced(
    api: Api, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A send waits for its URL's turn behind the one before it (a slow endpoint). ana's
    second page, leased and rendered for her push's URL, is waiting so when a reload gives
    the push another URL: at its turn it is not sent there, but decided again, and fails on
    its timeline as the queued one does (it went to the old URL before this release)."""
    old = "json://127.0.0.1:9/ana"
    release = asyncio.Event()
    send = api.notifier.send

    async def slow(url: str, message: Message) -> Delivery:
        delivery = await send(url, message)
        await release.wait()  # the first page's endpoint hangs until the test lets it go
        return delivery

    monkeypatch.setattr(api.notifier, "send", slow)
    first = await api.fire()
    await wait_until(lambda: _true(len(api.notifier.sent) == 1), 5, "the first page's send")
    second = await api.fire({**LABELS, "alertname": "PaymentQueueStuck"})
    await wait_until(lambda: _true(api.daemon.dispatcher.in_flight == 2), 5,
                     "the second page waiting for its turn")
    rewrite(Path(str(api.daemon.config_path)), lambda text: text.replace(
        f'"{old}"', f'"{old}-new"'))
    assert api.daemon.reload()
    release.set()
    await api.settle()
    # The first, already on its way; then bo: the second's step reached nobody, it goes on.
    assert [u for u, _ in api.notifier.sent] == [old, "json://127.0.0.1:9/bo"]
    _, incident = await api.call("GET", f"/api/v1/incidents/{second}")
    assert [e["detail"].get("error") for e in incident["timeline"]
            if e["kind"] == "notification_failed" and e["detail"].get("recipient") == "ana"
            ] == ["user ana no longer has contact 1"]
    _, incident = await api.call("GET", f"/api/v1/incidents/{first}")
    assert "notification_sent" in [e["kind"] for e in incident["timeline"]]


async def _true(value: bool) -> bool:
    return value


async def test_a_held_back_summary_whose_url_a_reload_changes_is_named(api: Api) -> None:
    """The rate limit held back messages about an incident from ana's push; their summary
    waits for its turn when a reload gives the push another URL. The reload's answer names
    it, as it names the queued notifications it cannot send."""
    old = "json://127.0.0.1:9/ana"
    number = await api.fire()
    await api.settle()
    now = api.clock.now()
    addressee = _addressee("ana", contact=0, url=old)

    async def held(tx: Transaction) -> None:
        await tx.save_channels([ChannelRecord(channel_key(old), ChannelHistory(held_back=3),
                                              addressee, now + timedelta(minutes=10))])
        await tx.hold_back(channel_key(old), [number], now)

    await api.daemon.store.write(held)
    path = Path(str(api.daemon.config_path))
    rewrite(path, lambda text: text.replace(f'"{old}"', f'"{old}-new"'))

    status, body = await api.call("POST", "/-/reload")
    assert status == 200, body
    assert [w for w in body["warnings"] if w["kind"] == "config_queued_lost"] == [{
        "kind": "config_queued_lost", "file": str(path), "line": None,
        "key": "(open incidents)", "incidents": [number], "incident_count": 1,
        "message": "1 incident(s) have notification(s) held back by the rate limit whose"
                   " summary this config cannot send, as user ana no longer has contact 1"
                   " (removed, or its URL changed): the summary is dropped at its turn"
                   f" (#{number})"}]
