"""Handoff notices on a fake clock: the incoming person hears at the handoff, with the open
incidents of the teams on the schedule; once only, across a restart; a run-time override
moves the notice with the handoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.config.model import Config
from receiver.notify.notifier import DeliveryStatus
from receiver.oncall.handoffs import (
    BUSY_RETRY,
    HandoffNotices,
    OpenIncident,
    next_handoff,
    notice_message,
)
from receiver.oncall.overrides import ADMIN, Actor, parse_change
from receiver.oncall.roster import Roster
from receiver.oncall.schedules import Layer, Rotation, Schedule, ShiftUnit, on_call
from receiver.store import PlannedNotice, Transaction
from receiver.store.postgres.store import PostgresStore
from receiver.testing import FakeClock, Outcome, RecordingNotifier
from tests.harness import wait_until, write_config
from tests.test_api import Api

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # the fake clock's start
AMS = ZoneInfo("Europe/Amsterdam")
HOURLY = """\
      - {name: primary, rotations: [{users: [ana, bo], shift: 1h, start: 2026-01-05T00:00:00}]}"""


def hourly(directory: Path) -> Config:
    """The test config with an hourly primary layer that sends handoff notices."""
    directory.mkdir(exist_ok=True)
    path = write_config(directory / "ackd.yaml", "127.0.0.1:9", step_delay="5m")
    text = path.read_text()
    weekly = next(line for line in text.splitlines() if "{name: primary," in line)
    path.write_text(text.replace(weekly, HOURLY).replace(
        "    timezone: Europe/Amsterdam\n", "    timezone: Europe/Amsterdam\n"
        "    handoff_notices: true\n", 1))
    return replace(config_module.load(path), listen_port=0, data_dir=directory / "data")


def start(directory: Path, clock: FakeClock, notifier: RecordingNotifier) -> Daemon:
    return Daemon(hourly(directory), clock=clock, notifier=notifier)


def notices(notifier: RecordingNotifier) -> list[tuple[str, str]]:
    return [(url.rsplit("/", 1)[1], m.body) for url, m in notifier.sent
            if m.title.startswith("On call now")]


async def settle_until_noticed(api: Api, notifier: RecordingNotifier) -> None:
    """Settle until a notice was sent: its job and its send run on threads, up to ~5 s on a
    loaded machine; the caller asserts who heard."""
    for _ in range(100):
        await api.settle()
        if notices(notifier):
            return


async def test_the_incoming_person_hears_once_with_the_open_incidents(tmp_path: Path) -> None:
    clock, notifier = FakeClock(T0), RecordingNotifier()
    daemon = start(tmp_path, clock, notifier)
    await daemon.start()
    api = Api(daemon, notifier, clock)
    try:
        number = await api.fire()  # ana is on call (10:00 in Amsterdam, the 11th hour)
        await api.settle()
        assert notices(notifier) == []
        await clock.jump(timedelta(minutes=59, seconds=59))
        await api.settle()
        assert notices(notifier) == []
        await clock.jump(timedelta(seconds=1))  # 11:00 in Amsterdam: bo's hour
        await settle_until_noticed(api, notifier)
        [(who, body)] = notices(notifier)
        assert who == "bo"
        assert body.startswith("You are on call now for payments primary, until Mon 05 Jan"
                               " 12:00 CET.")
        assert f"#{number} [SEV1] triggered: " in body
    finally:
        await daemon.stop()

    # Restarted within bo's hour: the notice went out, it does not go again.
    clock.set(T0 + timedelta(hours=1, minutes=30))
    notifier = RecordingNotifier()
    again = start(tmp_path, clock, notifier)
    await again.start()
    try:
        await Api(again, notifier, clock).settle()
        assert notices(notifier) == []
        await clock.jump(timedelta(minutes=30))  # ana's hour
        await Api(again, notifier, clock).settle()
        assert [who for who, _ in notices(notifier)] == ["ana"]
    finally:
        await again.stop()


async def test_a_failed_notice_is_a_warning_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The notifier logs nothing of its own: a notice that did not arrive is the handoff's
    WARNING line, with the contact kind and the reason, not an INFO one."""
    clock, notifier = FakeClock(T0), RecordingNotifier()
    notifier.set_outcome("json://127.0.0.1:9/bo",
                         Outcome(DeliveryStatus.FAILURE, error="connection refused"))
    daemon = start(tmp_path, clock, notifier)
    await daemon.start()
    api = Api(daemon, notifier, clock)
    try:
        await clock.jump(timedelta(hours=1))  # 11:00 in Amsterdam: bo's hour
        await settle_until_noticed(api, notifier)
        assert [who for who, _ in notices(notifier)] == ["bo"]
    finally:
        await daemon.stop()
    assert [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name == "receiver.oncall.handoffs"] == [
        (logging.WARNING, "handoff notice to bo for payments primary via json: failure after"
         " 0.00s: connection refused")]


