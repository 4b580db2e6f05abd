"""The outbox dispatcher on a real SQLite store and a fake clock.

Where only the dispatcher's decisions matter, RecordingNotifier stands in for Apprise; where
delivery itself matters (hung and refusing endpoints), real Apprise posts to local sinks.
Virtual time moves only by FakeClock.jump; `eventually` waits for the store's I/O threads,
never for a span of time the code under test is meant to wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from receiver.config.build import parse
from receiver.config.model import Config
from receiver.core.errors import StoreUnavailable
from receiver.core.model import (
    Alert,
    AlertStatus,
    EventKind,
    Incident,
    IncidentState,
    MessageReason,
    TimelineEvent,
)
from receiver.delivery import dispatch
from receiver.delivery import events as delivery_events
from receiver.delivery.channels import channel_key
from receiver.delivery.dispatch import BATCH, RECORD_ROWS, SELF_CHECK, STORE_RETRY, Dispatcher
from receiver.delivery.plan import backoff
from receiver.notify.links import Links
from receiver.notify.messages import BUNDLE_SHOWN
from receiver.notify.notifier import (
    AppriseNotifier,
    Delivery,
    DeliveryStatus,
    Message,
    Notifier,
    mask,
)
from receiver.store import NewIncident, OutboxMessage, OutboxRow, SqliteStore, Transaction
from receiver.store.codec import incident_from_row
from receiver.store.records import IncidentBrief
from receiver.store.sqlite import incidents as sqlite_incidents
from receiver.telemetry.metrics import Metrics
from receiver.testing import FakeClock, Outcome, RecordingNotifier
from tests.sinks import HttpSink, SinkMode

CONFIG = """\
external_url: http://ackd.example
links:
  secret: dispatch-test-secret
notifications:
  workers: 4
  retry: {attempts: 3, backoff: 2s, max_backoff: 3s}
  bundle_window: 30s
  rate_limit: {max: 10, window: 10m}
users: {users}
teams:
  - name: ops
policies:
  - name: page-ana
    steps:
      - notify: [{user: ana}]
route:
  team: ops
  policy: page-ana
  severity: SEV2
"""
ANA = "json://ana:hunter2@127.0.0.1:9/ana"  # a password, to show it never leaves masked
SMS = "json://127.0.0.1:9/ana-sms"
CHAT = "json://127.0.0.1:9/ana-chat"
# Outbox rows name a contact by its index; these are ana's, in order.
USERS: dict[str, list[str]] = {"ana": [ANA, SMS, CHAT]}
FAR_FUTURE = timedelta(days=365)
WAIT = 15.0  # seconds of real time for I/O to settle; never reached when things work


def make_config(users: dict[str, list[str]] | None = None, **notifications: Any) -> Config:
    listed = [{"name": name, "contacts": [{"url": url} for url in urls]}
              for name, urls in (users or USERS).items()]
    config = parse("dispatch-test.yaml", CONFIG.replace("{users}", json.dumps(listed)), {})
    return config.with_overrides(notifications=replace(config.notifications, **notifications))


def payload(url: str, reason: str = "triggered", recipient: str = "ana",
            kind: str = "user", step: int | None = 0,
            users: dict[str, list[str]] | None = None) -> OutboxMessage:
    """A row naming `recipient`'s contact whose URL is `url` (the URL itself is not stored)."""
    index = (users or USERS)[recipient].index(url)
    return message(recipient, kind, index, reason, step)


def message(recipient: str, kind: str, index: int, reason: str = "triggered",
            step: int | None = 0) -> OutboxMessage:
    assert kind in ("user", "channel")
    return OutboxMessage(recipient=recipient, recipient_kind="user" if kind == "user" else
                         "channel", contact=index, reason=MessageReason(reason), step=step)


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (in real time, for the store's threads) until `check` holds."""
    try:
        async with asyncio.timeout(WAIT):
            # Polling: the state lives in SQLite, written on aiosqlite's threads; no event
            # says "this query would now answer differently".
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.002)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@dataclass
class Rig:
    store: SqliteStore
    clock: FakeClock
    notifier: Notifier
    metrics: Metrics
    config: Config
    dispatcher: Dispatcher
    failed: list[tuple[int, OutboxMessage]] = field(default_factory=list)
    _keys: int = 0

    async def incidents(
        self, count: int, pages: Sequence[OutboxMessage] = (), severity: str = "SEV2"
    ) -> list[int]:
        """`count` new incidents, each with one alert and `pages` in the outbox, one commit."""
        now = self.clock.now()
        first = self._keys
        self._keys += count

        async def job(tx: Transaction) -> list[int]:
            ids = []
            for n in range(first, first + count):
                incident_id = await tx.insert_incident(new_incident(n, now, severity), None)
                await tx.write_alerts(incident_id, [alert(n, now)], now)
                await tx.enqueue(incident_id, list(pages), now)
                ids.append(incident_id)
            return ids

        ids = await self.store.write(job)
        self.dispatcher.wake()  # what responder.outbox_listeners does after such a commit
        return ids

    async def enqueue(self, incident_id: int, *pages: OutboxMessage) -> None:
        now = self.clock.now()
        await self.store.write(lambda tx: tx.enqueue(incident_id, list(pages), now))
        self.dispatcher.wake()

    async def set_state(self, incident_id: int, state: IncidentState) -> None:
        now = self.clock.now()
        await self.store.write(lambda tx: tx.update_incident(incident_id, now, state=state))

    async def events(self, incident_id: int, *kinds: EventKind) -> list[TimelineEvent]:
        return [e for e in await self.store.timeline(incident_id) if e.kind in kinds]

    async def outbox(self) -> list[OutboxRow]:
        due = await self.store.due_notifications(self.clock.now() + FAR_FUTURE, 100_000)
        return [row for row, _ in due]

    async def settled(self) -> bool:
        """Nothing due now: every due row was sent and recorded, deferred, or suppressed."""
        due = await self.store.due_notifications(self.clock.now())
        return not due and self.dispatcher.in_flight == 0

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def sent_to(self, url: str) -> list[Message]:
        assert isinstance(self.notifier, RecordingNotifier)
        return self.notifier.messages(url)


def new_incident(n: int, now: datetime, severity: str = "SEV2") -> NewIncident:
    return NewIncident(
        group_key=f'{{}}:{{alertname="Down{n}"}}', route_id="{}", team="ops", severity=severity,
        policy="page-ana", group_labels={"alertname": f"Down{n}"}, opened_at=now,
        external_url="http://alertmanager.example", summary=f"Down{n}",
    )


def alert(n: int, now: datetime) -> Alert:
    return Alert(f"{n:016x}", AlertStatus.FIRING, {"alertname": f"Down{n}", "team": "ops"},
                 {"summary": f"service {n} is down"}, now - timedelta(minutes=1), None)


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path, fake_clock: FakeClock) -> AsyncIterator[RigFactory]:
    rigs: list[Rig] = []

    async def build(notifier: Notifier | None = None,
                    users: dict[str, list[str]] | None = None, **settings: Any) -> Rig:
        store = SqliteStore(tmp_path / f"ackd{len(rigs)}.db")
        await store.open()
        config = make_config(users, **settings)
        metrics = Metrics()
        failed: list[tuple[int, OutboxMessage]] = []

        async def on_failed(incident_id: int, page: OutboxMessage) -> None:
            failed.append((incident_id, page))

        chosen = notifier or RecordingNotifier()
        dispatcher = Dispatcher(store, chosen, fake_clock, metrics, lambda: config, on_failed)
        dispatcher.start()
        rig = Rig(store, fake_clock, chosen, metrics, config, dispatcher, failed)
        rigs.append(rig)
        return rig

    yield build
    for rig in rigs:
        await rig.dispatcher.stop(grace=WAIT)
        await rig.notifier.close()
        await rig.store.close()


# -- success, retries, final failure ---------------------------------------------------------


async def test_success_is_recorded_and_empties_the_outbox(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="receiver")
    rig = await make_rig()
    [incident_id] = await rig.incidents(1, [payload(ANA)])
    await eventually(rig.settled, "the page to be sent")

    [message] = rig.sent_to(ANA)
    assert "#1" in message.title
    assert "http://ackd.example/l/" in message.body  # the signed ack link
    assert await rig.outbox() == []
    [event] = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
    assert event.detail == {
        "recipient": "ana", "recipient_kind": "user", "reason": "triggered", "step": 0,
        "cycle": 0, "url": mask(ANA), "scheme": "json", "attempt": 1, "result": "success",
        "error": "", "seconds": 0.0,
    }
    timeline = str(await rig.store.timeline(incident_id))
    assert "hunter2" not in timeline
    assert "hunter2" not in caplog.text
    assert rig.metric("ackd_notifications_total", scheme="json", result="success") == 1
    assert rig.metric("ackd_notification_duration_seconds_count", scheme="json") == 1
    assert rig.metric("ackd_notification_retries_total", scheme="json") == 0
    assert rig.failed == []


