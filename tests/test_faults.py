"""Faults that must not lose an alert or a page: crashes, an unwritable store, dead sinks.

Real ackd processes over loopback HTTP on real SQLite files:

- SIGKILL in the middle of a webhook load: every webhook answered 200 is in the store after the
  restart, and every other one is there whole or not at all (its alerts share one transaction).
- SIGKILL at random moments of running escalations: each step fires exactly once; a page is
  repeated only across a crash (delivery is at-least-once) and never lost.
- The store unwritable (locked, read-only, disk full, file size limit): webhooks answer 503, so
  Alertmanager retries, and ackd recovers without a restart once the store does.

And in-process on a FakeClock, so minutes pass in milliseconds: notification sinks down for
minutes are retried and every attempt recorded, while escalation keeps advancing.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import json
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import Alert, AlertStatus, EventKind, TimelineEvent
from receiver.store import IncidentFilter
from receiver.testing import FakeClock
from tests.harness import (
    ROOT,
    TOKEN,
    Ackd,
    ackd_for,
    free_port,
    http_ok,
    wait_until,
    write_config,
)
from tests.sinks import HttpSink, SinkMode, SinkRequest
from tests.test_store import corrupt_page, filled

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def webhook(*label_sets: dict[str, str]) -> dict[str, Any]:
    alerts = [Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, START, None)
              for labels in label_sets]
    return build_webhook(alerts)


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> int:
    async with session.post(
        f"{url}/api/v1/alerts", data=json.dumps(body),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        await response.read()
        return response.status


async def post_one(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
        f"{url}/api/v1/alerts", data=json.dumps(body),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        text = await response.text()
        return response.status, json.loads(text) if text.startswith("{") else text


async def everything(ackd: Ackd) -> list[dict[str, Any]]:
    """Every incident with its alerts and timeline."""
    listed = await ackd.incidents(limit="1000")
    slots = asyncio.Semaphore(16)

    async def one(number: int) -> dict[str, Any]:
        async with slots:
            return await ackd.incident(number)

    return list(await asyncio.gather(*(one(i["id"]) for i in listed)))


def kinds(incident: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in incident["timeline"] if e["kind"] == kind]


def steps_fired(incident: dict[str, Any]) -> Counter[int]:
    return Counter(int(e["detail"]["step"]) for e in kinds(incident, "step_fired"))


def assert_sound_file(db: Path) -> None:
    """SQLite's own checks on the file: pages, indexes and references all intact."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


# -- SIGKILL during a webhook load ----------------------------------------------------------------

WORKERS = 8
LOAD_ROUNDS = 3
# Each webhook carries three alerts in two groups, so two incidents: all or nothing of them.
SHAPE = {("eu1", "a"), ("eu1", "b"), ("us1", "a")}


def load_webhook(request_id: str) -> dict[str, Any]:
    return webhook(*({"alertname": f"Load-{request_id}", "cluster": cluster, "instance": inst}
                     for cluster, inst in sorted(SHAPE)))


@dataclass
class Load:
    """Concurrent senders; each stops at its first failure (the kill)."""

    url: str
    kill_after: int  # accepted webhooks this round before the kill
    outcomes: dict[str, str] = field(default_factory=dict)
    accepted: int = 0
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    async def sender(self, session: aiohttp.ClientSession, name: str) -> None:
        for n in range(10_000):
            request_id = f"{name}.{n}"
            self.outcomes[request_id] = "unanswered"
            try:
                status = await post(session, self.url, load_webhook(request_id))
            except (aiohttp.ClientError, OSError):
                self.outcomes[request_id] = "failed"
                return
            self.outcomes[request_id] = "accepted" if status == 200 else f"status {status}"
            if status != 200:
                return
            self.accepted += 1
            if self.accepted >= self.kill_after:
                self.enough.set()


async def load_then_kill(ackd: Ackd, round_number: int, kill_after: int) -> dict[str, str]:
    await ackd.start_ready()
    load = Load(ackd.url, kill_after)
    async with aiohttp.ClientSession() as session:
        senders = [asyncio.create_task(load.sender(session, f"r{round_number}w{w}"))
                   for w in range(WORKERS)]
        await asyncio.wait_for(load.enough.wait(), 30)
        ackd.kill()  # while eight webhooks are in flight
        await asyncio.wait_for(asyncio.gather(*senders), 30)
    return load.outcomes


