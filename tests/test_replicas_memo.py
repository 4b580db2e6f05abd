"""The webhook memos of replicas on one PostgreSQL database: a resend is answered from memory
only while no replica changed its incident. Two whole daemons, each on a fake clock of its
own, so that only one of them comes to a deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import Alert, AlertStatus
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import TOKEN, write_config
from tests.test_api import LABELS, Api

Start = Callable[[str], Awaitable[Api]]


@pytest.fixture
async def start(tmp_path: Path, pg_dsn: str) -> AsyncIterator[Start]:
    """`start(name)`: a replica on the test's database, with stale_after 3h (notify only;
    the second step a day on, so that only the stale deadline comes due)."""
    daemons: list[Daemon] = []

    async def started(name: str) -> Api:
        (tmp_path / name).mkdir()
        path = write_config(tmp_path / name / "ackd.yaml", "127.0.0.1:9", step_delay="24h",
                            extra=f"storage: {{postgres: {{dsn: '{pg_dsn}', pool_size: 4}}}}\n")
        path.write_text(path.read_text().replace(
            "route:\n  team: platform\n", "route:\n  stale_after: 3h\n  team: platform\n"))
        loaded = replace(config_module.load(path), listen_port=0,
                         data_dir=tmp_path / name / "data")
        clock, notifier = FakeClock(), RecordingNotifier()
        daemon = Daemon(loaded, clock=clock, notifier=notifier, config_path=path)
        await daemon.start()
        daemons.append(daemon)
        return Api(daemon, notifier, clock)

    yield started
    for daemon in daemons:
        await daemon.stop()


async def post(api: Api, body: bytes) -> tuple[int, bool]:
    """The incident the webhook reached, and whether it took a transaction (what the
    dispatcher had to write is written first)."""
    await api.settle()
    commits = api.daemon.store.stats.commits
    status, answer = await api.call("POST", "/api/v1/alerts", raw=body, token=TOKEN)
    assert status == 200, answer
    return int(answer["incidents"][0]), api.daemon.store.stats.commits > commits


async def test_a_stale_verdict_on_another_replica_sends_the_next_report_down_the_full_path(
    start: Start,
) -> None:
    """Replica one answers a resend from its memo. The stale deadline comes due on replica
    two (only its clock moves), which notes the incident stale and leaves it open; its
    stale deadline is gone. The next report to replica one must take a transaction, which
    arms the stale deadline again: from the memo, nothing would ever judge it stale again."""
    one, two = await start("one"), await start("two")
    starts = one.clock.now() - timedelta(seconds=30)
    alert = Alert(fingerprint_of(LABELS), AlertStatus.FIRING, LABELS, {}, starts, None)
    body = json.dumps(build_webhook([alert])).encode()
    number, _ = await post(one, body)
    assert await post(one, body) == (number, False)  # the memo answers

    await two.clock.jump(timedelta(hours=3, minutes=1))
    async with asyncio.timeout(10):
        while not any(e.kind == "stale" for e in await two.daemon.store.timeline(number)):
            await two.clock.jump(0)
            await asyncio.sleep(0.02)
    assert (await two.daemon.store.incident(number)).is_open

    assert await post(one, body) == (number, True)
    kinds = [kind for kind, in await _deadline_kinds(one, number)]
    assert "stale" in kinds


async def _deadline_kinds(api: Api, number: int) -> list[tuple[str]]:
    store = api.daemon.store
    rows = await store._fetch(  # type: ignore[attr-defined]
        "SELECT kind FROM deadlines WHERE incident_id = $1", number)
    return [(str(r[0]),) for r in rows]
