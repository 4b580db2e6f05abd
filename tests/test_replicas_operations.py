"""Operating replicas on PostgreSQL, over HTTP as a load balancer and Prometheus see them:
`/-/ready` follows the database (503 with a JSON reason while it is down, 200 once it is
back, the process alive throughout), and the metrics of two replicas add up on the
dashboard: no sample is labelled by replica, the counters count each act once across them,
and the gauge read from the shared database is taken with max, not summed."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.core.model import Alert, AlertStatus
from receiver.store.postgres.replicas import GRACE
from tests.harness import TOKEN, Ackd, free_port, wait_until, write_config
from tests.pgcluster import Cluster, fresh_database, start_cluster
from tests.sinks import HttpSink, SinkMode
from tests.test_e2e_replicas import PAYMENTS, START, replica_number, replicas_of

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy/grafana/dashboards/ackd.json"
# Labels Prometheus itself adds per target, or that would name a process: none of ackd's own.
PER_PROCESS = {"replica", "instance", "pod", "host", "hostname", "pid", "node", "job"}


def replica(tmp_path: Path, name: str, dsn: str, sink: HttpSink) -> Ackd:
    home = tmp_path / name
    home.mkdir()
    port = free_port()
    config = write_config(
        home / "ackd.yaml", f"127.0.0.1:{sink.port}", step_delay="10m",
        external_url=f"http://127.0.0.1:{port}",
        extra=f"storage: {{postgres: {{dsn: '{dsn}', pool_size: 4}}}}\n",
    )
    return Ackd(home, config, port)


def assert_clock_on_time(clock: Any) -> None:
    """/-/ready's measurement of this replica's clock against the database's, which runs on
    the same machine's clock: within its uncertainty of 0."""
    assert set(clock) == {"offset_seconds", "uncertainty_seconds", "measured_at"}
    assert abs(clock["offset_seconds"]) <= clock["uncertainty_seconds"] + 1e-5
    assert clock["uncertainty_seconds"] < 2  # half a round trip: loopback, a loaded machine
    datetime.fromisoformat(clock["measured_at"])


async def readiness(ackd: Ackd) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{ackd.url}/-/ready", timeout=aiohttp.ClientTimeout(total=5)) as answer:
        return answer.status, json.loads(await answer.text())


async def test_ready_follows_the_database_down_and_up_again(
    tmp_path: Path, sink: HttpSink
) -> None:
    cluster = start_cluster()  # its own: it is stopped and started again
    ackd = replica(tmp_path, "replica", cluster.dsn(), sink)
    try:
        await ackd.start_ready()
        status, body = await readiness(ackd)
        assert status == 200
        assert body["status"] == "ready"
        assert set(body) == {"status", "clock"}  # measured at start (store.open)
        assert_clock_on_time(body["clock"])
        cluster.halt()
        status, body = await readiness(ackd)
        assert status == 503
        assert body["error"].startswith("store unavailable: "), body
        cluster.resume()

        async def ready_again() -> bool:
            return (await readiness(ackd))[0] == 200

        await wait_until(ready_again, 30, "ready once the database is back")
        assert ackd.proc is not None
        assert ackd.proc.poll() is None  # it never exited
        status, body = await readiness(ackd)
        assert status == 200
        assert body["status"] == "ready"
    finally:
        ackd.stop()
        cluster.stop()


async def test_a_database_restart_sends_each_page_in_flight_once(tmp_path: Path) -> None:
    """A routine PostgreSQL restart while each of three replicas sends a page to a slow
    gateway: every session ends, the replicas' advisory locks with them, yet no replica died,
    so no page goes twice. The replica whose listener comes back first sees the others'
    numbers unlocked until they claim them again: it gives a number's leases back only once
    that number has stayed unlocked for replicas.GRACE. And each sender records its delivery
    once the database is back, on connections the pool opened again."""
    cluster = start_cluster()  # its own: it is restarted
    try:
        async with HttpSink(SinkMode.SLOW, hold=3) as sink:
            ackds = replicas_of(tmp_path, cluster.dsn(), sink, 3, step=600)
            for n in range(3):  # a send outlasts the restart (a real gateway's may)
                config = tmp_path / f"replica{n}" / "ackd.yaml"
                config.write_text(config.read_text().replace("{timeout: 2s,", "{timeout: 10s,"))
            try:
                await asyncio.gather(*(a.start_ready() for a in ackds))
                async with aiohttp.ClientSession(
                        headers={"Authorization": f"Bearer {TOKEN}"}) as session:
                    for n, ackd in enumerate(ackds):  # each replica sends the page it took
                        labels = {**PAYMENTS, "alertname": f"Restart{n}"}
                        alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {},
                                      START, None)
                        async with session.post(f"{ackd.url}/api/v1/alerts",
                                                data=json.dumps(build_webhook([alert]))) as r:
                            assert r.status == 200
                await sink.wait_for(3, within=20)  # all three held by the gateway
                cluster.halt()  # pg_ctl restart -m fast
                cluster.resume()
                await _sent_once_recorded(cluster.dsn())
                await asyncio.sleep(GRACE + 2)  # a lease given back would have gone again
                sent = await _sent_once_recorded(cluster.dsn())
                logs = [a.log() for a in ackds]
            finally:
                for ackd in ackds:
                    ackd.stop()
            paths = [r.path for r in sink.requests]
    finally:
        cluster.stop()
    assert paths == ["/ana"] * 3, (paths, [log[-3000:] for log in logs])
    assert sorted(sent.values()) == [1, 1, 1], sent
    for log in logs:  # an expected event: warnings of one line, no "unexpected" traceback
        assert "Traceback" not in log, log[-6000:]
        assert "unexpected" not in log, log[-6000:]