@pytest.mark.timeout(300)  # four starts of ackd, each up to READY_WITHIN on a loaded machine
async def test_sigkill_during_webhook_load_keeps_every_200_and_no_half_webhook(
    tmp_path: Path, sink: HttpSink
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    outcomes: dict[str, str] = {}
    try:
        for round_number in range(LOAD_ROUNDS):
            outcomes |= await load_then_kill(ackd, round_number, rng.randint(10, 40))
        await ackd.start_ready()
        incidents = await everything(ackd)

        async def every_first_step_fired_once() -> bool:
            return all(steps_fired(i) == {0: 1} for i in await everything(ackd))

        # Each incident's first step was armed in the webhook's own commit: none is lost.
        await wait_until(every_first_step_fired_once, 20, f"first steps (seed {seed})")
    finally:
        ackd.stop()

    assert set(outcomes.values()) == {"accepted", "failed"}, (seed, Counter(outcomes.values()))
    stored: dict[str, set[tuple[str, str]]] = {}
    for incident in incidents:
        assert len(kinds(incident, "opened")) == 1
        request_id = incident["alerts"][0]["labels"]["alertname"].removeprefix("Load-")
        alerts = {(a["labels"]["cluster"], a["labels"]["instance"]) for a in incident["alerts"]}
        clusters = {cluster for cluster, _ in stored.get(request_id, set())}
        assert not clusters & {c for c, _ in alerts}, f"{request_id} opened a group twice"
        stored.setdefault(request_id, set()).update(alerts)
    for request_id, outcome in outcomes.items():
        found = stored.get(request_id, set())
        if outcome == "accepted":
            assert found == SHAPE, f"seed {seed}: {request_id} got 200 but holds {found}"
        else:
            assert found in (SHAPE, set()), f"seed {seed}: {request_id} is half-written"
    assert set(stored) <= set(outcomes)
    assert_sound_file(tmp_path / "data" / "ackd.db")


# -- SIGKILL at random moments of running escalations ---------------------------------------------

LIVES = 5  # one incident each: at most five, so a bundled page's title names every one
PAGED = ("ana", "bo", "cy")  # step 1, 2, 3 of write_config's policy, a second apart


def incidents_in(request: SinkRequest) -> set[int]:
    """The incidents a page is about: one, or several when pages to one person were bundled."""
    title = str(request.json["title"])
    assert " more" not in title, title
    found = {int(n) for n in re.findall(r"#(\d+)\b", title)}
    assert found, title
    return found


@pytest.mark.timeout(300)  # six starts of ackd, each up to READY_WITHIN on a loaded machine
async def test_sigkill_at_random_moments_of_escalation_loses_and_repeats_no_step(
    tmp_path: Path, sink: HttpSink
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # The escalation runs out a second after cy's page: once, through every kill too.
    ackd = ackd_for(tmp_path, sink.port, step_delay="1s", repeat_after="1s")
    restarts: list[int] = []  # how many pages had arrived when each life began
    try:
        for life in range(LIVES):
            restarts.append(len(sink.requests))
            await ackd.start_ready()
            status, _ = await post_one(ackd.url, webhook({"alertname": f"Life{life}"}))
            assert status == 200
            # The fault itself: run for a random while (a step fires every second), then die,
            # stay down for a random while (deadlines pass meanwhile), come back.
            await asyncio.sleep(rng.uniform(0.0, 2.5))
            ackd.kill()
            await asyncio.sleep(rng.uniform(0.1, 1.0))
        restarts.append(len(sink.requests))
        await ackd.start_ready()

        async def all_paged() -> bool:
            found = await everything(ackd)
            return len(found) == LIVES and all(
                {e["detail"]["recipient"] for e in kinds(i, "notification_sent")} == set(PAGED)
                and kinds(i, "escalation_exhausted") for i in found
            )

        await wait_until(all_paged, 20, f"every escalation to finish (seed {seed})")
        incidents = await everything(ackd)
    finally:
        ackd.stop()

    for incident in incidents:
        assert steps_fired(incident) == {0: 1, 1: 1, 2: 1}, (seed, incident["timeline"])
        assert len(kinds(incident, "escalation_exhausted")) == 1
    pages: dict[tuple[int, str], list[int]] = {}
    for index, request in enumerate(sink.requests):
        for number in incidents_in(request):
            pages.setdefault((number, request.path.strip("/")), []).append(index)
    for incident in incidents:
        for who in PAGED:
            arrivals = pages.get((incident["id"], who), [])
            assert arrivals, f"seed {seed}: #{incident['id']} never paged {who}"
            lives = [bisect.bisect_right(restarts, index) for index in arrivals]
            # A repeat only where a crash fell between the send and its record.
            assert lives == sorted(set(lives)), (seed, incident["id"], who, lives)
    assert_sound_file(tmp_path / "data" / "ackd.db")


# -- the store unwritable ------------------------------------------------------------------------


Injection = Callable[[Ackd, Path], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def nothing_to_prepare(data_dir: Path) -> Iterator[None]:
    yield


@dataclass(frozen=True)
class StoreFault:
    """A way to make ackd's SQLite file unwritable from outside the process, then heal it.
    `prepared` sets up what must exist before ackd starts; both skip where the machine
    cannot do it."""

    name: str
    active: Injection
    prepared: Callable[[Path], contextlib.AbstractContextManager[None]] = nothing_to_prepare


@contextlib.contextmanager
def database_locked(ackd: Ackd, db: Path) -> Iterator[None]:
    """Another process holds the write lock: SQLITE_BUSY once the busy timeout runs out."""
    with contextlib.closing(sqlite3.connect(db, isolation_level=None, timeout=10)) as conn:
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


@contextlib.contextmanager
def read_only_file(ackd: Ackd, db: Path) -> Iterator[None]:
    """The database and its WAL made immutable (chattr +i): root cannot write them either, not
    even through descriptors opened before. (chmod would not stop root.)"""
    with immutable([str(db), f"{db}-wal"]):
        yield


@contextlib.contextmanager
def wal_index_immutable(ackd: Ackd, db: Path) -> Iterator[None]:
    """The WAL index (-shm), which SQLite maps into memory and writes on every transaction,
    made immutable: a store to the mapping raised SIGBUS, and ackd died without a word."""
    with immutable([f"{db}-shm"]):
        yield


@contextlib.contextmanager
def immutable(files: list[str]) -> Iterator[None]:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    made = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this filesystem or user cannot set the immutable flag: {made.stderr}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)


@contextlib.contextmanager
def small_tmpfs(data_dir: Path) -> Iterator[None]:
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "ackd-test", str(data_dir)],
        capture_output=True, text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(data_dir)], check=True)


