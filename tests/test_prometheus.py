"""The dashboard against the real thing: Debian's Prometheus scrapes a real ackd every second
while it goes through incidents, acknowledgements, escalations and failed deliveries; then every
query of every panel of deploy/grafana/dashboards/*.json (and of its variables) is evaluated
through Prometheus' HTTP API. Each must parse, name only metrics ackd exposes, and return data.

The activity comes in two rounds a few scrapes apart: a labelled series is born at its first
observation, and `rate()` sees an increase only between two samples of it."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.core.model import Alert, AlertStatus
from tests.harness import (
    API_TOKEN,
    ROOT,
    TOKEN,
    Ackd,
    Process,
    free_port,
    http_ok,
    wait_until,
    write_config,
)
from tests.sinks import HttpSink
from tests.systemtools import binary

DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
# What Grafana puts in for the variables: every team and severity, and a window that covers
# the few seconds this test runs (Prometheus extrapolates rate() to the window).
VARIABLES = {"$team": ".*", "$severity": ".*", "$window": "1m", "$__rate_interval": "1m"}
HEARTBEAT = "heartbeats: [{name: nightly-job, every: 1h, team: payments, severity: SEV3}]\n"
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "and", "or", "unless", "inf", "nan"}


class Prometheus(Process):
    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home = workdir / "prometheus"
        home.mkdir()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "deploy/prometheus/ackd-rules.yml")],
            "scrape_configs": [
                {"job_name": "ackd", "static_configs": [{"targets": [target]}]},
            ],
        }
        (home / "prometheus.yml").write_text(yaml.safe_dump(config))
        argv = [
            binary("prometheus", "prometheus"), f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        super().__init__("prometheus", argv, home / "prometheus.log", os.environ)

    async def api(self, path: str, **params: str) -> Any:
        async with aiohttp.ClientSession() as session, session.get(
            f"{self.url}/api/v1/{path}", params=params
        ) as response:
            body = await response.json()
            assert response.status == 200, (params, body)
            assert body["status"] == "success", (params, body)
            return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        result: list[dict[str, Any]] = data["result"]
        return result


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as started:
        yield started


def panel_queries() -> list[tuple[str, str]]:
    """(where, expression) for every panel target and query variable of every dashboard."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']} {target['refId']}", target["expr"]))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                found.append((f"{path.name}: ${variable['name']}", variable["definition"]))
    return found