async def test_a_run_time_override_moves_the_notice(tmp_path: Path) -> None:
    clock, notifier = FakeClock(T0), RecordingNotifier()
    daemon = start(tmp_path, clock, notifier)
    await daemon.start()
    api = Api(daemon, notifier, clock)
    try:
        # cy covers from 09:30 to 10:30 UTC: cy at 09:30, then bo at 10:30, not at 10:00.
        status, body = await api.call("POST", "/api/v1/schedules/payments/overrides", {
            "user": "cy", "layer": "primary", "start": "2026-01-05T09:30:00Z",
            "end": "2026-01-05T10:30:00Z"})
        assert status == 201, body
        await api.settle()
        await clock.jump(timedelta(minutes=30))
        await api.settle()
        assert [who for who, _ in notices(notifier)] == ["cy"]
        await clock.jump(timedelta(minutes=30))
        await api.settle()
        assert [who for who, _ in notices(notifier)] == ["cy"]  # 10:00: cy still, no notice
        await clock.jump(timedelta(minutes=30))
        await api.settle()
        assert [who for who, _ in notices(notifier)] == ["cy", "bo"]
    finally:
        await daemon.stop()


class Replica(HandoffNotices):
    """One replica's handoff notices, counting the batches its timer fired. Its roster is
    its own, told of nothing another replica commits (as one that has not read it yet)."""

    def __init__(self, store: PostgresStore, clock: FakeClock, config: Config) -> None:
        self.notifier = RecordingNotifier()
        self.roster = Roster()
        super().__init__(store, clock, self.notifier, self.roster, lambda: config)
        self.fired = 0

    async def fire(self, ids: list[int]) -> None:
        await super().fire(ids)
        self.fired += 1


async def on_clock_until(clock: FakeClock, check: Callable[[], bool], what: str) -> None:
    """Wait for `check` (10 s at most), the fake clock's sleepers let run at each look."""
    async def done() -> bool:
        await clock.jump(0)
        return check()

    await wait_until(done, 10, what)


@pytest.mark.parametrize("commits", [False, True], ids=["rolled-back", "committed"])
async def test_a_notice_another_replica_was_taking_goes_once(
    tmp_path: Path, pg_dsn: str, commits: bool,
) -> None:
    """Two replicas on one database. At the handoff, one replica's transaction has taken the
    notice and not committed: the other's take skips it. Rolled back (its replica killed,
    its connection lost), the notice is the other's to send a moment later; committed, it
    went, and the other does not send it too."""
    config = hourly(tmp_path)
    clock = FakeClock(T0 + timedelta(minutes=59))  # bo's handoff at 10:00 UTC is next
    stores = [PostgresStore(pg_dsn, pool_size=2) for _ in range(2)]
    for store in stores:
        await store.open()
    other = Replica(stores[1], clock, config)
    try:
        await other.start()
        [notice] = await stores[0].write(lambda tx: tx.unsent_notices())
        assert (notice.user, notice.at) == ("bo", T0 + timedelta(hours=1))
        taken, end = asyncio.Event(), asyncio.Event()

        async def taking(tx: Transaction) -> None:
            assert await tx.take_notice(notice.id, notice.at) is not None
            taken.set()
            await end.wait()
            if not commits:
                raise RuntimeError("the replica taking the notice is gone")

        first = asyncio.create_task(stores[0].write(taking))
        await taken.wait()
        await clock.jump(timedelta(minutes=1))  # the handoff: the other replica's timer fires
        await on_clock_until(clock, lambda: other.fired > 0, "the other replica's try")
        assert notices(other.notifier) == []
        end.set()
        [outcome] = await asyncio.gather(first, return_exceptions=True)
        assert (outcome is None) == commits  # else the RuntimeError of the job rolled back
        await clock.jump(BUSY_RETRY)
        await on_clock_until(clock, lambda: other.fired > 1, "the other replica's next try")
        await on_clock_until(clock, lambda: commits or bool(notices(other.notifier)),
                             "the other replica's notice")
        assert [who for who, _ in notices(other.notifier)] == ([] if commits else ["bo"])
        # Sent either way: nobody tries it any more, and ana's 11:00 notice is next.
        await on_clock_until(clock, lambda: other.timer.next_due() == T0 + timedelta(hours=2),
                             "only the next notice armed")
        unsent = await stores[1].write(lambda tx: tx.unsent_notices())
        assert [(n.user, n.at) for n in unsent] == [("ana", T0 + timedelta(hours=2))]
    finally:
        await other.stop()
        for store in stores:
            await store.close()


