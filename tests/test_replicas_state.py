"""What the API changes at run time, seen by every replica on one PostgreSQL database: two
whole daemons (each its own store, timer loop and dispatcher) on one fake clock and one real
throwaway cluster. A maintenance window made through one holds the other's pages; an on-call
override made through one pages its person on the other; and staleness counts the webhooks
either replica received, with one stale note however many replicas there are."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.escalation.staleness import SAVE_GRACE
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import write_config
from tests.test_api import LABELS, Api
from tests.test_stale import incident, post, stale_events, stale_messages, the_webhook

HOUR = timedelta(hours=1)
# What the other replica may take to hear of a change (NOTIFY, then a read): well under this.
HEARD_WITHIN = 2.0

Start = Callable[..., Awaitable[list[Api]]]


def replica_config(directory: Path, dsn: str, stale: str, extra: str) -> Path:
    directory.mkdir()
    path = write_config(directory / "ackd.yaml", "127.0.0.1:9", step_delay="5m",
                        extra=f"storage: {{postgres: {{dsn: '{dsn}', pool_size: 4}}}}\n{extra}")
    if stale:
        path.write_text(path.read_text().replace(
            "route:\n  team: platform\n", f"route:\n  stale_after: {stale}\n  team: platform\n"))
    return path


@pytest.fixture
async def start(tmp_path: Path, pg_dsn: str) -> AsyncIterator[Start]:
    """`start(count, stale="", extra="")`: that many replicas on one database and one fake
    clock; `stale` the root route's stale_after, `extra` added to each config."""
    daemons: list[Daemon] = []

    async def started(count: int = 2, stale: str = "", extra: str = "") -> list[Api]:
        clock = FakeClock()
        apis = []
        for n in range(count):
            path = replica_config(tmp_path / f"replica{n}", pg_dsn, stale, extra)
            loaded = replace(config_module.load(path), listen_port=0,
                             data_dir=tmp_path / f"replica{n}" / "data")
            notifier = RecordingNotifier()
            daemon = Daemon(loaded, clock=clock, notifier=notifier, config_path=path)
            await daemon.start()
            daemons.append(daemon)
            apis.append(Api(daemon, notifier, clock))
        return apis

    yield started
    for daemon in daemons:
        if not daemon.services.draining:
            await daemon.stop()


async def until(check: Callable[[], Awaitable[bool]], within: float = HEARD_WITHIN) -> bool:
    """Whether `check` holds within `within` seconds of real time (asked every 20 ms)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def listed(api: Api, path: str, key: str) -> list[dict[str, Any]]:
    status, body = await api.call("GET", path)
    assert status == 200, body
    return list(body[key])


def paged(apis: list[Api]) -> list[str]:
    return [name for api in apis for name in api.paged()]


async def settle(apis: list[Api]) -> None:
    for api in apis:
        await api.settle()


async def paged_by_either(apis: list[Api], count: int) -> list[str]:
    """Who was paged once `count` pages went (or 5 s passed), by whichever replica's
    dispatcher leased them."""

    async def sent() -> bool:
        await settle(apis)
        return len(paged(apis)) >= count

    await until(sent, 5)
    return paged(apis)


async def test_a_window_made_through_one_replica_holds_the_others_pages(start: Start) -> None:
    a, b = await start()
    status, window = await a.call("POST", "/api/v1/maintenance",
                                  {"team": "payments", "for": "1h", "comment": "failover"})
    assert status == 201, window

    async def b_knows() -> bool:
        return [w["id"] for w in await listed(b, "/api/v1/maintenance", "windows")] == [
            window["id"]]

    assert await until(b_knows), "replica b never heard of the window"
    await b.fire()  # the incident opens on b, inside a's window
    await settle([a, b])
    assert paged([a, b]) == []

    # Deleted through b: what it held escalates at once, on whichever replica.
    status, _ = await b.call("DELETE", f"/api/v1/maintenance/{window['id']}")
    assert status == 200

    async def a_forgot() -> bool:
        return await listed(a, "/api/v1/maintenance", "windows") == []

    assert await until(a_forgot), "replica a still lists the deleted window"

    assert await paged_by_either([a, b], 1) == ["ana"]


async def test_an_override_made_through_one_replica_pages_its_person_on_the_other(
    start: Start,
) -> None:
    a, b = await start()
    now = a.clock.now()
    status, answer = await a.call("POST", "/api/v1/schedules/payments/overrides", {
        "user": "cy", "layer": "primary", "start": (now - HOUR).isoformat(),
        "end": (now + HOUR).isoformat(), "note": "ana is off sick"})
    assert status == 201, answer
    [made] = answer["overrides"]

    async def b_knows() -> bool:
        found = await listed(b, "/api/v1/schedules/payments/overrides", "overrides")
        return [o["id"] for o in found] == [made["id"]]

    assert await until(b_knows), "replica b never heard of the override"
    await b.fire()  # opened on b: its first step pages whoever the override put on call
    assert await paged_by_either([a, b], 1) == ["cy"]

    # Deleted through b: a's next incident pages the rotation's person again.
    status, _ = await b.call(
        "DELETE", f"/api/v1/schedules/payments/overrides/{made['id']}")
    assert status == 200

    async def a_forgot() -> bool:
        return await listed(a, "/api/v1/schedules/payments/overrides", "overrides") == []

    assert await until(a_forgot), "replica a still lists the deleted override"
    await a.fire({**LABELS, "alertname": "Other"})
    assert sorted(await paged_by_either([a, b], 2)) == ["ana", "cy"]


@pytest.mark.parametrize("a_leaves", ["its timer stops", "it stops"])
async def test_staleness_counts_a_report_that_reached_another_replica(
    start: Start, a_leaves: str,
) -> None:
    """Behind a load balancer: Alertmanager's resends reach replica a only, and a's timer
    stops (a saves its reports each second) or a stops (it saves them as it goes); b fires
    the stale deadline and must count a's reports, not only its own."""
    a, b = await start(2, stale="3h")
    body = the_webhook(a)
    number = await post(a, body)
    await settle([a, b])
    await a.clock.jump(2 * HOUR)
    assert await post(a, body) == number  # reported 2h in, through a alone
    await settle([a, b])
    if a_leaves == "it stops":
        await a.daemon.stop()
    else:
        await a.daemon.responder.scheduler.stop()
    await b.clock.jump(HOUR + timedelta(seconds=1))  # 3h after the opening, 1h after a report
    await b.settle()
    assert stale_events(await incident(b, number)) == []
    assert stale_messages(b) == []

    # 3h after the last report, and the grace for reports another replica has not saved yet:
    # stale, told once.
    await b.clock.jump(2 * HOUR + SAVE_GRACE)
    assert await until(
        lambda: _stale_count(b, number, 1)), "the stale deadline never fired on b"
    assert {who for who, _ in stale_messages(b)} <= {"ana", "bo", "cy"}