@contextlib.contextmanager
def disk_full(ackd: Ackd, db: Path) -> Iterator[None]:
    """The tmpfs under the store filled to the last byte: ENOSPC, SQLITE_FULL."""
    filler = db.parent / "filler"
    with filler.open("wb") as out:
        _fill(out.fileno())
    try:
        yield
    finally:
        filler.unlink()


def _fill(fd: int) -> None:
    for size in (1 << 20, 4096, 1):
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * size)
    with pytest.raises(OSError, match="No space left") as full:
        os.write(fd, b"\0")
    assert full.value.errno == errno.ENOSPC


@contextlib.contextmanager
def file_size_limit(ackd: Ackd, db: Path) -> Iterator[None]:
    """RLIMIT_FSIZE of the running ackd lowered to one byte: every write past it fails with
    EFBIG. Another way for writes to fail, one that needs no privileges."""
    assert ackd.proc is not None
    pid = ackd.proc.pid
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)


FAULTS = [
    StoreFault("database locked", database_locked),
    StoreFault("file read-only", read_only_file),
    StoreFault("disk full", disk_full, small_tmpfs),
    StoreFault("file size limit", file_size_limit),
    StoreFault("WAL index immutable", wal_index_immutable),
]
STEP_DELAY = timedelta(seconds=1)  # the second step of "Before" falls due in the outage
OUTAGE_AFTER = timedelta(seconds=0.5)  # how long the store stays unwritable after that