# cy covers bo's first hour: the 10:00 UTC handoff is to cy, not bo.
CY_AT_TEN = {"user": "cy", "layer": "primary", "start": "2026-01-05T10:00:00Z",
             "end": "2026-01-05T10:30:00Z"}


async def test_a_replica_whose_roster_lags_plans_the_handoff_the_store_holds(
    tmp_path: Path, pg_dsn: str,
) -> None:
    """Two replicas on one database. An override made on one gives bo's 10:00 handoff to
    cy; that replica plans cy's notice. The other plans again (a reload, another notice
    fired) before it has read the override: it plans from the store's overrides, not from
    its roster, so it leaves cy's notice as it is, and at 10:00 cy is told, not bo."""
    config = hourly(tmp_path)
    clock = FakeClock(T0 + timedelta(minutes=50))
    stores = [PostgresStore(pg_dsn, pool_size=2) for _ in range(2)]
    for store in stores:
        await store.open()
    current, lagging = Replica(stores[0], clock, config), Replica(stores[1], clock, config)
    try:
        for replica in (current, lagging):
            await replica.start()
        change = parse_change(CY_AT_TEN, config.schedules["payments"], config.users,
                              clock.now())
        made = await stores[0].write(
            lambda tx: tx.add_overrides("payments", change, "ana", clock.now()))
        current.roster.added(made)  # as OnCallService does once committed
        await current.plan()
        await lagging.plan()  # its roster has not the override
        unsent = await stores[1].write(lambda tx: tx.unsent_notices())
        assert [(n.user, n.at) for n in unsent] == [("cy", T0 + timedelta(hours=1))]
        await clock.jump(timedelta(minutes=10))  # 10:00
        sent = [current.notifier, lagging.notifier]
        await on_clock_until(clock, lambda: any(notices(n) for n in sent), "a notice")
        await on_clock_until(clock, lambda: not (current.in_flight or lagging.in_flight),
                             "the sends to end")
        assert [who for n in sent for who, _ in notices(n)] == ["cy"]
    finally:
        for replica in (current, lagging):
            await replica.stop()
        for store in stores:
            await store.close()


async def test_an_override_committed_while_notices_are_planned_is_planned_for(
    tmp_path: Path,
) -> None:
    """An override commits while a plan of the notices is under way (the plan's job ran
    first in the same batch): the roster tells of it, and the notices are planned once more
    after, so cy hears of the 10:00 handoff, not bo."""
    clock, notifier = FakeClock(T0 + timedelta(minutes=50)), RecordingNotifier()
    daemon = start(tmp_path, clock, notifier)
    await daemon.start()
    api = Api(daemon, notifier, clock)
    try:
        await api.settle()
        daemon.handoffs.replan()
        await asyncio.sleep(0)  # the plan's job is queued: the override's goes behind it
        await daemon.services.oncall.create("payments", CY_AT_TEN, Actor("ana", ADMIN))
        await wait_until(lambda: _planned(daemon, "cy"), 10, "cy's notice planned")
        await clock.jump(timedelta(minutes=10))
        await settle_until_noticed(api, notifier)
        assert [who for who, _ in notices(notifier)] == ["cy"]
    finally:
        await daemon.stop()


