"""The webhook memos of replicas on one PostgreSQL database, with whole daemons on one fake
clock: a resend answered from memory is still a report for staleness, which the replica
whose timer judges the incident may not have taken itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import TOKEN, write_config
from tests.test_api import Api
from tests.test_stale import incident, stale_events, the_webhook

HOUR = timedelta(hours=1)
Start = Callable[[], Awaitable[list[Api]]]


@pytest.fixture
async def start(tmp_path: Path, pg_dsn: str) -> AsyncIterator[Start]:
    """Two replicas on the test's database and one fake clock, stale_after 3h, and the
    second step a day on: nothing but the webhooks writes the incident for hours."""
    daemons: list[Daemon] = []

    async def started() -> list[Api]:
        clock = FakeClock()
        apis = []
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            path = write_config(
                tmp_path / name / "ackd.yaml", "127.0.0.1:9", step_delay="24h",
                extra=f"storage: {{postgres: {{dsn: '{pg_dsn}', pool_size: 4}}}}\n")
            path.write_text(path.read_text().replace(
                "route:\n  team: platform\n", "route:\n  stale_after: 3h\n  team: platform\n"))
            loaded = replace(config_module.load(path), listen_port=0,
                             data_dir=tmp_path / name / "data")
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


async def post(api: Api, body: bytes) -> tuple[int, bool]:
    """The incident the webhook reached, and whether it took a transaction (what the
    dispatcher had to write is written first)."""
    await api.settle()
    commits = api.daemon.store.stats.commits
    status, answer = await api.call("POST", "/api/v1/alerts", raw=body, token=TOKEN)
    assert status == 200, answer
    return int(answer["incidents"][0]), api.daemon.store.stats.commits > commits


async def test_a_resend_answered_from_the_memo_counts_as_a_report_on_the_other_replica(
    start: Start,
) -> None:
    """Replica one takes a group and its resends, answered from its memo (nothing changes
    the incident); it stops 2h in. Replica two's timer fires the stale deadline 3h after the
    opening: it must count the resend one answered 2h in, so not stale yet."""
    one, two = await start()
    body = the_webhook(one)
    number, _ = await post(one, body)
    assert await post(one, body) == (number, False)  # from the memo
    await one.clock.jump(2 * HOUR)
    assert await post(one, body) == (number, False)
    await one.settle()
    await one.daemon.stop()
    await two.clock.jump(HOUR + timedelta(seconds=1))
    await two.settle()
    assert stale_events(await incident(two, number)) == []