async def _sent_once_recorded(dsn: str) -> dict[int, int]:
    """Once the outbox is empty (every delivery's result committed): the notification_sent
    events of each incident."""
    async with asyncio.timeout(60):
        while True:
            try:
                conn = await asyncpg.connect(dsn)
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.2)
                continue
            try:
                if not await conn.fetchval("SELECT count(*) FROM outbox"):
                    rows = await conn.fetch(
                        "SELECT incident_id, count(*) FROM timeline"
                        " WHERE kind = 'notification_sent' GROUP BY incident_id")
                    return {int(r[0]): int(r[1]) for r in rows}
            finally:
                await conn.close()
            await asyncio.sleep(0.2)


async def scrape(ackd: Ackd) -> list[tuple[str, dict[str, str], float]]:
    async with aiohttp.ClientSession() as session, session.get(f"{ackd.url}/metrics") as r:
        text = await r.text()
    return [(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: list[tuple[str, dict[str, str], float]], name: str,
          **labels: str) -> float:
    return sum(v for n, ls, v in samples
               if n == name and all(ls.get(k) == want for k, want in labels.items()))


async def test_two_replicas_metrics_add_up_on_the_dashboard(
    tmp_path: Path, sink: HttpSink, pg_cluster: Cluster
) -> None:
    async with fresh_database(pg_cluster) as dsn:
        ackds = [replica(tmp_path, f"replica{n}", dsn, sink) for n in range(2)]
        try:
            await asyncio.gather(*(a.start_ready() for a in ackds))
            labels = {"alertname": "Scraped", "cluster": "eu1", "team": "payments",
                      "severity": "critical"}
            alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, START, None)
            async with aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {TOKEN}"}) as session:
                for ackd in ackds:  # Alertmanager posts the group to every replica
                    async with session.post(f"{ackd.url}/api/v1/alerts",
                                            data=json.dumps(build_webhook([alert]))) as r:
                        assert r.status == 200
            await sink.wait_for(1, within=20)

            async def recorded() -> bool:  # the delivery's result is counted once committed
                scraped = [s for a in ackds for s in await scrape(a)]
                return total(scraped, "ackd_notifications_total") > 0

            await wait_until(recorded, 10, "the page's delivery to be counted")
            scrapes = [await scrape(a) for a in ackds]
            own = [{str(replica_number(a)), str(a.port), str(a.proc.pid if a.proc else "")}
                   for a in ackds]
        finally:
            for ackd in ackds:
                ackd.stop()
    for samples, names in zip(scrapes, own, strict=True):
        for name, sample_labels, _ in samples:
            assert not PER_PROCESS & set(sample_labels), (name, sample_labels)
            assert not names & set(sample_labels.values()), (name, sample_labels)
    for samples in scrapes:  # one series each, told apart by Prometheus' instance label
        clock = {n: v for n, _, v in samples if n.startswith("ackd_clock_offset")}
        assert set(clock) == {"ackd_clock_offset_seconds",
                              "ackd_clock_offset_uncertainty_seconds"}
        assert abs(clock["ackd_clock_offset_seconds"]) <= (
            clock["ackd_clock_offset_uncertainty_seconds"] + 1e-5)
    both = [s for samples in scrapes for s in samples]
    # Counters count each act once across the replicas: sum by (team, severity) is right.
    opened = "ackd_incidents_opened_total"
    assert total(both, opened, team="payments", severity="SEV1") == 1
    assert total(both, "ackd_notifications_total", result="success") == 1
    # The open incidents are read from the shared database: each replica reports all of
    # them, so the dashboard takes the max over replicas (a sum would count them twice).
    gauge = "ackd_open_incidents"
    each = [total(s, gauge, team="payments", severity="SEV1", state="triggered")
            for s in scrapes]
    assert each == [1, 1]
    exprs = [e for e in expressions(json.loads(DASHBOARD.read_text())) if gauge in e]
    assert exprs
    assert all(e.startswith("max by (team, severity, state)") for e in exprs), exprs


def expressions(node: object) -> list[str]:
    """Every query of a Grafana dashboard (its "expr" values, however deep)."""
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []
