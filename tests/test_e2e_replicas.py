"""End to end, three ackd replicas on one PostgreSQL database: the real Alertmanager sends
every webhook to all three; one incident opens per group, each page reaches the local sink
once, and when replicas are SIGKILLed mid-escalation (one, then another) the next step
still fires once, within a second of its due time: every replica's timer holds every
deadline (NOTIFY), and the first to take it (SKIP LOCKED) is the only one that fires it. And
a replica SIGKILLed in a webhook storm loses nothing any replica answered 200."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.core.model import Alert, AlertStatus
from receiver.store.postgres.replicas import GRACE
from tests.harness import (
    TOKEN,
    Ackd,
    Alertmanager,
    alertmanager_binary,
    am_alert,
    free_port,
    write_config,
)
from tests.pgcluster import Cluster, fresh_database
from tests.sinks import HttpSink, SinkMode

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
PAYMENTS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
            "severity": "critical"}
STEP = 3.0  # seconds between escalation steps


def replicas_of(tmp_path: Path, dsn: str, sink: HttpSink, count: int,
                step: float = STEP) -> list[Ackd]:
    ackds = []
    for n in range(count):
        home = tmp_path / f"replica{n}"
        home.mkdir()
        port = free_port()
        config = write_config(
            home / "ackd.yaml", f"127.0.0.1:{sink.port}", step_delay=f"{step:g}s",
            external_url=f"http://127.0.0.1:{port}",
            extra=f"storage: {{postgres: {{dsn: '{dsn}', pool_size: 4}}}}\n",
        )
        ackds.append(Ackd(home, config, port))
    return ackds


async def fire(ackd: Ackd, alertname: str) -> None:
    """Alertmanager's webhook of one firing alert of team payments named `alertname`, posted
    to `ackd`, which answers 200."""
    labels = {**PAYMENTS, "alertname": alertname}
    alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, START, None)
    async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {TOKEN}"}) as session, session.post(
            f"{ackd.url}/api/v1/alerts", data=json.dumps(build_webhook([alert]))) as r:
        assert r.status == 200


async def recorded(dsn: str) -> None:
    """Wait until no page is left in the outbox: each delivery's result is committed."""
    conn = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(10):
            while True:
                if not await conn.fetchval("SELECT count(*) FROM outbox"):
                    return
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


def to_all(config_path: Path, ackds: list[Ackd]) -> None:
    """Alertmanager's one receiver posts every notification to each replica."""
    path = config_path
    config = yaml.safe_load(path.read_text())
    hooks = config["receivers"][0]["webhook_configs"]
    template = hooks[0]
    config["receivers"][0]["webhook_configs"] = [
        {**template, "url": f"{ackd.url}/api/v1/alerts"} for ackd in ackds
    ]
    path.write_text(yaml.safe_dump(config))


@pytest.mark.alertmanager
async def test_three_replicas_page_once_and_survive_a_sigkill_mid_escalation(
    tmp_path: Path, sink: HttpSink, pg_cluster: Cluster
) -> None:
    alertmanager_binary()
    async with fresh_database(pg_cluster) as dsn:
        ackds = replicas_of(tmp_path, dsn, sink, 3)
        am = Alertmanager(tmp_path, ackds[0].url)
        to_all(tmp_path / "am" / "alertmanager.yml", ackds)
        try:
            await asyncio.gather(*(a.start_ready() for a in ackds))
            await am.start_ready()
            await am.post_alerts([am_alert(PAYMENTS, START)])

            first = (await sink.wait_for(1, within=20))[0]
            assert first.path == "/ana"
            incidents = await ackds[2].incidents()
            assert len(incidents) == 1  # three replicas took the same group: one incident

            # Mid-escalation, the replica that took the webhook first dies.
            await asyncio.sleep(STEP / 3)
            await recorded(dsn)
            ackds[0].kill()

            second = (await sink.wait_for(2, within=STEP + 5))[1]
            assert second.path == "/bo"

            # And another: the last replica left fires the last step alone. Killed once the
            # page is recorded: killed while sending it, its page would go again, at least
            # once (test_a_page_in_flight_on_a_killed_replica_is_sent_by_another...).
            await recorded(dsn)
            ackds[1].kill()
            third = (await sink.wait_for(3, within=STEP + 5))[2]
            assert third.path == "/cy"
            await asyncio.sleep(STEP)  # Alertmanager's resends meanwhile change nothing
            assert [r.path for r in sink.requests] == ["/ana", "/bo", "/cy"]
            [incident] = await ackds[2].incidents()
            # Each step within a second of its due time, STEP after the one before fired, by
            # the timeline (when a replica fired it), and its page out at once, by when the
            # sink received it: not by when this test's polls saw each page.
            fired = fired_at(await ackds[2].incident(incident["id"]))
            for step, page in ((1, second), (2, third)):
                late = (fired[step] - fired[step - 1]).total_seconds() - STEP
                assert 0 <= round(late, 3) <= 1.0, (step, late)
                sent = page.received_at - fired[step].timestamp()
                assert sent <= 1.0, (step, sent)
        finally:
            am.stop()
            for ackd in ackds:
                ackd.stop()
            for ackd in ackds:
                if "Traceback" in ackd.log():
                    print(ackd.log())


