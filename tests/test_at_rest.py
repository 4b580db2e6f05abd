"""No credentials at rest: Apprise URLs never reach the store's files, the files are private,
and Apprise's own debug output is masked.

Real parts throughout: a real daemon posting through real Apprise to a local sink, real SQLite
files read back byte by byte (the database, its WAL and its shared memory).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.config.model import Config
from receiver.core.model import Alert, AlertStatus, EventKind
from receiver.delivery.dispatch import Dispatcher
from receiver.notify.contacts import index_of
from receiver.notify.notifier import AppriseNotifier, Message, mask
from receiver.store import SqliteStore
from receiver.store.sqlite.schema import MIGRATIONS
from receiver.telemetry.metrics import Metrics
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import API_TOKEN, TOKEN, wait_until
from tests.sinks import HttpSink

PASSWORD = "Pw0rd-of-ana"
HEADER = "Hdr-t0ken-ana"
QUERY = "Qry-s3cret-ana"
ROOM = "R00m-pw-ops"
SECRETS = (PASSWORD, HEADER, QUERY, ROOM)

CONFIG = """
webhook: {{bearer_token: {token}}}
api: {{tokens: [{{name: t, token: {api}}}]}}
notifications: {{bundle_window: 0s, rate_limit: {{max: 1000, window: 1m}}}}
users: [{{name: ana, contacts: [{{url: "{ana}"}}]}}]
channels: [{{name: ops-room, urls: [{{url: "{room}"}}]}}]
teams: [{{name: ops}}]
policies: [{{name: p, steps: [{{notify: [{{user: ana}}, {{channel: ops-room}}]}}]}}]
route: {{team: ops, policy: p, severity: SEV1, group_by: [alertname]}}
"""


def ana_url(port: int) -> str:
    return f"json://ana:{PASSWORD}@127.0.0.1:{port}/ana?+X-Token={HEADER}&-key={QUERY}"


def room_url(port: int) -> str:
    return f"json://ops:{ROOM}@127.0.0.1:{port}/room"


def store_bytes(db: Path) -> dict[str, bytes]:
    """Every file of the store as it is on disk now."""
    files = {}
    for suffix in ("", "-wal", "-shm"):
        path = db.with_name(db.name + suffix)
        if path.exists():
            files[path.name] = path.read_bytes()
    return files


def leaked(files: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(name, secret) for name, data in files.items() for secret in SECRETS
            if secret.encode() in data]


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common default umask, which lets everyone read what a process creates."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_a_storm_leaves_no_credential_in_the_store_files(
    tmp_path: Path, umask_022: None
) -> None:
    async with HttpSink() as sink:
        text = CONFIG.format(token=TOKEN, api=API_TOKEN, ana=ana_url(sink.port),
                             room=room_url(sink.port))
        loaded = replace(config_module.parse(str(tmp_path / "c.yaml"), text),
                         listen_port=0, data_dir=tmp_path / "data")
        daemon = Daemon(loaded)
        await daemon.start()
        try:
            await _storm(daemon, count=200)
            running = store_bytes(loaded.db_path)
            modes = {name: stat.S_IMODE((loaded.data_dir / name).stat().st_mode)
                     for name in running}
        finally:
            await daemon.stop()
        stopped = store_bytes(loaded.db_path)

    # The sends used the credentials: they are in the config, only not in the store.
    ana = [r for r in sink.requests if r.path == "/ana"]
    assert len(ana) > 1  # pages due in one pass go to one URL as one bundle
    assert ana[0].headers["X-Token"] == HEADER
    assert ana[0].query["key"] == QUERY
    assert "-wal" in " ".join(running)
    assert leaked(running) == []
    assert leaked(stopped) == []
    # Private files: the data directory, the database and its WAL and shared memory.
    data = loaded.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "link-secret").stat().st_mode) == 0o600
    assert modes == dict.fromkeys(["ackd.db", "ackd.db-wal", "ackd.db-shm"], 0o600)


async def _storm(daemon: Daemon, count: int) -> None:
    url = f"http://127.0.0.1:{daemon.port}"
    gate = asyncio.Semaphore(16)
    starts = datetime.now(UTC) - timedelta(seconds=10)
    async with aiohttp.ClientSession() as session:

        async def one(n: int) -> None:
            labels = {"alertname": f"Storm{n}"}
            alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, starts, None)
            async with gate, session.post(
                f"{url}/api/v1/alerts", data=json.dumps(build_webhook([alert])),
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as response:
                assert response.status == 200

        await asyncio.gather(*(one(n) for n in range(count)))

    async def drained() -> bool:
        far = daemon.clock.now() + timedelta(days=1)
        empty = not await daemon.store.due_notifications(far, 1)
        return empty and daemon.dispatcher.in_flight == 0

    await wait_until(drained, 30, "the outbox to drain")


async def test_store_files_of_an_older_ackd_are_narrowed(
    tmp_path: Path, umask_022: None
) -> None:
    db = tmp_path / "data" / "ackd.db"
    first = SqliteStore(db)
    await first.open()
    await first.close()
    for suffix in ("", "-wal", "-shm"):
        side = db.with_name(db.name + suffix)
        side.touch()
        side.chmod(0o644)  # as SQLite created them before
    second = SqliteStore(db)
    await second.open()
    try:
        for suffix in ("", "-wal", "-shm"):
            mode = stat.S_IMODE(db.with_name(db.name + suffix).stat().st_mode)
            assert mode == 0o600, suffix
    finally:
        await second.close()


# -- migration 4: rows written with URLs ------------------------------------------------------

LEGACY = """
links: {{secret: legacy-test-secret}}
users: [{{name: ana, contacts: [{{url: "json://127.0.0.1:9/push"}}, {{url: "{ana}"}}]}}]
channels: [{{name: ops-room, urls: [{{url: "{room}"}}]}}]
teams: [{{name: ops}}]
policies: [{{name: p, steps: [{{notify: [{{user: ana}}]}}]}}]
route: {{team: ops, policy: p, severity: SEV1}}
"""


def legacy_store(db: Path, port: int) -> None:
    """A database as ackd left it before migration 4: URLs in the outbox rows, and the bytes
    of a finished row's URL still in the file."""
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for script in MIGRATIONS[:3]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version=3")
    conn.execute(
        "INSERT INTO incidents (id, group_key, route_id, team, severity, policy, group_labels,"
        " state, opened_at, updated_at) VALUES (1, 'g', 'r', 'ops', 'SEV1', 'p', '{}',"
        " 'triggered', 0, 0)"
    )
    rows = [
        ("ana", "user", ana_url(port), 0),
        ("ops-room", "channel", room_url(port), None),
        ("ana", "user", "json://ana:Gone-pw@127.0.0.1:9/old", 1),  # no longer configured
        ("ana", "user", ana_url(port) + "&x=" + "y" * 3000, 2),  # finished, deleted below
    ]
    for n, (who, kind, url, step) in enumerate(rows, start=1):
        payload = {"recipient": who, "recipient_kind": kind, "url": url, "short": False,
                   "reason": "triggered", "step": step, "cycle": 0, "run": 0}
        conn.execute(
            "INSERT INTO outbox (id, incident_id, created_at, payload, next_attempt_at)"
            " VALUES (?, 1, 0, ?, 0)", (n, json.dumps(payload)),
        )
    conn.execute("DELETE FROM outbox WHERE id = 4")
    conn.close()


