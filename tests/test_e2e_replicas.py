"""End to end, three ackd replicas on one PostgreSQL database: the real Alertmanager sends
every webhook to all three; one incident opens per group, each page reaches the local sink
once, and when replicas are SIGKILLed mid-escalation (one, then another) the next step
still fires once, within a second of its due time: every replica's timer holds every
deadline (NOTIFY), and the first to take it (SKIP LOCKED) is the only one that fires it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.harness import Ackd, Alertmanager, alertmanager_binary, am_alert, free_port, write_config
from tests.pgcluster import Cluster, fresh_database
from tests.sinks import HttpSink

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
PAYMENTS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
            "severity": "critical"}
STEP = 3.0  # seconds between escalation steps


def replicas_of(tmp_path: Path, dsn: str, sink: HttpSink, count: int) -> list[Ackd]:
    ackds = []
    for n in range(count):
        home = tmp_path / f"replica{n}"
        home.mkdir()
        port = free_port()
        config = write_config(
            home / "ackd.yaml", f"127.0.0.1:{sink.port}", step_delay=f"{STEP:g}s",
            external_url=f"http://127.0.0.1:{port}",
            extra=f"storage: {{postgres: {{dsn: '{dsn}', pool_size: 4}}}}\n",
        )
        ackds.append(Ackd(home, config, port))
    return ackds


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
            paged_at = time.monotonic()
            assert first.path == "/ana"
            incidents = await ackds[2].incidents()
            assert len(incidents) == 1  # three replicas took the same group: one incident

            # Mid-escalation, the replica that took the webhook first dies.
            await asyncio.sleep(STEP / 3)
            ackds[0].kill()

            second = (await sink.wait_for(2, within=STEP + 5))[1]
            late = time.monotonic() - paged_at - STEP
            assert second.path == "/bo"
            assert -0.3 <= late <= 1.0, late  # due STEP after the first page, not later

            # And another: the last replica left fires the last step alone.
            stepped_at = time.monotonic()
            ackds[1].kill()
            third = (await sink.wait_for(3, within=STEP + 5))[2]
            late = time.monotonic() - stepped_at - STEP
            assert third.path == "/cy"
            assert -0.3 <= late <= 1.0, late
            await asyncio.sleep(STEP)  # Alertmanager's resends meanwhile change nothing
            assert [r.path for r in sink.requests] == ["/ana", "/bo", "/cy"]
            assert len(await ackds[2].incidents()) == 1
        finally:
            am.stop()
            for ackd in ackds:
                ackd.stop()
            for ackd in ackds:
                if "Traceback" in ackd.log():
                    print(ackd.log())