def fired_at(incident: dict[str, Any]) -> dict[int, datetime]:
    """When each step of the first run and cycle fired, by the incident's timeline."""
    return {e["detail"]["step"]: datetime.fromisoformat(e["at"]) for e in incident["timeline"]
            if e["kind"] == "step_fired" and e["detail"]["run"] == e["detail"]["cycle"] == 0}


def replica_number(ackd: Ackd) -> int:
    """The number a replica holds its advisory lock under, from its start's log line."""
    found = re.search(r"ackd listening on \S+, store .*, replica (\d+)", ackd.log())
    assert found is not None, ackd.log()[-2000:]
    return int(found.group(1))


async def test_a_page_in_flight_on_a_killed_replica_is_sent_by_another_after_the_grace(
    tmp_path: Path, pg_cluster: Cluster
) -> None:
    """The first delivery hangs at the sink; the replica sending it is SIGKILLed. Its lease
    named it, its session's lock is gone with it, and once its number has stayed unlocked for
    replicas.GRACE (not a database restart, which every replica rides out), another replica
    sends the page within a second more: at least once (the sink saw the first attempt too),
    as after any crash."""
    async with HttpSink(SinkMode.HUNG) as sink, fresh_database(pg_cluster) as dsn:
        ackds = replicas_of(tmp_path, dsn, sink, 3, step=600)
        try:
            await asyncio.gather(*(a.start_ready() for a in ackds))
            numbers = {replica_number(a): a for a in ackds}
            await fire(ackds[0], "InFlight")
            await sink.wait_for(1, within=20)  # the first attempt: it hangs
            sink.mode = SinkMode.OK
            conn = await asyncpg.connect(dsn)
            try:
                holder = await conn.fetchval("SELECT leased_by FROM outbox")
                numbers[holder].kill()
                killed_at = time.time()
                second = (await sink.wait_for(2, within=10 + GRACE))[1]
                assert second.path == "/ana"
                took = second.received_at - killed_at
                assert GRACE <= took <= GRACE + 1.0, took
                await recorded(dsn)  # the survivor records it, and it is done
                sent = await conn.fetchval(
                    "SELECT count(*) FROM timeline WHERE kind = 'notification_sent'")
            finally:
                await conn.close()
            assert sent == 1
            await asyncio.sleep(1)
            assert [r.path for r in sink.requests] == ["/ana", "/ana"]
        finally:
            for ackd in ackds:
                ackd.stop()


async def test_a_replica_killed_in_a_webhook_storm_loses_nothing_it_answered(
    tmp_path: Path, sink: HttpSink, pg_cluster: Cluster
) -> None:
    """Webhooks of 300 groups go to the three replicas in turn, each group to two of them at
    once (as Alertmanager posting to all); one replica is SIGKILLed mid-storm. Every group
    answered 200 by any replica is in the database, as one incident with its alert."""
    groups = 300
    async with fresh_database(pg_cluster) as dsn:
        ackds = replicas_of(tmp_path, dsn, sink, 3)
        answered: set[int] = set()
        refused: list[int] = []
        sent = asyncio.Event()
        try:
            await asyncio.gather(*(a.start_ready() for a in ackds))
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with aiohttp.ClientSession(headers=headers) as session:

                async def post(n: int, ackd: Ackd) -> None:
                    labels = {"alertname": f"Storm{n}", "cluster": "eu1", "team": "payments"}
                    alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {},
                                  START, None)
                    try:
                        async with session.post(f"{ackd.url}/api/v1/alerts",
                                                data=json.dumps(build_webhook([alert]))) as r:
                            if r.status == 200:
                                answered.add(n)
                    except aiohttp.ClientError:
                        refused.append(n)  # the killed replica: Alertmanager would retry
                    if len(answered) >= groups // 3:
                        sent.set()

                async def storm() -> None:
                    limit = asyncio.Semaphore(16)

                    async def one(n: int) -> None:
                        async with limit:
                            await asyncio.gather(post(n, ackds[n % 3]),
                                                 post(n, ackds[(n + 1) % 3]))
                    await asyncio.gather(*(one(n) for n in range(groups)))

                running = asyncio.create_task(storm())
                await sent.wait()
                ackds[0].kill()
                answered_before_kill = len(answered)
                await running
            conn = await asyncpg.connect(dsn)
            try:
                rows = await conn.fetch(
                    "SELECT a.labels::jsonb ->> 'alertname' AS name, count(DISTINCT i.id) AS n"
                    " FROM alerts a JOIN incidents i ON i.id = a.incident_id GROUP BY name")
            finally:
                await conn.close()
        finally:
            for ackd in ackds:
                ackd.stop()
    stored = {r["name"]: r["n"] for r in rows}
    assert answered_before_kill < groups  # the kill came mid-storm
    assert refused  # and cut off webhooks the killed replica had not answered
    assert {f"Storm{n}" for n in answered} <= set(stored)  # nothing answered 200 is lost
    assert set(stored.values()) == {1}  # one incident per group, however many took it