@pytest.mark.parametrize(
    ("outcomes", "attempt_offsets", "kinds", "final_failure"),
    [
        pytest.param(
            [Outcome(DeliveryStatus.FAILURE)], [0, 2, 5],
            [EventKind.NOTIFICATION_FAILED] * 3, True,
            id="fails-3-times-backoff-2s-then-capped-3s",
        ),
        pytest.param(
            [Outcome(DeliveryStatus.TIMEOUT), Outcome(DeliveryStatus.SUCCESS)], [0, 2],
            [EventKind.NOTIFICATION_FAILED, EventKind.NOTIFICATION_SENT], False,
            id="timeout-then-success",
        ),
    ],
)
async def test_failures_retry_with_backoff_on_the_clock(
    make_rig: RigFactory,
    outcomes: list[Outcome],
    attempt_offsets: list[int],
    kinds: list[EventKind],
    final_failure: bool,
) -> None:
    rig = await make_rig(RecordingNotifier({ANA: outcomes}))
    start = rig.clock.now()
    [incident_id] = await rig.incidents(1, [payload(ANA)])
    delivery_kinds = (EventKind.NOTIFICATION_SENT, EventKind.NOTIFICATION_FAILED)

    for count, offset in enumerate(attempt_offsets, start=1):
        await rig.clock.jump(start + timedelta(seconds=offset) - rig.clock.now())

        async def attempted(count: int = count) -> bool:
            return len(await rig.events(incident_id, *delivery_kinds)) == count

        await eventually(attempted, f"attempt {count}")
    await eventually(rig.settled, "the last attempt to be recorded")
    await rig.clock.jump(timedelta(minutes=5))  # nothing more happens, however long we wait
    await eventually(rig.settled, "quiet")

    events = await rig.events(incident_id, *delivery_kinds)
    assert [e.kind for e in events] == kinds
    assert [(e.at - start).total_seconds() for e in events] == attempt_offsets
    assert [e.detail["attempt"] for e in events] == list(range(1, len(kinds) + 1))
    assert len(rig.sent_to(ANA)) == len(kinds)
    assert await rig.outbox() == []
    failed = [(incident_id, payload(ANA))] if final_failure else []
    assert rig.failed == failed
    results = [str(e.detail["result"]) for e in events]
    for result in ("success", "failure", "timeout"):
        assert rig.metric("ackd_notifications_total", scheme="json", result=result) == \
            results.count(result)
    assert rig.metric("ackd_notification_retries_total", scheme="json") == len(kinds) - 1