def named(name: str) -> dict[str, Any]:
    return webhook({"alertname": name, "cluster": "eu1"})


async def pages_for(ackd: Ackd, sink: HttpSink, name: str, who: str) -> bool:
    found = [i for i in await ackd.incidents(limit="1000") if i["summary"] == name]
    return bool(found) and any(
        found[0]["id"] in incidents_in(r) for r in sink.requests if r.path == f"/{who}"
    )


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_unwritable_store_answers_503_and_ackd_recovers_by_itself(
    tmp_path: Path, sink: HttpSink, fault: StoreFault
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with fault.prepared(data):
        ackd = ackd_for(tmp_path, sink.port, step_delay=f"{STEP_DELAY.seconds}s")
        await ackd.start_ready()
        try:
            await _outage_and_recovery(ackd, sink, fault, data / "ackd.db")
        finally:
            ackd.stop()
        assert_sound_file(data / "ackd.db")


async def _outage_and_recovery(ackd: Ackd, sink: HttpSink, fault: StoreFault, db: Path) -> None:
    assert (await post_one(ackd.url, named("Before")))[0] == 200
    await wait_until(lambda: pages_for(ackd, sink, "Before", "ana"), 10, "the first page")
    [opened] = await ackd.incidents()
    second_step = parse_time(opened["opened_at"]) + STEP_DELAY
    accepted: list[str] = []
    refused: list[str] = []
    with fault.active(ackd, db):
        # A full disk can still take what fits in pages SQLite already has: send until it
        # refuses. Nothing refused may be half-written, nothing accepted may be lost.
        for n in range(50):
            status, body = await post_one(ackd.url, named(f"During{n}"))
            assert status in (200, 503), body
            (accepted if status == 200 else refused).append(f"During{n}")
            if status == 503:
                assert "store unavailable" in body["error"]
                break
        assert refused, "the store never refused a write"
        # Reads still work, but a store that cannot write is not ready.
        assert not await http_ok(f"{ackd.url}/-/ready")
        # The outage lasts past the due time of the second step of "Before".
        await asyncio.sleep((second_step + OUTAGE_AFTER - datetime.now(UTC)).total_seconds())
        assert await http_ok(f"{ackd.url}/-/healthy")
    assert ackd.proc is not None
    assert ackd.proc.poll() is None  # alive throughout
    # Healed: ready again by itself, without waiting for a write to come and succeed.
    await wait_until(lambda: http_ok(f"{ackd.url}/-/ready"), 10, "ready again")

    # Healed, and no restart: Alertmanager's retry of what was refused now gets in.
    for name in refused:
        assert (await post_one(ackd.url, named(name)))[0] == 200
    assert (await post_one(ackd.url, named("After")))[0] == 200
    await wait_until(lambda: pages_for(ackd, sink, "Before", "bo"), 10, "the step due meanwhile")
    await wait_until(lambda: pages_for(ackd, sink, "After", "ana"), 10, "a page after it")

    incidents = await everything(ackd)
    summaries = Counter(i["summary"] for i in incidents)
    assert summaries == Counter(["Before", *accepted, *refused, "After"])  # each exactly once
    for incident in incidents:
        assert len(kinds(incident, "opened")) == 1
        assert len(incident["alerts"]) == 1
    before = next(i for i in incidents if i["summary"] == "Before")
    [fired] = [e for e in kinds(before, "step_fired") if e["detail"]["step"] == 1]
    # Held back by the outage, then fired once: not lost, not early, not twice.
    assert parse_time(fired["at"]) >= second_step + OUTAGE_AFTER * 0.8


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- notification sinks down for minutes (in-process, FakeClock) ---------------------------------

SINK_CONFIG = """
external_url: http://ackd.example
webhook: {{bearer_token: {token}}}
links: {{secret: faults-link-secret}}
notifications:
  workers: 4
  timeout: 2s
  retry: {{attempts: 4, backoff: 30s, max_backoff: 2m}}
  bundle_window: 0s
users:
{users}
teams:
  - {{name: ops}}
policies:
  - name: standard
    steps:
      - {{after: 0s, notify: [{{user: ana}}]}}
      - {{after: 5m, notify: [{{user: bo}}]}}
      - {{after: 10m, notify: [{{user: cy}}]}}
route:
  team: ops
  policy: standard
  severity: SEV1
  group_by: [alertname]
"""
USERS = """
  - {{name: ana, contacts: [{{url: "json://{sink}/ana"}}]}}
  - {{name: bo, contacts: [{{url: "json://{sink}/bo"}}]}}
  - {{name: cy, contacts: [{{url: "json://{sink}/cy"}}]}}
"""
REAL_WAIT = 15.0  # seconds of real time for Apprise and SQLite I/O; never reached when it works
SETTLED = 3  # looks in a row that must find nothing to do


@dataclass
class Rig:
    daemon: Daemon
    clock: FakeClock
    t0: datetime

    async def quiet(self) -> bool:
        """Nothing due now is left undone: no send in flight, no due deadline, no due row."""
        now = self.clock.now()
        store = self.daemon.store
        return (
            self.daemon.dispatcher.in_flight == 0
            and all(due > now for _, due in await store.deadlines())
            and not await store.due_notifications(now)
            and self.daemon.dispatcher.in_flight == 0
        )

    async def settle(self) -> None:
        """Wait until quiet holds on a few looks in a row: the checks are separate queries, and
        work (a send's result, the escalation it triggers) may land between them."""
        clean = 0
        async with asyncio.timeout(REAL_WAIT):
            while clean < SETTLED:
                clean = clean + 1 if await self.quiet() else 0
                # Polling: the work is on Apprise's and aiosqlite's threads, which set no
                # event this loop could wait on.
                await asyncio.sleep(0.005)

    async def run_until(self, offset: timedelta) -> None:
        """Move virtual time to t0 + offset, stopping wherever something falls due, and let
        each stop's real I/O finish before going on, so events carry their exact times."""
        target = self.t0 + offset
        while True:
            await self.settle()
            now = self.clock.now()
            if now >= target:
                return
            store = self.daemon.store
            due = [d for _, d in await store.deadlines()]
            nxt = await store.next_outbox_at(now)
            stops = [t for t in (*due, nxt, target) if t is not None and t > now]
            await self.clock.jump(min(stops) - now)

    async def timeline(self) -> list[TimelineEvent]:
        [incident] = await self.daemon.store.incidents(IncidentFilter())
        return await self.daemon.store.timeline(incident.id)


@pytest.fixture
async def start_rig(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    daemons: list[Daemon] = []

    async def start(sink: HttpSink, users: str = USERS) -> Rig:
        text = SINK_CONFIG.format(token=TOKEN, users=users.format(sink=f"127.0.0.1:{sink.port}"))
        loaded = config_module.parse(str(tmp_path / "ackd.yaml"), text, {})
        loaded = replace(loaded, listen_port=0, data_dir=tmp_path / "data")
        clock = FakeClock()
        daemon = Daemon(loaded, clock=clock)
        await daemon.start()
        daemons.append(daemon)
        rig = Rig(daemon, clock, clock.now())
        status, body = await post_one(f"http://127.0.0.1:{daemon.port}", named("SinkDown"))
        assert status == 200, body
        return rig

    yield start
    for daemon in daemons:
        await daemon.stop()


def attempts(
    events: list[TimelineEvent], who: str, t0: datetime
) -> list[tuple[str, int, timedelta]]:
    """(result, attempt, when after t0) of every delivery to `who`, in order."""
    return [
        (e.kind.value, int(e.detail["attempt"]), e.at - t0)
        for e in events
        if e.kind in (EventKind.NOTIFICATION_SENT, EventKind.NOTIFICATION_FAILED)
        and e.detail.get("recipient") == who
    ]


def at(events: list[TimelineEvent], kind: EventKind, t0: datetime) -> list[timedelta]:
    return [e.at - t0 for e in events if e.kind is kind]


S = timedelta(seconds=1)
M = timedelta(minutes=1)


async def test_sink_down_for_minutes_then_back_delivers_on_retry_and_escalates_on_time(
    start_rig: Callable[..., Awaitable[Rig]],
) -> None:
    async with HttpSink(SinkMode.ERROR) as sink:
        rig = await start_rig(sink)
        await rig.run_until(3 * M)  # three minutes of 500s
        sink.mode = SinkMode.OK
        await rig.run_until(12 * M)
        events = await rig.timeline()

    def times(who: str) -> list[tuple[str, int, timedelta]]:
        return attempts(events, who, rig.t0)

    # Backoff 30s doubling: tries at 0, 30s, 90s fail; the one at 210s finds the sink back.
    assert times("ana") == [
        ("notification_failed", 1, 0 * S), ("notification_failed", 2, 30 * S),
        ("notification_failed", 3, 90 * S), ("notification_sent", 4, 210 * S),
    ]
    assert times("bo") == [("notification_sent", 1, 5 * M)]
    assert times("cy") == [("notification_sent", 1, 10 * M)]
    # Escalation kept its own schedule while ana's page was failing.
    assert at(events, EventKind.STEP_FIRED, rig.t0) == [0 * S, 5 * M, 10 * M]
    assert [r.path for r in sink.requests] == ["/ana"] * 4 + ["/bo", "/cy"]


async def test_sink_refusing_for_minutes_records_every_try_and_escalation_advances(
    start_rig: Callable[..., Awaitable[Rig]],
) -> None:
    async with HttpSink(SinkMode.REFUSING) as sink:
        rig = await start_rig(sink)
        await rig.run_until(20 * M)
        events = await rig.timeline()

    tries = [0 * S, 30 * S, 90 * S, 210 * S]  # each page: four tries, then it has failed
    # Once every try of a step's page failed, nobody can acknowledge it: the next step fires
    # at once instead of waiting out its delay.
    fired = at(events, EventKind.STEP_FIRED, rig.t0)
    assert fired == [0 * S, 210 * S, 420 * S]
    for who, began in zip(("ana", "bo", "cy"), fired, strict=True):
        assert attempts(events, who, rig.t0) == [
            ("notification_failed", n + 1, began + t) for n, t in enumerate(tries)
        ], who
    # The last step fired: its page is still being tried, so the escalation waits; once that
    # failed too (nobody it paged can be reached), it has run out, at once, not 15m later.
    assert at(events, EventKind.ESCALATION_EXHAUSTED, rig.t0) == [420 * S + tries[-1]]


CONTACTS = 40


async def test_a_burst_of_pages_sends_each_once_without_any_crash(
    start_rig: Callable[..., Awaitable[Rig]],
) -> None:
    """Outside a crash there is no at-least-once window: a page goes exactly once. Forty
    contacts of one person are paged at once, so sends end while other passes read the outbox."""
    contacts = ", ".join(f'{{{{url: "json://{{sink}}/c{n}"}}}}' for n in range(CONTACTS))
    users = USERS.replace('contacts: [{{url: "json://{sink}/ana"}}]', f"contacts: [{contacts}]")
    async with HttpSink() as sink:
        rig = await start_rig(sink, users)
        await rig.run_until(1 * S)
        events = await rig.timeline()
    sent = Counter(r.path for r in sink.requests if r.path.startswith("/c"))
    assert sent == Counter({f"/c{n}": 1 for n in range(CONTACTS)})
    assert len([e for e in events if e.kind is EventKind.NOTIFICATION_SENT]) == CONTACTS


# -- configuration reloads on the served daemon -----------------------------------------------


async def test_sighup_keeps_the_running_config_on_a_broken_file_and_swaps_a_good_one(
    tmp_path: Path,
) -> None:
    """`ackd serve` as deployed (uvloop, log lines through their own thread): a broken file on
    SIGHUP changes nothing, a good one takes effect at once, SIGTERM still stops it cleanly."""
    daemon = ackd_for(tmp_path, free_port(), step_delay="1h")
    await daemon.start_ready()
    config = tmp_path / "ackd.yaml"
    good = config.read_text()
    body = webhook({"alertname": "Reloaded", "cluster": "eu1"})
    try:
        config.write_text(good + "bogus_key: 1\n")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_until(_logged(daemon, "reload refused"), 10, "the refusal in the log")
        assert (await post_one(daemon.url, body))[0] == 200  # the old token still works

        config.write_text(good.replace(TOKEN, "a-fresh-token"))
        daemon.proc.send_signal(signal.SIGHUP)
        await wait_until(_logged(daemon, "configuration reloaded"), 10, "the reload in the log")
        assert (await post_one(daemon.url, body))[0] == 401
    finally:
        daemon.stop()
    assert "bogus_key" in daemon.log()  # the refusal names the key


def _logged(daemon: Ackd, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return text in daemon.log()

    return check


# -- a damaged store, and backups taken while ackd serves ----------------------------------------


def run_ackd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args], capture_output=True, text=True,
        timeout=timeout, cwd=ROOT,
    )


async def test_a_damaged_store_is_refused_at_start_with_one_line(tmp_path: Path) -> None:
    """A page of the file overwritten (a torn write, a bad sector): ackd used to start on it,
    say it was ready, and answer 503 forever to every webhook touching that page."""
    db = tmp_path / "data" / "ackd.db"
    db.parent.mkdir()
    await filled(db, 200)
    corrupt_page(db)
    config = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9")
    began = time.monotonic()
    done = run_ackd("serve", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}",
                    "--data-dir", str(db.parent))
    assert time.monotonic() - began < 30
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]  # the one line naming the cause, last
    assert line.startswith(f"ackd: the store {db} is damaged: "), line
    assert line.endswith("restore it from a backup (README: Backup and restore)")