def substituted(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable the test does not know: {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers outside label matchers, strings and
    `by (...)` lists that are not functions or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set()
    for found in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*(?=\s*(\(?))", expr):
        if found.group(1) == "(" or found.group().lower() in KEYWORDS:
            continue
        names.add(found.group())
    return names


def test_the_name_reader_finds_metrics_and_only_them() -> None:
    expr = ('histogram_quantile(0.9, sum by (le, team) (rate(ackd_x_bucket{team=~"a|b"}[5m])))'
            ' / on (team) group_left sum without (x) (up{job="by"}) or vector(1)')
    assert metric_names(expr) == {"ackd_x_bucket", "up"}


def test_every_dashboard_has_panels_with_queries() -> None:
    assert DASHBOARDS, "no dashboard in deploy/grafana/dashboards"
    assert len(panel_queries()) >= 15


async def test_every_panel_query_returns_data_from_a_real_prometheus(
    tmp_path: Path, sink: HttpSink
) -> None:
    dead = free_port()  # nothing listens: every page to ana fails
    port = free_port()
    config = write_config(tmp_path / "ackd.yaml", f"127.0.0.1:{sink.port}", step_delay="1s",
                          external_url=f"http://127.0.0.1:{port}", extra=HEARTBEAT)
    config.write_text(config.read_text().replace(
        f"json://127.0.0.1:{sink.port}/ana", f"json://127.0.0.1:{dead}/ana"))
    ackd = Ackd(tmp_path, config, port)
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{port}")
    try:
        await ackd.start_ready()
        prometheus.start()
        await wait_until(lambda: http_ok(f"{prometheus.url}/-/ready"), 30, "Prometheus ready")
        await wait_until(lambda: _has(prometheus, 'up{job="ackd"} == 1'), 20, "a first scrape")
        for round_ in (1, 2):
            await _round(ackd, round_)
            await _scraped(prometheus, ackd)
        exposed = _exposed(await ackd.metrics())
        empty = []
        for where, expr in panel_queries():
            expr = substituted(expr)
            if expr.startswith("label_values("):
                metric, label = _inner(expr).split(",")
                assert metric_names(metric) <= exposed, f"{where}: {metric} is not ackd's"
                values = await prometheus.api(f"label/{label.strip()}/values",
                                              **{"match[]": metric.strip()})
                if not values:
                    empty.append(where)
                continue
            unknown = metric_names(expr) - exposed
            assert not unknown, f"{where} reads metrics ackd does not expose: {unknown}"
            result = await prometheus.query(expr)
            if not any(not math.isnan(float(r["value"][1])) for r in result):
                empty.append(f"{where}: {expr} -> {result}")
        assert not empty, "queries without data:\n" + "\n".join(empty)
        rules = await prometheus.api("rules")
        loaded = [r for group in rules["groups"] for r in group["rules"]]
        assert {r["health"] for r in loaded} == {"ok"}, loaded
        assert len(loaded) == 11
        # Pages that fail and are retried leave no notification due for long.
        assert {r["name"]: r["state"] for r in loaded}["AckdNotificationsStuck"] == "inactive"
        # One ackd runs one file: the replicas' consistency rule reads its hash and holds.
        assert await prometheus.query(
            'count(count_values("config_hash", ackd_config_hash{job="ackd"}))')
        assert {r["name"]: r["state"] for r in loaded}["AckdConfigInconsistent"] == "inactive"
    finally:
        prometheus.stop()
        ackd.stop()


def _inner(expr: str) -> str:
    return expr[len("label_values("):-1] if expr.startswith("label_values(") else expr


def _exposed(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


async def _has(prometheus: Prometheus, expr: str) -> bool:
    try:
        return bool(await prometheus.query(expr))
    except (aiohttp.ClientError, AssertionError):
        return False


async def _scraped(prometheus: Prometheus, ackd: Ackd) -> None:
    """Wait until Prometheus holds what ackd's /metrics says now about resolutions."""
    text = await ackd.metrics()
    count = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "ackd_time_to_resolve_seconds_count")
    await wait_until(
        lambda: _has(prometheus, f"sum(ackd_time_to_resolve_seconds_count) >= {count}"), 20,
        "Prometheus to scrape the round",
    )
    await asyncio.sleep(1.5)  # one more sample after it, for rate()'s pairs


async def _round(ackd: Ackd, n: int) -> None:
    """An incident acknowledged and resolved by a person, and one nobody acknowledges that
    escalates past its first steps until Alertmanager resolves it. Pages to ana fail."""
    acked = {"alertname": f"PaymentsDown{n}", "team": "payments", "severity": "critical"}
    ignored = {"alertname": f"DiskFull{n}", "severity": "warning"}
    started = datetime.now(UTC) - timedelta(seconds=5)
    first = (await _webhook(ackd, [_alert(acked, started)]))["opened"][0]
    second = (await _webhook(ackd, [_alert(ignored, started)]))["opened"][0]
    await _post(ackd, "/api/v1/alerts", b"{", TOKEN, expect=400)
    await _post(ackd, f"/api/v1/incidents/{first}/ack", None, API_TOKEN)
    await _post(ackd, "/api/v1/heartbeats/nightly-job", None, API_TOKEN)
    await _post(ackd, "/-/reload", None, API_TOKEN)

    async def escalated() -> bool:
        timeline = (await ackd.incident(second))["timeline"]
        return sum(e["kind"] == "step_fired" for e in timeline) >= 3  # the lead's: a deadline

    await wait_until(escalated, 15, f"incident {second} to escalate")
    await _post(ackd, f"/api/v1/incidents/{first}/resolve", None, API_TOKEN)
    await _webhook(ackd, [_alert(ignored, started, resolved=True)])


def _alert(labels: dict[str, str], starts: datetime, *, resolved: bool = False) -> Alert:
    if resolved:
        return Alert(fingerprint_of(labels), AlertStatus.RESOLVED, labels, {}, starts,
                     datetime.now(UTC))
    return Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, starts, None)


async def _webhook(ackd: Ackd, alerts: list[Alert]) -> Any:
    return await _post(ackd, "/api/v1/alerts", json.dumps(build_webhook(alerts)).encode(), TOKEN)


async def _post(ackd: Ackd, path: str, body: bytes | None, token: str, expect: int = 200) -> Any:
    async with aiohttp.ClientSession() as session, session.post(
        ackd.url + path, data=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == expect, await response.text()
        return await response.json()