async def test_migration_4_turns_urls_into_references_and_scrubs_the_file(
    tmp_path: Path, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "data" / "ackd.db"
    legacy_store(db, 9)
    assert any(PASSWORD.encode() in data for data in store_bytes(db).values())  # the premise
    config = config_module.parse("legacy.yaml", LEGACY.format(ana=ana_url(9), room=room_url(9)))
    store = SqliteStore(db, contact_index=lambda name, kind, url: index_of(
        url, name, kind, config.users, config.channels))
    await store.open()
    try:
        rows = [row for row, _ in await store.due_notifications(fake_clock.now())]
        assert [(r.message.recipient, r.message.contact) for r in rows if r.message] == \
            [("ana", 1), ("ops-room", 0), ("ana", None)]
        with sqlite3.connect(db) as conn:
            payloads = [json.loads(text) for (text,) in conn.execute("SELECT payload FROM outbox")]
        assert all("url" not in p for p in payloads)
        assert leaked(store_bytes(db)) == []

        sent = await _dispatch(store, config, fake_clock, caplog)
    finally:
        await store.close()
    # The carried-over rows went where they were meant to; the orphan failed, visibly.
    assert sorted(sent) == sorted([ana_url(9), room_url(9)])
    [failed] = [e for e in await _timeline(db) if e.kind is EventKind.NOTIFICATION_FAILED]
    assert failed.detail["error"] == "the notification names no contact of user ana"
    assert "names no contact" in caplog.text


async def _dispatch(
    store: SqliteStore, config: Config, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> list[str]:
    notifier = RecordingNotifier()
    dispatcher = Dispatcher(store, notifier, clock, Metrics(), lambda: config)
    dispatcher.start()

    async def settled() -> bool:
        return not await store.due_notifications(clock.now()) and dispatcher.in_flight == 0

    await wait_until(settled, 15, "the carried-over rows to go")
    await dispatcher.stop(grace=5)
    return [url for url, _ in notifier.sent]


async def _timeline(db: Path) -> list:  # type: ignore[type-arg]
    store = SqliteStore(db)
    await store.open()
    try:
        return await store.timeline(1)
    finally:
        await store.close()


# -- what Apprise logs -------------------------------------------------------------------------


async def test_apprise_debug_output_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, Apprise's and urllib3's included
    async with HttpSink() as sink:
        notifier = AppriseNotifier(1, timedelta(seconds=5))
        try:
            delivery = await notifier.send(ana_url(sink.port), Message("t", "b"))
        finally:
            await notifier.close()
        [request] = await sink.wait_for(1)
    assert delivery.ok
    assert request.headers["X-Token"] == HEADER  # the secrets were used...
    assert "JSON POST URL" in caplog.text  # ...and Apprise did log at DEBUG...
    for secret in (PASSWORD, HEADER, QUERY):
        assert secret not in caplog.text  # ...masked

    # A Slack webhook's tokens are its path; Apprise prints the URL it posts to. (Not sent:
    # only loopback here. The URL is known once ackd validated or masked it.)
    slack = "slack://T0AAAAAAA/B0BBBBBBB/Cccccccccccccccccccccccc/#ops"
    mask(slack)
    caplog.clear()
    logging.getLogger("apprise").debug(
        "Slack POST URL: https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/"
        "Cccccccccccccccccccccccc (cert_verify=True)"
    )
    assert "Slack POST URL" in caplog.text
    for token in ("T0AAAAAAA", "B0BBBBBBB", "Cccccccccccccccccccccccc"):
        assert token not in caplog.text