async def test_backup_while_serving_holds_every_commit_before_it_and_restores(
    tmp_path: Path, sink: HttpSink
) -> None:
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    config = tmp_path / "ackd.yaml"
    await ackd.start_ready()
    copies = [tmp_path / f"backup-{n}.db" for n in range(3)]
    stop = asyncio.Event()
    answered: list[str] = []

    async def keep_posting() -> None:
        async with aiohttp.ClientSession() as session:
            n = 0
            while not stop.is_set():
                assert await post(session, ackd.url, named(f"Load{n}")) == 200
                answered.append(f"Load{n}")
                n += 1

    try:
        load = asyncio.create_task(keep_posting())
        await wait_until(lambda: _true(len(answered) > 20), 20, "webhooks answered")
        for copy in copies:
            before = set(answered)  # answered 200, so committed before the backup began
            done = await asyncio.to_thread(
                run_ackd, "backup", str(copy), "--config", str(config),
                "--data-dir", str(tmp_path / "data"),
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith(f"backed up {tmp_path / 'data' / 'ackd.db'} to {copy}")
            assert before <= _summaries(copy)
            assert_sound_file(copy)
            assert oct(copy.stat().st_mode & 0o777) == oct(0o600)
        stop.set()
        await load
    finally:
        stop.set()
        ackd.stop()
    assert not _partial_files(tmp_path)
    assert _summaries(copies[-1]) <= set(answered)

    # Restore, as the README says: ackd stopped, the copy put in place of the store, the old
    # WAL and its index removed, ackd started again.
    data = tmp_path / "data"
    for leftover in ("ackd.db-wal", "ackd.db-shm"):
        (data / leftover).unlink(missing_ok=True)
    shutil.copyfile(copies[-1], data / "ackd.db")
    ackd.start()
    try:
        await wait_until(lambda: http_ok(f"{ackd.url}/-/ready"), 20, "the restored ackd")
        assert await _every_summary(ackd) == _summaries(copies[-1])
    finally:
        ackd.stop()


async def test_backup_says_in_one_line_what_is_wrong(tmp_path: Path) -> None:
    config = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9")
    done = run_ackd("backup", str(tmp_path / "copy.db"), "--config", str(config),
                    "--data-dir", str(tmp_path / "nowhere"))
    assert done.returncode == 1
    assert done.stderr == f"ackd backup: no store at {tmp_path / 'nowhere' / 'ackd.db'}" \
        " (check data_dir and storage.path in the config)\n"
    assert not (tmp_path / "copy.db").exists()


async def test_backup_into_a_missing_directory_names_the_directory(tmp_path: Path) -> None:
    """It named the hidden file it writes first: "No such file or directory:
    '.../.copy.db.partial'"."""
    config = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9")
    data = tmp_path / "data"
    data.mkdir()
    with contextlib.closing(sqlite3.connect(data / "ackd.db")) as store:
        store.execute("CREATE TABLE incidents (summary TEXT)")
    done = run_ackd("backup", str(tmp_path / "nowhere" / "copy.db"), "--config", str(config),
                    "--data-dir", str(data))
    assert done.returncode == 1
    assert done.stderr == f"ackd backup: {tmp_path / 'nowhere'} is not a directory: create it," \
        " or give a path in an existing one\n"


async def test_backup_of_a_postgresql_config_points_at_pg_dump(tmp_path: Path) -> None:
    """A SQLite file left in data_dir from before the move to PostgreSQL was copied, stale,
    and reported as backed up."""
    config = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9")
    config.write_text(config.read_text()
                      + "storage: {postgres: {dsn: 'postgresql://ackd@127.0.0.1:9/ackd'}}\n")
    data = tmp_path / "data"
    data.mkdir()
    with contextlib.closing(sqlite3.connect(data / "ackd.db")) as old:
        old.execute("CREATE TABLE incidents (summary TEXT)")
    done = run_ackd("backup", str(tmp_path / "copy.db"), "--config", str(config),
                    "--data-dir", str(data))
    assert done.returncode == 1
    assert done.stderr == "ackd backup: the store is PostgreSQL (storage.postgres): back it" \
        " up with pg_dump; ackd backup copies the embedded SQLite store only\n"
    assert not (tmp_path / "copy.db").exists()


async def _every_summary(ackd: Ackd) -> set[str]:
    """Every incident's summary, through the API a page at a time."""
    found: set[str] = set()
    page = await ackd.incidents(limit="1000")
    while page:
        found |= {i["summary"] for i in page}
        page = await ackd.incidents(limit="1000", before=str(page[-1]["id"]))
    return found


def _partial_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".partial")]