async def test_a_stale_incident_is_told_once_across_three_replicas(start: Start) -> None:
    """Alertmanager posts every webhook to all three: one stale event, and each holder hears
    it once, not once per replica."""
    replicas = await start(3, stale="3h")
    body = the_webhook(replicas[0])
    numbers = {await post(api, body) for api in replicas}
    [number] = numbers
    await settle(replicas)
    await replicas[0].clock.jump(HOUR)  # the escalation pages ana, bo, then cy meanwhile
    await paged_by_either(replicas, 3)
    await replicas[0].clock.jump(2 * HOUR + SAVE_GRACE + timedelta(seconds=1))
    assert await until(lambda: _stale_count(replicas[1], number, 1))
    await settle(replicas)
    await asyncio.sleep(0.3)
    await settle(replicas)
    told = [who for api in replicas for who, _ in stale_messages(api)]
    assert told
    assert set(told) <= {"ana", "bo", "cy"}
    assert len(told) == len(set(told)), told  # each holder once, by one replica
    assert len(stale_events(await incident(replicas[2], number))) == 1


async def _stale_count(api: Api, number: int, count: int) -> bool:
    await api.settle()
    return len(stale_events(await incident(api, number))) == count


async def test_a_heartbeat_that_arrived_through_one_replica_shows_on_the_other(
    start: Start,
) -> None:
    """The API's and /metrics' view of a heartbeat is the store's, not this replica's."""
    extra = "heartbeats: [{name: backup, every: 1h, team: platform, severity: SEV3}]\n"
    a, b = await start(2, extra=extra)
    await a.clock.jump(HOUR / 2)
    status, body = await a.call("POST", "/api/v1/heartbeats/backup")
    assert status == 200, body
    status, body = await b.call("GET", "/api/v1/heartbeats")
    assert status == 200, body
    [beat] = body["heartbeats"]
    assert (beat["last_arrival"], beat["state"]) == (
        a.clock.now().isoformat().replace("+00:00", "Z"), "ok")
    status, text = await b.call("GET", "/metrics")
    assert 'ackd_heartbeat_age_seconds{heartbeat="backup"} 0.0' in text


async def test_notices_during_a_read_start_one_more_read_and_a_failed_read_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from receiver.core import refresh as module
    from receiver.core.errors import StoreUnavailable
    from receiver.core.refresh import Refresh

    monkeypatch.setattr(module, "RETRY", 0.01)
    reads: list[int] = []
    gate = asyncio.Event()

    async def read() -> None:
        reads.append(len(reads))
        if len(reads) == 1:
            await gate.wait()  # the first read is under way while three notices come
        if len(reads) == 2:
            raise StoreUnavailable("the database is away")

    again = Refresh("things", read)
    again()
    await asyncio.sleep(0)
    again(), again(), again()
    gate.set()
    for _ in range(50):
        await asyncio.sleep(0.01)
    assert reads == [0, 1, 2]  # the first, one for the three notices (failed), its retry
    await again.stop()
    again()  # told after stop (a NOTIFY while the daemon closes its store): nothing is read
    await asyncio.sleep(0.05)
    assert reads == [0, 1, 2]


def test_reports_of_an_incident_with_a_stale_deadline_are_queued_for_the_other_replicas() -> None:
    """Only incidents a transaction found with a stale rule are saved (their rows are taken
    by the stale check; others would stay forever); after that, every report is queued,
    those answered from the memos without a transaction too."""
    from receiver.escalation.staleness import Reports

    start = FakeClock().now()
    reports = Reports(start)
    reports.seen(1, start)  # no stale rule known for it: memory only
    assert reports.unsaved() == {}
    reports.save(2, start)  # a transaction armed (or found) its stale deadline
    reports.seen(2, start + HOUR)  # a resend answered from memory
    assert reports.unsaved() == {2: start + HOUR}
    reports.save_failed({2: start})  # an earlier save that failed: the later report stays
    reports.seen(2, start + 2 * HOUR)
    assert reports.unsaved() == {2: start + 2 * HOUR}
    reports.forget(2)  # resolved
    reports.seen(2, start + 3 * HOUR)
    assert reports.unsaved() == {}