async def _planned(daemon: Daemon, user: str) -> bool:
    unsent = await daemon.store.write(lambda tx: tx.unsent_notices())
    return [(n.user, n.at) for n in unsent] == [(user, T0 + timedelta(hours=1))]


def test_next_handoff_skips_a_span_with_nobody() -> None:
    restricted = Rotation(("ana", "bo"), 1, ShiftUnit.DAYS, datetime(2026, 1, 5, 9))
    schedule = Schedule("s", AMS, (Layer("primary", (restricted,)),))
    assert next_handoff(schedule, "primary", T0) == (datetime(2026, 1, 6, 8, tzinfo=UTC), "bo")
    lonely = Schedule("s", AMS, (Layer("primary", (replace(restricted, users=("ana",)),)),))
    assert next_handoff(lonely, "primary", T0) is None


def test_the_notice_lists_incidents_on_one_line_each() -> None:
    schedule = Schedule("payments", AMS, ())
    notice = PlannedNotice(1, "payments", "primary", T0, "bo")
    message = notice_message(schedule, notice, None,
                             [OpenIncident(7, "SEV2", "acknowledged", "db\ndown")])
    assert message.body.splitlines() == [
        "You are on call now for payments primary, with no handoff ahead.",
        "1 open incident(s) on your teams:",
        "#7 [SEV2] acknowledged: db\\ndown",
    ]
    quiet = notice_message(schedule, notice, T0, [])
    assert quiet.body.splitlines()[1] == "No open incidents on your teams."


def test_shifts_in_seconds_and_minutes_count_elapsed_time() -> None:
    # 30-second shifts from 02:59:30 on the night Amsterdam's clocks go back (03:00 -> 02:00):
    # the handoffs go on every 30 s of real time through the repeated hour.
    start = datetime(2026, 10, 25, 2, 59, 30)
    seconds = Rotation(("ana", "bo"), 30, ShiftUnit.SECONDS, start)
    schedule = Schedule("s", AMS, (Layer("primary", (seconds,)),))
    first = datetime(2026, 10, 25, 0, 59, 30, tzinfo=UTC)  # 02:59:30 CEST
    assert [on_call(schedule, "primary", first + timedelta(seconds=s)) for s in (0, 30, 60)] == [
        "ana", "bo", "ana"]
    assert next_handoff(schedule, "primary", first) == (first + timedelta(seconds=30), "bo")
    minutes = replace(seconds, shift_length=2, shift_unit=ShiftUnit.MINUTES)
    assert minutes.shift == timedelta(minutes=2)


async def test_a_notice_due_while_down_goes_at_start_if_its_person_is_still_on(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0 + timedelta(minutes=59))  # the 10:00 UTC handoff to bo is planned
    first = start(tmp_path, clock, RecordingNotifier())
    await first.start()
    await first.stop()
    clock.set(T0 + timedelta(hours=1, minutes=20))  # ackd was down at the handoff
    notifier = RecordingNotifier()
    again = start(tmp_path, clock, notifier)
    await again.start()
    try:
        await Api(again, notifier, clock).settle()
        assert [who for who, _ in notices(notifier)] == ["bo"]
    finally:
        await again.stop()
    # Down across a whole shift: ana's 11:00 UTC notice is stale (bo is on since 12:00): dropped.
    clock.set(T0 + timedelta(hours=1, minutes=59))
    planned = start(tmp_path, clock, RecordingNotifier())
    await planned.start()
    await planned.stop()
    clock.set(T0 + timedelta(hours=3, minutes=20))
    notifier = RecordingNotifier()
    late = start(tmp_path, clock, notifier)
    await late.start()
    try:
        await Api(late, notifier, clock).settle()
        assert notices(notifier) == []
    finally:
        await late.stop()