async def _true(value: bool) -> bool:
    return value


def _summaries(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {row[0] for row in conn.execute("SELECT summary FROM incidents")}


async def _paged(ackd: Ackd, count: int) -> bool:
    for number in range(1, count + 1):
        events = (await ackd.incident(number))["timeline"]
        if not any(e["kind"] == "notification_sent" for e in events):
            return False
    return True


async def test_stopped_while_the_wal_index_is_immutable_exits_1_and_loses_nothing(
    tmp_path: Path, sink: HttpSink
) -> None:
    """Closing the store checkpoints, which writes the WAL index: with that file immutable the
    close died of SIGBUS. ackd says why in one line and exits 1 without closing it; every
    webhook answered 200 is in the store when it starts again."""
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    db = tmp_path / "data" / "ackd.db"
    await ackd.start_ready()
    kept = [f"Kept{n}" for n in range(5)]
    try:
        for name in kept:
            assert (await post_one(ackd.url, named(name)))[0] == 200
        # Their pages recorded first: a store call already past the guard's check when the
        # file turns immutable still dies of SIGBUS (see shm.py), and sends are such calls.
        await wait_until(lambda: _paged(ackd, len(kept)), 20, "the pages to be recorded")
        with wal_index_immutable(ackd, db):
            status, body = await post_one(ackd.url, named("Refused"))
            assert status == 503, body
            assert "-shm is immutable" in body["error"]
            code = await asyncio.to_thread(ackd.signal, signal.SIGTERM)
    finally:
        ackd.stop()
    assert code == 1  # not -SIGBUS
    last = ackd.log().strip().splitlines()[-1]
    assert last.startswith("ackd: stopped without closing the store: "), last
    assert "-shm is immutable" in last

    await ackd.start_ready()
    try:
        assert await _every_summary(ackd) == set(kept)
    finally:
        ackd.stop()
    assert_sound_file(db)