async def test_a_refused_page_logs_one_warning_an_attempt_and_one_error_when_given_up(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Real Apprise to a port nothing listens on, 3 attempts: each failed attempt is one
    WARNING line (incident, recipient, contact kind, attempt, reason), the last one, given up
    for good, one ERROR line, and nothing else at WARNING or above (Apprise's own warnings,
    the notifier's, said the same thing twice more). An SRE greps for ERROR when pages do not
    arrive; the password never shows."""
    caplog.set_level(logging.DEBUG)
    async with HttpSink(SinkMode.REFUSING) as refusing:
        url = refusing.url("json", "/ana").replace("json://", "json://ana:hunter2@")
        users = {"ana": [url]}
        notifier = AppriseNotifier(2, timedelta(seconds=5))
        rig = await make_rig(notifier, users=users)
        start = rig.clock.now()
        [incident_id] = await rig.incidents(1, [payload(url, users=users)])
        for count, offset in enumerate([0, 2, 5], start=1):
            await rig.clock.jump(start + timedelta(seconds=offset) - rig.clock.now())

            async def attempted(count: int = count) -> bool:
                failed = await rig.events(incident_id, EventKind.NOTIFICATION_FAILED)
                return len(failed) == count

            await eventually(attempted, f"attempt {count}")
        await eventually(rig.settled, "the last attempt to be recorded")

    loud = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert [level for level, _ in loud] == [logging.WARNING, logging.WARNING, logging.ERROR]
    for n, (_, line) in enumerate(loud, start=1):
        assert f"incident #{incident_id} " in line
        assert "to ana via json" in line
        assert f"attempt {n} of 3" in line
        assert "Connection error" in line  # Apprise's reason
        assert "hunter2" not in line
    assert "will retry" in loud[0][1]
    assert "gave up" in loud[2][1]
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize(
    ("attempts_before", "expected"),
    [
        pytest.param(1, timedelta(seconds=2), id="first-retry-waits-backoff"),
        pytest.param(2, timedelta(seconds=4), id="doubles"),
        pytest.param(3, timedelta(seconds=8), id="doubles-again"),
        pytest.param(7, timedelta(seconds=60), id="capped"),
    ],
)
def test_backoff(attempts_before: int, expected: timedelta) -> None:
    assert backoff(timedelta(seconds=2), timedelta(minutes=1), attempts_before) == expected


async def test_a_message_that_cannot_be_rendered_fails_and_is_not_sent(
    make_rig: RigFactory,
) -> None:
    # A name too long for a signed link: the message's ack link cannot be made.
    long_name = "a" * 201
    users = {**USERS, long_name: [SMS]}
    rig = await make_rig(retry_attempts=1, users=users)
    [incident_id] = await rig.incidents(1, [payload(SMS, recipient=long_name, users=users)])
    await eventually(rig.settled, "the failure to be recorded")

    assert rig.sent_to(SMS) == []
    [event] = await rig.events(incident_id, EventKind.NOTIFICATION_FAILED)
    assert event.detail["error"] == "the message could not be rendered"
    assert await rig.outbox() == []
    assert rig.metric("ackd_notifications_total", scheme="json", result="failure") == 1


# -- pages that must not go ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "first_attempt_fails", "why"),
    [
        pytest.param(IncidentState.ACKNOWLEDGED, False, "incident acknowledged", id="acked"),
        pytest.param(IncidentState.RESOLVED, False, "incident resolved", id="resolved"),
        pytest.param(IncidentState.ACKNOWLEDGED, True, "incident acknowledged",
                     id="retry-queued-then-acked"),
    ],
)
async def test_pages_of_a_handled_incident_are_suppressed(
    make_rig: RigFactory, state: IncidentState, first_attempt_fails: bool, why: str
) -> None:
    outcomes = [Outcome(DeliveryStatus.FAILURE), Outcome()] if first_attempt_fails else []
    rig = await make_rig(RecordingNotifier({ANA: outcomes} if outcomes else None))
    [incident_id] = await rig.incidents(1)
    if first_attempt_fails:
        await rig.enqueue(incident_id, payload(ANA))
        await eventually(rig.settled, "the first, failed, attempt")
        assert [r.attempts for r in await rig.outbox()] == [1]  # a retry is queued
    await rig.set_state(incident_id, state)
    if not first_attempt_fails:
        await rig.enqueue(incident_id, payload(ANA))
    # What ends the noise still goes out, to another of ana's contacts.
    await rig.enqueue(incident_id, payload(CHAT, reason=state.value, step=None))
    await rig.clock.jump(timedelta(seconds=2))
    await eventually(rig.settled, "the pending page to be handled")

    assert len(rig.sent_to(ANA)) == (1 if first_attempt_fails else 0)
    assert len(rig.sent_to(CHAT)) == 1
    assert await rig.outbox() == []
    [event] = await rig.events(incident_id, EventKind.NOTIFICATION_SUPPRESSED)
    assert (event.detail["reason"], event.detail["message_reason"]) == (why, "triggered")
    assert event.detail["url"] == mask(ANA)
    assert rig.metric("ackd_notifications_suppressed_total", reason=why) == 1
    assert rig.failed == []


class HeldNotifier(RecordingNotifier):
    """Every send reaches its endpoint at once but reports back only once `release` is set:
    the person has the page, and ackd has not recorded it yet."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def send(self, url: str, message: Message) -> Delivery:
        delivery = await super().send(url, message)
        await self.release.wait()
        return delivery


async def test_a_page_in_flight_when_the_incident_resolves_counts_as_paged(
    make_rig: RigFactory,
) -> None:
    # The race Alertmanager's resolution ran into: ana's endpoint has the page, its
    # notification_sent is not written yet, and the resolution commits in between. Those
    # the responder tells of it are paged_recipients, read in the resolving batch.
    notifier = HeldNotifier()
    rig = await make_rig(notifier)
    [incident_id] = await rig.incidents(1, [payload(ANA)])

    async def in_flight() -> bool:
        return len(notifier.sent) == 1

    await eventually(in_flight, "the page to reach ana's endpoint")
    now = rig.clock.now()

    async def resolve(tx: Transaction) -> list[str]:
        await tx.update_incident(incident_id, now, state=IncidentState.RESOLVED)
        return await tx.paged_recipients(incident_id)

    assert await rig.store.write(resolve) == ["ana"]
    notifier.release.set()
    await eventually(rig.settled, "the page to be recorded")
    assert len(await rig.events(incident_id, EventKind.NOTIFICATION_SENT)) == 1
    # Recorded now: still ana, once, and no page went after the resolution.
    assert await rig.store.write(lambda tx: tx.paged_recipients(incident_id)) == ["ana"]
    assert [url for url, _ in notifier.sent] == [ANA]


async def test_a_page_still_queued_is_not_counted_as_paged(make_rig: RigFactory) -> None:
    # Not handed to a send: after the resolution it is suppressed, never sent, so whoever it
    # names was never paged and is told nothing.
    rig = await make_rig()
    [incident_id] = await rig.incidents(1)
    now = rig.clock.now() + timedelta(minutes=5)

    async def queue_then_resolve(tx: Transaction) -> list[str]:
        await tx.enqueue(incident_id, [payload(ANA)], now)  # due in five minutes
        await tx.update_incident(incident_id, now, state=IncidentState.RESOLVED)
        return await tx.paged_recipients(incident_id)

    assert await rig.store.write(queue_then_resolve) == []


# -- noise control ---------------------------------------------------------------------------


async def test_a_burst_to_one_url_goes_as_one_message_then_one_bundle(
    make_rig: RigFactory,
) -> None:
    # max_hold past the window: these pages wait the whole window (see the max_hold test).
    rig = await make_rig(bundle_window=timedelta(seconds=30), max_hold=timedelta(minutes=1))
    start = rig.clock.now()
    ids = await rig.incidents(1, [payload(SMS)])
    await eventually(rig.settled, "the first page")
    assert len(rig.sent_to(SMS)) == 1  # the first one goes at once
    for _ in range(4):
        await rig.clock.jump(timedelta(seconds=1))
        ids += await rig.incidents(1, [payload(SMS)])
        await eventually(rig.settled, "the page to be deferred")
    assert len(rig.sent_to(SMS)) == 1
    assert {r.next_attempt_at - start for r in await rig.outbox()} == {timedelta(seconds=30)}
    assert {r.attempts for r in await rig.outbox()} == {0}  # waiting is not an attempt

    await rig.clock.jump(start + timedelta(seconds=30) - rig.clock.now())
    await eventually(rig.settled, "the bundle")

    first, bundle = rig.sent_to(SMS)
    assert bundle.title.startswith("4 incidents need you")
    for n, incident_id in enumerate(ids):
        [event] = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
        assert event.detail.get("bundled") == (None if n == 0 else 4)
        assert event.at - start == timedelta(seconds=0 if n == 0 else 30)
    assert rig.metric("ackd_notifications_total", scheme="json", result="success") == 2
    assert rig.metric("ackd_notifications_suppressed_total", reason="bundled") == 3


async def test_a_waiting_bundle_split_between_passes_goes_at_its_time_not_a_window_later(
    make_rig: RigFactory,
) -> None:
    """A pass leases at most BATCH rows, so a bundle of more pages is split between two
    passes at its release (as between two replicas' leases). The second part waited its
    window too: it goes at once, a second message within the budget, not a window later."""
    rig = await make_rig(bundle_window=timedelta(seconds=30), max_hold=timedelta(minutes=1))
    start = rig.clock.now()
    await rig.incidents(1, [payload(SMS)])
    await eventually(rig.settled, "the first page")
    await rig.clock.jump(timedelta(seconds=1))
    ids = await rig.incidents(BATCH + 20, [payload(SMS)])
    await eventually(rig.settled, "the burst to be deferred")
    assert len(rig.sent_to(SMS)) == 1
    assert {r.next_attempt_at - start for r in await rig.outbox()} == {timedelta(seconds=30)}

    await rig.clock.jump(timedelta(seconds=29))
    await eventually(rig.settled, "the bundle")
    assert await rig.outbox() == []
    _, *bundles = rig.sent_to(SMS)
    assert sorted(m.title.split(" ")[0] for m in bundles) == ["20", str(BATCH)]
    for incident_id in ids:
        [event] = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
        assert event.at - start == timedelta(seconds=30)


class AlertReadingStore(SqliteStore):
    """Counts the incidents whose alerts are read (rendering reads them)."""

    read: list[int]

    async def alerts(self, incident_id: int) -> list[Alert]:
        self.read.append(incident_id)
        return await super().alerts(incident_id)


@pytest.mark.parametrize(("reason", "shown"), [("triggered", 5), ("resolved", 10)])
async def test_a_bundle_reads_the_alerts_of_the_incidents_it_shows_only(
    tmp_path: Path, fake_clock: FakeClock, reason: str, shown: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A storm's bundle carries hundreds of rows; its text names the first few incidents
    (messages.BUNDLE_SHOWN pages, NOTES_SHOWN notes), so only theirs are read (whole, and
    their alerts), and only their links signed."""
    signed: list[int] = []
    token = Links.token

    def counted(self: Links, incident_id: int, *args: Any) -> str:
        signed.append(incident_id)
        return token(self, incident_id, *args)

    monkeypatch.setattr(Links, "token", counted)
    decoded: list[int] = []  # incidents a pass's job read whole (not the test's own reads)

    def whole(row: tuple[Any, ...]) -> Incident:
        frame = sys._getframe(1)
        while frame is not None and not frame.f_code.co_qualname.startswith(
                "SqliteStore.lease_and_decide"):
            frame = frame.f_back  # type: ignore[assignment]
        if frame is not None:
            decoded.append(row[0])
        return incident_from_row(row)

    monkeypatch.setattr(sqlite_incidents, "incident_from_row", whole)
    config = make_config(bundle_window=timedelta(seconds=30), max_hold=timedelta(minutes=1))
    notifier = RecordingNotifier()
    store = AlertReadingStore(tmp_path / "ackd.db")
    store.read = []
    await store.open()
    dispatcher = Dispatcher(store, notifier, fake_clock, Metrics(), lambda: config)
    rig = Rig(store, fake_clock, notifier, Metrics(), config, dispatcher)
    dispatcher.start()
    try:
        step = None if reason == "resolved" else 0
        [first] = await rig.incidents(1, [payload(SMS, reason=reason, step=step)])
        await eventually(rig.settled, "the first message")
        await rig.clock.jump(timedelta(seconds=1))
        ids = await rig.incidents(40, [payload(SMS, reason=reason, step=step)])
        await eventually(rig.settled, "the burst to be deferred")
        decoded.clear()
        await rig.clock.jump(timedelta(seconds=29))
        await eventually(rig.settled, "the bundle")
    finally:
        await dispatcher.stop(grace=WAIT)
        await store.close()
    _, bundle = notifier.messages(SMS)
    assert bundle.title.startswith("40 incidents")
    assert store.read == [first, *ids[:shown]]
    assert set(signed) == {first, *ids[:shown]}
    assert decoded == ids[:shown]  # the bundle's pass read those whole, and no other


class FinishCountingStore(SqliteStore):
    """Counts the outbox rows each write job finishes."""

    finished: list[int]

    async def write(self, run: Callable[[Transaction], Awaitable[T]]) -> T:
        async def counted(tx: Transaction) -> T:
            rows = 0
            finish = tx.finish_outbox

            async def finishing(outbox_ids: Sequence[int]) -> None:
                nonlocal rows
                rows += len(outbox_ids)
                await finish(outbox_ids)

            tx.finish_outbox = finishing  # type: ignore[method-assign]
            try:
                return await run(tx)
            finally:
                if rows:
                    self.finished.append(rows)

        return await super().write(counted)


async def test_a_big_bundles_results_are_written_a_part_at_a_time(
    tmp_path: Path, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A storm's bundle delivers hundreds of rows: their results go in jobs of RECORD_ROWS
    rows, so that no one job holds the loop (and the webhooks batched with it) for long;
    every row's result is on its timeline and the outbox is empty. The pass that deferred
    them wrote each deferral to the bundle's one time, and each job its finished rows, in
    one statement over the rows' ids (SQLite's statements traced), not one a row; the
    record's rows, which say one thing to one URL, share one event a job."""
    made: list[int] = []

    def delivery_event(*args: Any) -> TimelineEvent:
        made.append(args[4])
        return delivery_events.delivery_event(*args)

    monkeypatch.setattr(dispatch, "delivery_event", delivery_event)
    config = make_config(bundle_window=timedelta(seconds=30), max_hold=timedelta(minutes=1))
    notifier = RecordingNotifier()
    store = FinishCountingStore(tmp_path / "ackd.db")
    store.finished = []
    await store.open()
    assert store._writer is not None
    statements: list[str] = []
    store._writer.set_trace_callback(statements.append)
    dispatcher = Dispatcher(store, notifier, fake_clock, Metrics(), lambda: config)
    rig = Rig(store, fake_clock, notifier, Metrics(), config, dispatcher)
    dispatcher.start()
    try:
        await rig.incidents(1, [payload(SMS)])
        await eventually(rig.settled, "the first page")
        await rig.clock.jump(timedelta(seconds=1))
        ids = await rig.incidents(150, [payload(SMS)])
        await eventually(rig.settled, "the burst to be deferred")
        leases = [s for s in statements if s.startswith("UPDATE outbox SET leased_from")]
        deferrals = [s for s in statements if s.startswith("UPDATE outbox SET attempts")]
        assert len(deferrals) <= len(leases) < 150
        due = {r.next_attempt_at for r in await rig.outbox()}
        assert due == {rig.clock.now() + timedelta(seconds=29)}
        store.finished.clear()
        statements.clear()
        made.clear()
        await rig.clock.jump(timedelta(seconds=29))
        await eventually(rig.settled, "the bundle")
        _, bundle = notifier.messages(SMS)
        assert bundle.title.startswith("150 incidents")
        assert store.finished == [RECORD_ROWS, RECORD_ROWS, 150 - 2 * RECORD_ROWS]
        assert len([s for s in statements if s.startswith("DELETE FROM outbox")]) == 3
        assert made == [150, 150, 150]  # one event a part of RECORD_ROWS rows
        for incident_id in ids:
            [sent] = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
            assert (sent.detail["bundled"], sent.detail["recipient"]) == (150, "ana")
        assert await rig.outbox() == []
    finally:
        store._writer.set_trace_callback(None)
        await dispatcher.stop(grace=WAIT)
        await store.close()


async def test_a_burst_of_resolutions_goes_as_one_note_then_one_bundle(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(bundle_window=timedelta(seconds=30))
    start = rig.clock.now()
    note = payload(CHAT, reason="resolved", step=None)
    ids = await rig.incidents(1, [note])
    await eventually(rig.settled, "the first note")
    await rig.clock.jump(timedelta(seconds=1))
    ids += await rig.incidents(30, [note])
    await eventually(rig.settled, "the burst to be deferred")
    assert len(rig.sent_to(CHAT)) == 1
    await rig.clock.jump(timedelta(seconds=29))
    await eventually(rig.settled, "the bundle")

    first, bundle = rig.sent_to(CHAT)
    assert first.title == f"#{ids[0]} resolved"
    listed = ", ".join(f"#{i}" for i in ids[1:11])
    assert bundle.title == f"30 incidents resolved: {listed} and 20 more"
    for n, incident_id in enumerate(ids):
        [event] = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
        assert event.detail.get("bundled") == (None if n == 0 else 30)
        assert event.at - start == timedelta(seconds=0 if n == 0 else 30)
    assert rig.metric("ackd_notifications_suppressed_total", reason="bundled") == 29


async def test_a_note_does_not_delay_the_next_page(make_rig: RigFactory) -> None:
    rig = await make_rig(bundle_window=timedelta(seconds=30))
    [resolved] = await rig.incidents(1, [payload(SMS, reason="resolved", step=None)])
    await eventually(rig.settled, "the note")
    await rig.clock.jump(timedelta(seconds=1))
    [paging] = await rig.incidents(1, [payload(SMS)])
    await eventually(rig.settled, "the page")

    note, page = rig.sent_to(SMS)
    assert note.title == f"#{resolved} resolved"
    assert page.title.startswith(f"[SEV2] #{paging} ")
    assert await rig.outbox() == []


@pytest.mark.parametrize(
    ("severities", "waited"),
    [
        pytest.param(("SEV2",), [5], id="high-urgency-waits-max-hold"),
        pytest.param(("SEV3",), [29], id="low-urgency-waits-the-window"),
        pytest.param(("SEV3", "SEV2"), [6, 5], id="high-pulls-the-waiting-low-one-along"),
    ],
)
async def test_a_high_urgency_page_waits_at_most_max_hold(
    make_rig: RigFactory, severities: tuple[str, ...], waited: list[int]
) -> None:
    rig = await make_rig(bundle_window=timedelta(seconds=30), max_hold=timedelta(seconds=5))
    start = rig.clock.now()
    await rig.incidents(1, [payload(SMS)])
    await eventually(rig.settled, "the first page")
    ids, due = [], []
    for severity in severities:  # one second apart, each to the same phone
        await rig.clock.jump(timedelta(seconds=1))
        ids += await rig.incidents(1, [payload(SMS)], severity=severity)
        due.append(rig.clock.now())
        await eventually(rig.settled, "the page to be deferred")
    assert len(rig.sent_to(SMS)) == 1
    while rig.clock.now() < start + timedelta(seconds=30):  # each second's pass in its turn
        await rig.clock.jump(timedelta(seconds=1))
        await eventually(rig.settled, "that second's work")

    assert len(rig.sent_to(SMS)) == 2  # the first page, then one bundle (or single page)
    for incident_id, became_due, wait in zip(ids, due, waited, strict=True):
        [event] = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
        assert event.at - became_due == timedelta(seconds=wait)


async def test_notes_share_the_budget_leave_a_slot_to_pages_and_are_summarised(
    make_rig: RigFactory,
) -> None:
    window = timedelta(minutes=10)
    rig = await make_rig(bundle_window=timedelta(0), rate_limit=3, rate_window=window)
    start = rig.clock.now()
    notes = []
    for _ in range(5):
        notes += await rig.incidents(1, [payload(CHAT, reason="resolved", step=None)])
        await eventually(rig.settled, "the note")
        await rig.clock.jump(timedelta(seconds=1))
    assert len(rig.sent_to(CHAT)) == 2  # the third slot is left to a page
    [paging] = await rig.incidents(1, [payload(CHAT)])
    await eventually(rig.settled, "the page")
    assert rig.sent_to(CHAT)[-1].title.startswith(f"[SEV2] #{paging} ")

    for incident_id in notes[2:]:
        [held] = await rig.events(incident_id, EventKind.NOTIFICATION_SUPPRESSED)
        assert (held.detail["reason"], held.detail["message_reason"]) == \
            ("rate limited", "resolved")
    await rig.clock.jump(start + window + timedelta(seconds=1) - rig.clock.now())

    async def summary_sent() -> bool:
        return rig.sent_to(CHAT)[-1].title.endswith("held back")

    await eventually(summary_sent, "the summary")  # no outbox row stands for it
    await eventually(rig.settled, "the summary to be recorded")
    summary = rig.sent_to(CHAT)[-1]
    listed = ", ".join(f"#{i}" for i in notes[2:])
    # each held incident by severity and headline; no acknowledge link, as no page was held
    assert summary.body.splitlines() == [
        f"3 notifications were held back in the last 10m (3 resolved): incidents {listed}.",
        *(f"[SEV2] #{incident_id} ops: Down{incident_id - 1}" for incident_id in notes[2:]),
    ]
    assert len(rig.sent_to(CHAT)) == 4
    for incident_id in notes[2:]:
        [told] = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
        assert (told.detail["reason"], told.detail["held"]) == ("held_back_summary", 3)


async def test_high_urgency_pages_beyond_the_budget_go_and_the_summary_says_what_was_held(
    make_rig: RigFactory,
) -> None:
    """A page is never dropped for noise: beyond the URL's budget, every page of a
    high-urgency incident still goes (bundled, counted in the budget), any step of it;
    low-urgency pages and notes are held back, and their summary names each incident's
    severity and headline, with the acknowledge link of those that still wait for one."""
    window = timedelta(minutes=10)
    rig = await make_rig(bundle_window=timedelta(0), rate_limit=2, rate_window=window)
    start = rig.clock.now()

    async def at(second: int) -> None:
        await eventually(rig.settled, "the pass")
        await rig.clock.jump(start + timedelta(seconds=second) - rig.clock.now())

    [low1] = await rig.incidents(1, [payload(SMS)], severity="SEV3")
    await at(1)
    [low2] = await rig.incidents(1, [payload(SMS)], severity="SEV3")
    await at(2)
    [low3] = await rig.incidents(1, [payload(SMS)], severity="SEV3")  # the budget is spent
    await at(3)
    urgent = await rig.incidents(2, [payload(SMS)], severity="SEV1")  # one bundle
    await at(4)
    urgent += await rig.incidents(1, [payload(SMS)], severity="SEV1")
    await at(5)
    await rig.set_state(low1, IncidentState.RESOLVED)
    await rig.enqueue(low1, payload(SMS, reason="resolved", step=None))
    await at(6)
    await rig.enqueue(urgent[0], payload(SMS, reason="escalated", step=1))  # its next step
    await at(7)

    titles = [m.title for m in rig.sent_to(SMS)]
    assert len(titles) == 5, titles
    assert titles[2] == f"2 incidents need you: #{urgent[0]}, #{urgent[1]}"
    for incident_id in urgent:
        assert not await rig.events(incident_id, EventKind.NOTIFICATION_SUPPRESSED)
    assert len(await rig.events(urgent[0], EventKind.NOTIFICATION_SENT)) == 2
    for incident_id, reason in ((low3, "triggered"), (low1, "resolved")):
        [held] = await rig.events(incident_id, EventKind.NOTIFICATION_SUPPRESSED)
        assert (held.detail["reason"], held.detail["message_reason"]) == \
            ("rate limited", reason)
    assert [i for i in (low1, low2)
            if await rig.events(i, EventKind.NOTIFICATION_SENT)] == [low1, low2]

    await rig.clock.jump(start + timedelta(seconds=6) + window - rig.clock.now())
    rig.dispatcher.wake()

    async def summary_sent() -> bool:
        return rig.sent_to(SMS)[-1].title.endswith("held back")

    await eventually(summary_sent, "the summary")
    await eventually(rig.settled, "the summary to be recorded")
    first, *rest = rig.sent_to(SMS)[-1].body.splitlines()
    assert first == ("2 notifications were held back in the last 10m (1 page, 1 resolved):"
                     f" incidents #{low3}, #{low1}.")
    ack, = (line for line in rest if line.startswith("  Acknowledge: http://ackd.example/l/"))
    assert rest == [f"[SEV3] #{low3} ops: Down2", ack, f"[SEV3] #{low1} ops: Down0"]
    links = Links(rig.config.link_secret, rig.config.external_url, rig.config.link_ttl)
    claim = links.verify(ack.rpartition("/l/")[2], rig.clock.now())
    assert (claim.incident_id, claim.action, claim.recipient) == (low3, "ack", "ana")
    assert len(rig.sent_to(SMS)) == 6


async def test_a_restart_keeps_the_budget_and_sends_what_was_held_before_it(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """The histories live in the store: after a restart the rate window is the one before
    it (a page beyond the budget is held back, not sent), and the summary of what was held
    back before the restart goes out once the window has room."""
    window = timedelta(minutes=10)
    config = make_config(bundle_window=timedelta(0), rate_limit=2, rate_window=window)
    path = tmp_path / "ackd.db"
    start = fake_clock.now()
    held: list[int] = []
    keys = 0

    async def run(notifier: RecordingNotifier, pages: int) -> None:
        nonlocal keys
        store = SqliteStore(path)
        await store.open()
        dispatcher = Dispatcher(store, notifier, fake_clock, Metrics(), lambda: config)
        dispatcher.start()
        rig = Rig(store, fake_clock, notifier, Metrics(), config, dispatcher, _keys=keys)
        try:
            for _ in range(pages):  # low urgency: a high-urgency page is never held
                ids = await rig.incidents(1, [payload(SMS)], severity="SEV3")
                await eventually(rig.settled, "the page")
                if await rig.events(ids[0], EventKind.NOTIFICATION_SUPPRESSED):
                    held.extend(ids)
                await fake_clock.jump(timedelta(seconds=1))
            if not pages:
                await fake_clock.jump(start + window + timedelta(seconds=1) - fake_clock.now())

                async def summary_sent() -> bool:
                    return bool(notifier.sent)

                await eventually(summary_sent, "the summary")
                await eventually(rig.settled, "the summary to be recorded")
        finally:
            keys = rig._keys
            await dispatcher.stop(grace=WAIT)
            await store.close()

    before, after, later = RecordingNotifier(), RecordingNotifier(), RecordingNotifier()
    await run(before, 3)
    assert (len(before.messages(SMS)), len(held)) == (2, 1)
    await run(after, 1)  # restarted within the window: its budget is spent
    assert (after.sent, len(held)) == ([], 2)
    await run(later, 0)  # and once it has room, what both held back is told, once
    [summary] = later.messages(SMS)
    listed = ", ".join(f"#{i}" for i in held)
    assert summary.body.splitlines()[0] == \
        f"2 notifications were held back in the last 10m (2 pages): incidents {listed}."


async def test_two_dispatchers_on_one_store_spend_one_budget(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """Two dispatchers sharing a store (as replicas share a database) gate each URL against
    one history: together they send at most the budget, and one summary of what they held
    back goes out, by one of them."""
    window = timedelta(minutes=10)
    config = make_config(bundle_window=timedelta(0), rate_limit=3, rate_window=window)
    store = SqliteStore(tmp_path / "ackd.db")
    await store.open()
    notifiers = [RecordingNotifier(), RecordingNotifier()]
    dispatchers = [Dispatcher(store, n, fake_clock, Metrics(), lambda: config)
                   for n in notifiers]
    rigs = [Rig(store, fake_clock, n, Metrics(), config, d)
            for n, d in zip(notifiers, dispatchers, strict=True)]
    for dispatcher in dispatchers:
        dispatcher.start()
    try:
        ids: list[int] = []
        for n in range(10):  # each page woken on one of them in turn
            rig = rigs[n % 2]
            rig._keys = n
            ids += await rig.incidents(1, [payload(SMS)], severity="SEV3")
            await eventually(rig.settled, "the page")
            await fake_clock.jump(timedelta(seconds=1))
        pages = [m for n in notifiers for m in n.messages(SMS)]
        assert len(pages) == 3
        held = [i for i in ids
                if await rigs[0].events(i, EventKind.NOTIFICATION_SUPPRESSED)]
        assert len(held) == 7
        await fake_clock.jump(start_of(ids, fake_clock) + window - fake_clock.now())
        for dispatcher in dispatchers:
            dispatcher.wake()

        async def summary_sent() -> bool:
            return sum(len(n.messages(SMS)) for n in notifiers) == 4

        await eventually(summary_sent, "the summary")
        for rig in rigs:
            await eventually(rig.settled, "the summary to be recorded")
        await asyncio.sleep(0.05)
        summaries = [m for n in notifiers for m in n.messages(SMS) if "held back" in m.title]
        assert len(summaries) == 1
        assert summaries[0].body.startswith("7 notifications were held back")
    finally:
        for dispatcher in dispatchers:
            await dispatcher.stop(grace=WAIT)
        await store.close()


def start_of(ids: list[int], clock: FakeClock) -> datetime:
    """When the first of these pages went: the clock moved a second after each."""
    return clock.now() - timedelta(seconds=len(ids)) + timedelta(seconds=1)


async def test_storm_of_500_incidents_is_bounded_per_url_and_fully_recorded(
    make_rig: RigFactory,
) -> None:
    bundle_window, rate_limit, rate_window = timedelta(seconds=1), 3, timedelta(minutes=10)
    rig = await make_rig(
        bundle_window=bundle_window, rate_limit=rate_limit, rate_window=rate_window
    )
    start = rig.clock.now()
    ids: list[int] = []
    for _ in range(25):  # 500 incidents in 5 seconds, each paging ana's two contacts
        ids += await rig.incidents(20, [payload(SMS), payload(CHAT)], severity="SEV3")
        await eventually(rig.settled, "the storm's batch to be handled")
        await rig.clock.jump(timedelta(seconds=0.2))
    await rig.clock.jump(start + rate_window + timedelta(seconds=10) - rig.clock.now())

    async def summaries_sent() -> bool:
        return all(rig.sent_to(url)[-1].title.endswith("held back") for url in (SMS, CHAT))

    await eventually(summaries_sent, "the held-back summaries")
    await eventually(rig.settled, "the summaries to be recorded")

    # The bound: at most rate_limit messages per URL in any rate_window (held-back summaries
    # included, they use the budget too). Everything happened within 2 windows.
    elapsed = rig.clock.now() - start
    windows = -(-elapsed // rate_window)
    bound = rate_limit * windows
    assert bound == 6
    for url in (SMS, CHAT):
        messages = rig.sent_to(url)
        assert 2 <= len(messages) <= bound

    # Nothing lost: every incident's page to every URL is on its timeline, sent or held back.
    suppressed = 0
    for incident_id in ids:
        pages = await rig.events(
            incident_id, EventKind.NOTIFICATION_SENT, EventKind.NOTIFICATION_SUPPRESSED
        )
        outcomes = {(e.detail["url"], e.kind) for e in pages
                    if e.detail["reason"] != "held_back_summary"}
        assert {url for url, _ in outcomes} == {mask(SMS), mask(CHAT)}, incident_id
        held = [e for e in pages if e.kind is EventKind.NOTIFICATION_SUPPRESSED]
        summaries = [e for e in pages if e.detail["reason"] == "held_back_summary"]
        assert len(summaries) == len(held)  # each held page was told about in a summary
        suppressed += len(held)
    assert suppressed > 0
    assert rig.metric("ackd_notifications_suppressed_total", reason="rate limited") == suppressed
    assert await rig.outbox() == []


# -- real Apprise: one endpoint's trouble does not hold up the others ------------------------


async def test_hung_and_refusing_sinks_do_not_delay_a_good_one(make_rig: RigFactory) -> None:
    timeout = timedelta(seconds=2)
    async with (
        HttpSink() as good, HttpSink(SinkMode.HUNG) as hung, HttpSink(SinkMode.REFUSING) as bad
    ):
        urls = {"good": good.url("json", "/ana"), "hung": hung.url("json", "/bob"),
                "bad": bad.url("json", "/cy")}
        users = {**USERS, **{name: [url] for name, url in urls.items()}}
        notifier = AppriseNotifier(4, timeout)
        rig = await make_rig(notifier, users=users, timeout=timeout, retry_attempts=1)
        [hung_id] = await rig.incidents(1, [payload(urls["hung"], "triggered", "hung",
                                                    users=users)])
        await hung.wait_for(1)  # the hung endpoint holds a worker from now on
        [bad_id, good_id] = [
            (await rig.incidents(1, [payload(urls[name], recipient=name, users=users)]))[0]
            for name in ("bad", "good")
        ]

        [request] = await good.wait_for(1)
        assert request.json["title"].startswith("[SEV2]")
        assert rig.dispatcher.in_flight >= 1  # the hung delivery is still waiting
        await eventually(rig.settled, "the hung delivery to time out")

    [sent] = await rig.events(good_id, EventKind.NOTIFICATION_SENT)
    assert sent.detail["seconds"] < timeout.total_seconds()
    [timed_out] = await rig.events(hung_id, EventKind.NOTIFICATION_FAILED)
    [refused] = await rig.events(bad_id, EventKind.NOTIFICATION_FAILED)
    assert (timed_out.detail["result"], refused.detail["result"]) == ("timeout", "failure")
    assert refused.detail["error"]
    assert [i for i, _ in rig.failed] == [hung_id, bad_id] or \
        [i for i, _ in rig.failed] == [bad_id, hung_id]
    for result in ("success", "timeout", "failure"):
        assert rig.metric("ackd_notifications_total", scheme="json", result=result) == 1
    assert await rig.outbox() == []


async def test_pages_queued_behind_a_slow_send_go_as_one_message_when_it_ends(
    make_rig: RigFactory,
) -> None:
    """A slow but working channel (each POST takes HOLD s, under the timeout): the SEV1 pages
    to one person that queue behind the send in progress go out as one bundle when it ends,
    not one after another, so the last waits for that send and its own, not for six."""
    hold = 0.3
    async with HttpSink(SinkMode.SLOW, hold=hold) as sink:
        url = sink.url("json", "/dee")
        users = {**USERS, "dee": [url]}
        page = payload(url, recipient="dee", users=users)
        timeout = timedelta(seconds=5)
        rig = await make_rig(AppriseNotifier(4, timeout), users=users, timeout=timeout,
                             bundle_window=timedelta(0))
        sink.pause()  # the first send stays in progress until the others queued behind it
        ids = await rig.incidents(1, [page], severity="SEV1")
        await sink.wait_for(1)
        for _ in range(5):  # each its own commit and pass: one message each, as before
            ids += await rig.incidents(1, [page], severity="SEV1")

            async def queued(count: int = len(ids)) -> bool:
                due = await rig.store.due_notifications(rig.clock.now())
                return not due and rig.dispatcher.in_flight == count

            await eventually(queued, "the page to queue in the URL's lane")
        resumed = time.time()
        sink.resume()
        await eventually(rig.settled, "the queued pages to be sent")

    first, bundle = sink.requests  # two messages reached the channel, not six
    assert first.json["title"].startswith(f"[SEV1] #{ids[0]} ")
    assert bundle.json["title"].startswith("5 incidents need you")
    for incident_id in ids[1:]:
        assert f"#{incident_id}" in bundle.json["message"]
    # The send in progress ends `hold` after it is resumed; the bundle's is next. Old: the
    # last page waited behind four more sends (4 * hold after that).
    assert bundle.received_at - resumed < 3 * hold
    for n, incident_id in enumerate(ids):
        [sent] = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
        assert (sent.detail["result"], sent.detail.get("bundled")) == \
            ("success", None if n == 0 else 5)
    assert await rig.outbox() == []
    assert rig.metric("ackd_notifications_total", scheme="json", result="success") == 2
    assert rig.metric("ackd_notifications_suppressed_total", reason="bundled") == 4


# -- the store refusing the result -----------------------------------------------------------


class StoreCrashingNotifier:
    """Delivers, then the store goes away before the result can be recorded (a crash)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.sent: list[str] = []

    async def send(self, url: str, message: Message) -> Delivery:
        self.sent.append(url)
        await self.store.close()
        return Delivery(DeliveryStatus.SUCCESS, 0.01)

    async def close(self) -> None:
        return None


async def test_a_result_the_store_refuses_is_sent_again_not_lost(
    tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ackd.db"
    store = SqliteStore(path)
    await store.open()
    notifier = StoreCrashingNotifier(store)
    dispatcher = Dispatcher(store, notifier, fake_clock, Metrics(), make_config)
    rig = Rig(store, fake_clock, notifier, Metrics(), make_config(), dispatcher)
    [incident_id] = await rig.incidents(1, [payload(ANA)])
    dispatcher.start()

    async def logged() -> bool:
        return "could not record" in caplog.text

    await eventually(logged, "the lost commit to be logged")
    await dispatcher.stop(grace=WAIT)
    assert notifier.sent == [ANA]
    assert mask(ANA) in caplog.text
    assert "hunter2" not in caplog.text

    reopened = SqliteStore(path)
    await reopened.open()
    try:
        [(row, _)] = await reopened.due_notifications(fake_clock.now() + FAR_FUTURE)
        assert (row.incident_id, row.attempts) == (incident_id, 0)
        assert await reopened.timeline(incident_id) == []

        again = RecordingNotifier()
        second = Dispatcher(reopened, again, fake_clock, Metrics(), make_config)
        second.start()
        retry = Rig(reopened, fake_clock, again, Metrics(), make_config(), second)
        await eventually(retry.settled, "the row to be sent again")
        await second.stop(grace=WAIT)
        assert len(again.messages(ANA)) == 1  # at-least-once: delivered a second time
        assert len(await reopened.timeline(incident_id)) == 1
    finally:
        await reopened.close()


T = TypeVar("T")


class RefusingStore(SqliteStore):
    """Refuses its next `refuse` writes, as PostgreSQL does while it restarts."""

    refuse = 0

    async def write(self, run: Callable[[Transaction], Awaitable[T]]) -> T:
        if self.refuse:
            self.refuse -= 1
            raise StoreUnavailable("connection was closed in the middle of operation")
        return await super().write(run)


class RestartDuringSendNotifier:
    """Delivers; meanwhile the database restarted: the store refuses the next two writes."""

    def __init__(self, store: RefusingStore) -> None:
        self.store = store
        self.sent: list[str] = []

    async def send(self, url: str, message: Message) -> Delivery:
        self.sent.append(url)
        self.store.refuse = 2
        return Delivery(DeliveryStatus.SUCCESS, 0.01)

    async def close(self) -> None:
        return None


async def test_a_result_the_store_refuses_for_a_moment_is_written_again_and_sent_once(
    tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The message went out while the database restarted: its result is written again
    (RECORD_AGAIN), the row leased to this replica meanwhile, rather than given back at
    once to be sent a second time."""
    store = RefusingStore(tmp_path / "ackd.db")
    await store.open()
    notifier = RestartDuringSendNotifier(store)
    dispatcher = Dispatcher(store, notifier, fake_clock, Metrics(), make_config)
    rig = Rig(store, fake_clock, notifier, Metrics(), make_config(), dispatcher)
    [incident_id] = await rig.incidents(1, [payload(ANA)])
    dispatcher.start()
    try:
        async def recorded() -> bool:
            return bool(await rig.events(incident_id, EventKind.NOTIFICATION_SENT))

        await eventually(recorded, "the result written once the store takes it again")
        await eventually(rig.settled, "the delivery to end")
        assert await rig.outbox() == []
    finally:
        await dispatcher.stop(grace=WAIT)
        await store.close()
    assert notifier.sent == [ANA]
    assert caplog.text.count("trying again in") == 2
    assert "it will be sent again" not in caplog.text


# -- a contact a reload removed ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference_", "error"),
    [
        pytest.param(("ana", "user", 3), "user ana no longer has contact 4", id="contact-gone"),
        pytest.param(("bo", "user", 0), "user bo is no longer configured", id="user-gone"),
        pytest.param(("ops", "channel", 0), "channel ops is no longer configured",
                     id="channel-gone"),
    ],
)
async def test_a_row_whose_contact_is_gone_fails_visibly(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture, reference_: tuple[str, str, int],
    error: str,
) -> None:
    rig = await make_rig()
    name, kind, index = reference_
    [incident_id] = await rig.incidents(1, [message(name, kind, index)])
    await eventually(rig.settled, "the row to fail")

    assert rig.notifier.sent == []  # type: ignore[attr-defined]
    [event] = await rig.events(incident_id, EventKind.NOTIFICATION_FAILED)
    assert (event.detail["error"], event.detail["result"]) == (error, "failure")
    assert await rig.outbox() == []
    assert error in caplog.text
    assert rig.metric("ackd_notifications_total", scheme="unknown", result="failure") == 1
    # A user's page that cannot go moves the escalation on, like one that failed to send.
    assert [i for i, _ in rig.failed] == ([incident_id] if kind == "user" else [])


async def test_a_row_whose_payload_cannot_be_read_fails_visibly(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig()
    [incident_id] = await rig.incidents(1)
    with sqlite3.connect(rig.store.path) as conn:
        conn.execute(
            "INSERT INTO outbox (incident_id, created_at, payload, next_attempt_at)"
            " VALUES (?, 0, ?, 0)",
            (incident_id, '{"recipient": "ana", "recipient_kind": "user", "reason": "nope"}'),
        )
    rig.dispatcher.wake()
    await eventually(rig.settled, "the row to fail")

    assert rig.notifier.sent == []  # type: ignore[attr-defined]
    [event] = await rig.events(incident_id, EventKind.NOTIFICATION_FAILED)
    assert event.detail["error"].startswith(
        "the notification cannot be sent: its stored payload cannot be read: ")
    assert "$.reason" in event.detail["error"]
    assert await rig.outbox() == []
    assert "cannot be read" in caplog.text
    assert rig.metric("ackd_notifications_total", scheme="unknown", result="failure") == 1
    assert rig.failed == []


async def test_a_bundle_of_handled_incidents_leaves_no_shortcut_behind(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(bundle_window=timedelta(seconds=30), max_hold=timedelta(seconds=5))
    start = rig.clock.now()
    await rig.incidents(1, [payload(SMS)])
    await eventually(rig.settled, "the first page")
    await rig.clock.jump(timedelta(seconds=1))
    [acked] = await rig.incidents(1, [payload(SMS)])
    await eventually(rig.settled, "the page to wait until 6s")
    await rig.set_state(acked, IncidentState.ACKNOWLEDGED)
    await rig.clock.jump(timedelta(seconds=5))
    await eventually(rig.settled, "the waiting page to be suppressed")
    assert len(await rig.events(acked, EventKind.NOTIFICATION_SUPPRESSED)) == 1
    await rig.clock.jump(timedelta(seconds=4))
    [later] = await rig.incidents(1, [payload(SMS)])
    await eventually(rig.settled, "the next page to wait")

    assert len(rig.sent_to(SMS)) == 1  # it waits for its bundle, up to max_hold
    [row] = await rig.outbox()
    assert (row.incident_id, row.next_attempt_at - start) == (later, timedelta(seconds=15))


# -- leases: a pass reads each row once, and a crash hides nothing --------------------------


class CountingStore(SqliteStore):
    """Counts the outbox rows the dispatcher reads, by whichever method it reads them."""

    read = 0

    async def due_notifications(self, now: datetime, limit: int = 100) -> list[Any]:
        rows = await super().due_notifications(now, limit)
        self.read += len(rows)
        return rows

    async def lease_and_decide(
        self, now: datetime, limit: int, decide: Callable[[Transaction, Any], Awaitable[Any]]
    ) -> Any:
        async def counted(tx: Transaction, rows: list[Any]) -> Any:
            self.leased.append(len(rows))  # one entry per try of the job
            return await decide(tx, rows)

        self.leased: list[int] = []
        found = await super().lease_and_decide(now, limit, counted)
        self.read += self.leased[-1]
        return found


async def test_rows_in_flight_are_not_read_again_by_later_passes(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    # 200 incidents, each paging a person of its own (so nothing is bundled or deferred), whose
    # endpoint takes a while: early pages are in flight while later commits wake more passes.
    users = {f"u{n}": [f"json://127.0.0.1:9/u{n}"] for n in range(200)}
    config = make_config({**USERS, **users}, workers=4)
    notifier = RecordingNotifier(default=Outcome(delay=timedelta(milliseconds=20)))
    store = CountingStore(tmp_path / "ackd.db")
    await store.open()
    dispatcher = Dispatcher(store, notifier, fake_clock, Metrics(), lambda: config)
    dispatcher.start()
    rig = Rig(store, fake_clock, notifier, Metrics(), config, dispatcher)
    try:
        for name, [url] in users.items():
            await rig.incidents(1, [payload(url, recipient=name, users=users)])

        async def delivered() -> bool:  # not rig.settled: its reads would count
            return len(notifier.sent) == len(users) and dispatcher.in_flight == 0

        await eventually(delivered, "every page to be sent")
    finally:
        await dispatcher.stop(grace=WAIT)
        await store.close()
    assert sorted(url for url, _ in notifier.sent) == sorted(url for [url] in users.values())
    assert store.read == len(users)  # each row read once, however many passes ran


async def test_a_pass_that_cannot_write_its_verdicts_leaves_its_rows_due_and_unleased(
    make_rig: RigFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The lease and the verdicts are one commit. A pass whose verdicts the store refuses
    (here its write of the gate's histories) leaves its rows as they were: due now and
    leased by nobody (on PostgreSQL another replica takes them at once, not after the lease
    ends), not gated; once the store takes the write, the page goes once, counted once."""
    rig = await make_rig()
    refusing = sqlite3.connect(tmp_path / "ackd0.db")
    try:
        refusing.execute("CREATE TRIGGER refuse BEFORE INSERT ON channel_histories"
                         " BEGIN SELECT RAISE(ABORT, 'refused'); END")
        refusing.commit()
        [incident_id] = await rig.incidents(1, [payload(ANA)])

        async def failed() -> bool:
            return "outbox pass failed" in caplog.text

        await eventually(failed, "the pass to fail")
        [(row, _)] = await rig.store.due_notifications(rig.clock.now())
        assert (row.incident_id, row.attempts, row.gated) == (incident_id, 0, False)

        async def nothing_in_flight() -> bool:
            # A wake may have started another pass, failing the same way, meanwhile: what
            # must not happen is a failed pass's rows counted in flight for good.
            return rig.dispatcher.in_flight == 0

        await eventually(nothing_in_flight, "the failed passes to leave nothing in flight")
        refusing.execute("DROP TRIGGER refuse")
        refusing.commit()
    finally:
        refusing.close()
    await rig.clock.jump(timedelta(seconds=5))  # the dispatcher's wait after a failed pass
    await eventually(rig.settled, "the page to be sent")
    assert len(rig.sent_to(ANA)) == 1
    assert len(await rig.events(incident_id, EventKind.NOTIFICATION_SENT)) == 1
    [record] = await rig.store.write(
        lambda tx: tx.lock_channels([channel_key(ANA)], rig.clock.now()))
    assert len(record.history.sent) == 1


async def test_a_lease_left_by_a_crash_ends_when_the_store_opens(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    path = tmp_path / "ackd.db"
    store = SqliteStore(path)
    await store.open()
    now = fake_clock.now()
    incident_id = await store.write(lambda tx: tx.insert_incident(new_incident(0, now), None))
    await store.write(lambda tx: tx.enqueue(incident_id, [payload(ANA)], now))
    [(leased, _)] = await store.lease_due_notifications(now, 10)
    assert await store.lease_due_notifications(now + FAR_FUTURE, 10) == []  # in flight
    assert await store.next_outbox_at(now) is None
    await store.close()  # ackd dies here: the send's result never committed

    reopened = SqliteStore(path)
    await reopened.open()
    try:
        [(row, _)] = await reopened.lease_due_notifications(now, 10)
    finally:
        await reopened.close()
    assert (row.id, row.next_attempt_at, row.attempts) == (leased.id, now, 0)


class NeighbourFailingStore(SqliteStore):
    """A store whose dispatcher passes, once `failing` is set, share their batch with a job
    that fails: the batch runs again without it (Store.write), the pass's job twice."""

    failing = False

    async def lease_and_decide(
        self, now: datetime, limit: int,
        decide: Callable[[Transaction, list[tuple[OutboxRow, Any]]], Awaitable[Any]],
    ) -> Any:
        if not self.failing:
            return await super().lease_and_decide(now, limit, decide)

        async def fails(tx: Transaction) -> None:
            raise RuntimeError("the pass's neighbour fails")

        # Queued right behind the pass's job (the task runs before the writer wakes).
        neighbour = asyncio.ensure_future(self.write(fails))
        try:
            return await super().lease_and_decide(now, limit, decide)
        finally:
            with pytest.raises(RuntimeError, match="neighbour"):
                await neighbour


async def test_a_dropped_summary_is_logged_once_when_its_pass_runs_again(
    tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A summary whose contact a reload removed is dropped by the pass that finds it due,
    and logged after that pass's commit: once, though its job ran twice in its batch."""
    window = timedelta(minutes=10)
    config = make_config(bundle_window=timedelta(0), rate_limit=1, rate_window=window)
    running = [config]
    store = NeighbourFailingStore(tmp_path / "ackd.db")
    await store.open()
    notifier = RecordingNotifier()
    dispatcher = Dispatcher(store, notifier, fake_clock, Metrics(), lambda: running[0])
    dispatcher.start()
    rig = Rig(store, fake_clock, notifier, Metrics(), config, dispatcher)
    try:
        start = fake_clock.now()
        for _ in range(3):
            await rig.incidents(1, [payload(SMS)], severity="SEV3")
            await eventually(rig.settled, "the page")
            await fake_clock.jump(timedelta(seconds=1))
        assert len(notifier.messages(SMS)) == 1  # two held back
        running[0] = make_config({"ana": [ANA]}, bundle_window=timedelta(0), rate_limit=1,
                                 rate_window=window)  # ana's SMS contact is gone
        store.failing = True
        caplog.set_level(logging.WARNING, logger="receiver.delivery.channels")
        await fake_clock.jump(start + window + timedelta(seconds=1) - fake_clock.now())
        dispatcher.wake()

        async def dropped() -> bool:
            return await store.write(lambda tx: tx.next_summary_at()) is None

        await eventually(dropped, "the summary to be dropped")
        await eventually(rig.settled, "the pass to end")
    finally:
        await dispatcher.stop(grace=WAIT)
        await store.close()
    logged = [r.getMessage() for r in caplog.records if "dropped the summary" in r.getMessage()]
    assert logged == ["dropped the summary of 2 held-back message(s) to a contact no longer"
                      " configured"]
    assert len(notifier.messages(SMS)) == 1


# -- a failed page's escalation: the next step's pages ---------------------------------------


async def test_the_next_steps_pages_go_after_a_bundled_page_to_them_all_finally_fails(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """The tester's reproduction (session 11): four incidents' pages to ana go as one bundle to
    a URL that answers 500; when the last attempt fails, each incident escalates at once (here
    its own commit enqueues a page to bo, as the escalation does) and bo must get all four.
    The failed rows were the outbox's last: their ids were taken again by bo's rows, which a
    pass woken by those commits leased and then left, leased for ever, as the failed send's
    own (still in memory as queued until its escalations returned)."""
    async with HttpSink(SinkMode.ERROR) as down, HttpSink() as up:
        users = {"ana": [down.url("json", "/ana")], "bo": [up.url("json", "/bo")]}
        config = make_config(users, retry_attempts=2, retry_backoff=timedelta(seconds=1),
                             bundle_window=timedelta(0))
        store = SqliteStore(tmp_path / "ackd.db")
        await store.open()
        metrics = Metrics()
        escalated: list[int] = []

        async def on_failed(incident_id: int, page: OutboxMessage) -> None:
            escalated.append(incident_id)  # escalating early: the next step pages bo
            await rig.enqueue(incident_id, payload(users["bo"][0], recipient="bo",
                                                   step=1, users=users))

        notifier = AppriseNotifier(4, timedelta(seconds=5))
        dispatcher = Dispatcher(store, notifier, fake_clock, metrics, lambda: config, on_failed)
        rig = Rig(store, fake_clock, notifier, metrics, config, dispatcher)
        dispatcher.start()
        try:
            ids = await rig.incidents(4, [payload(users["ana"][0], users=users)],
                                      severity="SEV1")
            await down.wait_for(1)
            await eventually(rig.settled, "the first attempt to be recorded")
            await fake_clock.jump(timedelta(seconds=1))
            await down.wait_for(2)

            async def paged_bo() -> bool:
                sent = [await rig.events(n, EventKind.NOTIFICATION_SENT) for n in ids]
                return all(sent) and await rig.outbox() == []

            await eventually(paged_bo, "bo's pages to be sent and the outbox to empty")
            for incident_id in ids:
                [sent] = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
                assert sent.detail["recipient"] == "bo"
        finally:
            await dispatcher.stop(grace=WAIT)
            await notifier.close()
            await store.close()
    assert sorted(escalated) == ids
    assert len(down.requests) == 2  # one bundle, two attempts
    assert all(f"#{n}" in str([r.json for r in up.requests]) for n in ids)


async def test_a_row_leased_to_no_send_is_given_back_by_the_self_check_and_sent(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Should a pass ever leave a row leased to this process with no send holding it (the
    lost lease of session 11: the pass took it for one of its sends'), the dispatcher's
    self-check finds it at the loop's first wake SELF_CHECK after that pass, gives it back
    and sends it, and says so; meanwhile the gauge of the oldest due row grows."""
    rig = await make_rig()
    start = rig.clock.now()
    [incident_id] = await rig.incidents(1, [])
    await eventually(rig.settled, "the first pass and its self-check")
    await rig.store.write(lambda tx: tx.enqueue(incident_id, [payload(ANA)], start))
    [row] = await rig.outbox()
    # The pass leases the row and skips it as a send's: the bookkeeping gone wrong.
    rig.dispatcher._queued[row.id] = None  # type: ignore[assignment]
    rig.dispatcher.wake()
    await eventually(rig.settled, "a pass that leases the row and sends nothing")
    del rig.dispatcher._queued[row.id]
    assert rig.sent_to(ANA) == []
    await rig.clock.jump(SELF_CHECK - timedelta(seconds=1))
    assert await rig.store.oldest_due_outbox(rig.clock.now()) == start
    rig.metrics.set_oldest_due(start, rig.clock.now())
    assert rig.metric("ackd_outbox_oldest_due_seconds") == 59
    await rig.clock.jump(timedelta(seconds=1))
    rig.dispatcher.wake()  # a commit that enqueues, a send's end: the loop's next wake

    async def sent() -> bool:
        return bool(rig.sent_to(ANA)) and await rig.outbox() == []

    await eventually(sent, "the self-check to give the row back and a pass to send it")
    assert f"outbox row(s) [{row.id}] were leased to this process but no send held them" \
        in caplog.text
    assert rig.metric("ackd_outbox_leases_recovered_total") == 1
    assert await rig.store.oldest_due_outbox(rig.clock.now()) is None


async def test_pages_queued_behind_a_slow_send_are_suppressed_if_handled_meanwhile(
    make_rig: RigFactory,
) -> None:
    """A page waiting in its URL's lane behind a slow send whose incident is acknowledged
    (or taken) or resolved meanwhile is suppressed at its turn, as the pass suppresses one
    waiting for a bundle: recorded on its timeline, counted, not sent (tester11 finding 3).
    A page still wanted and a note go, the page reading the incident as it is then."""
    async with HttpSink(SinkMode.SLOW, hold=0.1) as sink:
        url = sink.url("json", "/dee")
        users = {**USERS, "dee": [url]}
        page = payload(url, recipient="dee", users=users)
        rig = await make_rig(AppriseNotifier(4, timedelta(seconds=5)), users=users,
                             bundle_window=timedelta(0))
        sink.pause()  # the first send stays in progress until the others queued behind it
        ids = await rig.incidents(1, [page], severity="SEV1")
        await sink.wait_for(1)
        ids += await rig.incidents(3, [page], severity="SEV1")

        async def queued(count: int = 2) -> bool:
            due = await rig.store.due_notifications(rig.clock.now())
            return not due and rig.dispatcher.in_flight == count

        await eventually(queued, "the pages to queue in the URL's lane")
        await rig.set_state(ids[1], IncidentState.ACKNOWLEDGED)
        await rig.set_state(ids[2], IncidentState.RESOLVED)
        await rig.enqueue(ids[1], payload(url, "acknowledged", recipient="dee", users=users))
        await eventually(partial(queued, 3), "the note to queue in the URL's lane")
        sink.resume()
        await eventually(rig.settled, "the queued messages to be sent or suppressed")
    first, second, note = (r.json for r in sink.requests)
    assert first["title"].startswith(f"[SEV1] #{ids[0]} ")
    assert second["title"].startswith(f"[SEV1] #{ids[3]} ")  # alone: the others were handled
    assert f"#{ids[1]}" in note["title"]
    for incident_id, why in ((ids[1], "incident acknowledged"), (ids[2], "incident resolved")):
        [event] = await rig.events(incident_id, EventKind.NOTIFICATION_SUPPRESSED)
        assert event.detail["reason"] == why
        sent = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
        assert [e.detail["reason"] for e in sent] == (
            ["acknowledged"] if incident_id == ids[1] else [])
    assert await rig.outbox() == []
    assert rig.metric("ackd_notifications_suppressed_total", reason="incident acknowledged") == 1
    assert rig.metric("ackd_notifications_suppressed_total", reason="incident resolved") == 1
    assert rig.metric("ackd_notifications_total", scheme="json", result="success") == 3


class GatedNotifier(RecordingNotifier):
    """Records as RecordingNotifier does; the first send stays in progress until `gate` is
    set, so that the messages after it queue in its URL's lane."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def send(self, url: str, message: Message) -> Delivery:
        first = not self.sent
        delivery = await super().send(url, message)
        if first:
            await self.gate.wait()
        return delivery


class ReadCountingStore(SqliteStore):
    """Records the incident ids each write job reads whole (find_incidents, into `reads`)
    and reads the id, state and severity of (incident_briefs, into `briefs`), one list a
    job that read any; `refuse` (counting from 1) names the job reading briefs whose commit
    the store refuses."""

    reads: list[list[int]]
    briefs: list[list[int]]
    refuse: int | None = None

    async def write(self, run: Callable[[Transaction], Awaitable[T]]) -> T:
        read: list[int] = []
        briefed: list[int] = []

        async def counted(tx: Transaction) -> T:
            find, brief = tx.find_incidents, tx.incident_briefs

            async def finding(ids: Sequence[int]) -> dict[int, Incident]:
                read.extend(ids)
                return await find(ids)

            async def briefing(ids: Sequence[int]) -> dict[int, IncidentBrief]:
                briefed.extend(ids)
                return await brief(ids)

            tx.find_incidents = finding  # type: ignore[method-assign]
            tx.incident_briefs = briefing  # type: ignore[method-assign]
            outcome = await run(tx)
            if read:
                self.reads.append(read)
            if briefed:
                self.briefs.append(briefed)
                if len(self.briefs) == self.refuse:
                    raise StoreUnavailable("the database is restarting")
            return outcome

        return await super().write(counted)


async def _queued_behind(
    tmp_path: Path, fake_clock: FakeClock, refuse: int | None
) -> tuple[Rig, ReadCountingStore, GatedNotifier, list[int]]:
    """A page in progress to SMS, and a bundle of 150 pages queued behind it; three of those
    incidents handled while it waits (ids[3] acknowledged, ids[100] resolved, ids[149]
    acknowledged)."""
    config = make_config(bundle_window=timedelta(0), rate_limit=1000)
    notifier = GatedNotifier()
    store = ReadCountingStore(tmp_path / "ackd.db")
    store.reads, store.briefs = [], []
    await store.open()
    dispatcher = Dispatcher(store, notifier, fake_clock, Metrics(), lambda: config)
    rig = Rig(store, fake_clock, notifier, Metrics(), config, dispatcher)
    dispatcher.start()
    await rig.incidents(1, [payload(SMS)])

    async def sending() -> bool:
        return len(notifier.sent) == 1

    await eventually(sending, "the first page to be in progress")
    ids = await rig.incidents(150, [payload(SMS)])

    async def queued() -> bool:
        return not await rig.store.due_notifications(rig.clock.now()) and \
            dispatcher.in_flight == 2

    await eventually(queued, "the bundle to queue behind it")
    for incident_id, state in ((ids[3], IncidentState.ACKNOWLEDGED),
                               (ids[100], IncidentState.RESOLVED),
                               (ids[149], IncidentState.ACKNOWLEDGED)):
        await rig.set_state(incident_id, state)
    store.reads.clear()
    store.briefs.clear()
    store.refuse = refuse
    notifier.gate.set()
    return rig, store, notifier, ids


async def test_a_big_bundle_at_its_turn_is_checked_a_part_at_a_time(
    tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """At a storm's release the passes queued behind the first send join into one message of
    thousands of rows, checked again at its turn: its incidents are read (and the pages no
    longer wanted suppressed) RECORD_ROWS incidents a job, so no one job holds the loop for
    them all; what is suppressed and what goes is as in one job. Only the incidents the
    bundle's text shows are read whole (the others' id, state and severity are all it needs);
    the row shown in place of one handled is read as it is rendered. The delivery's log line
    names its first incidents and how many more, not all of them."""
    caplog.set_level(logging.INFO, "receiver.delivery.dispatch")
    rig, store, notifier, ids = await _queued_behind(tmp_path, fake_clock, None)
    try:
        await eventually(rig.settled, "the bundle")
        handled = {ids[3], ids[100], ids[149]}
        kept = [n for n in ids if n not in handled]
        # The turn's jobs: every queued incident's state read once, RECORD_ROWS a job; read
        # whole, only those of the first BUNDLE_SHOWN rows still wanted.
        assert store.briefs == [ids[:RECORD_ROWS], ids[RECORD_ROWS:2 * RECORD_ROWS],
                                ids[2 * RECORD_ROWS:]]
        assert store.reads == [[ids[0], ids[1], ids[2], ids[4]]]
        _, bundle = notifier.messages(SMS)
        assert bundle.title.startswith("147 incidents")
        # Each shown entry whole (its team, headline and links), ids[5]'s too.
        entries = re.findall(r"^\[SEV\d\] #(\d+) (\w+): .* \(1 alert\)\n  Acknowledge: http",
                             bundle.body, re.M)
        assert entries == [(str(n), "ops") for n in kept[:BUNDLE_SHOWN]]
        for incident_id in ids:
            sent = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
            suppressed = await rig.events(incident_id, EventKind.NOTIFICATION_SUPPRESSED)
            assert (len(sent), len(suppressed)) == ((0, 1) if incident_id in handled else (1, 0))
        assert await rig.outbox() == []
        delivered = [r.getMessage() for r in caplog.records
                     if "delivered in" in r.getMessage() and f"#{kept[0]}," in r.getMessage()]
        assert [line.partition(" triggered")[0] for line in delivered] == [
            "incident " + ", ".join(f"#{n}" for n in kept[:5]) + " and 142 more"]
    finally:
        await rig.dispatcher.stop(grace=WAIT)
        await store.close()


async def test_a_big_bundle_the_store_refuses_part_way_through_its_check_suppresses_once(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    """The store refuses the second part of the check at the bundle's turn: the first part's
    suppression committed and stands; nothing is sent, every other row is given back and
    decided again by a later pass (which suppresses the pages handled since); no page is
    suppressed twice, none is lost."""
    rig, store, notifier, ids = await _queued_behind(tmp_path, fake_clock, 2)

    async def given_back() -> bool:
        # Settled holds too from the bundle's end until the pass it wakes writes its rows'
        # release: leased still, they were in no read of the outbox (under load, 0 rows).
        return await rig.settled() and not rig.dispatcher._unreleased

    try:
        await eventually(given_back, "the check to fail and its rows to be given back")
        assert store.briefs[:2] == [ids[:RECORD_ROWS], ids[RECORD_ROWS:2 * RECORD_ROWS]]
        assert len(notifier.messages(SMS)) == 1
        [event] = await rig.events(ids[3], EventKind.NOTIFICATION_SUPPRESSED)
        assert event.detail["reason"] == "incident acknowledged"
        assert len(await rig.outbox()) == 149
        await rig.clock.jump(STORE_RETRY)
        rig.dispatcher.wake()
        await eventually(rig.settled, "the rows given back to be decided again")
        _, bundle = notifier.messages(SMS)
        assert bundle.title.startswith("147 incidents")
        for incident_id in ids:
            sent = await rig.events(incident_id, EventKind.NOTIFICATION_SENT)
            suppressed = await rig.events(incident_id, EventKind.NOTIFICATION_SUPPRESSED)
            handled = incident_id in (ids[3], ids[100], ids[149])
            assert (len(sent), len(suppressed)) == ((0, 1) if handled else (1, 0))
        assert await rig.outbox() == []
    finally:
        await rig.dispatcher.stop(grace=WAIT)
        await store.close()
