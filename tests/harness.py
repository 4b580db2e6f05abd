"""Real processes for end-to-end tests: ackd itself and the real Alertmanager binary.

Everything listens on 127.0.0.1 on free ports. ackd runs as `python -m receiver serve`, so a
test can SIGKILL it and start it again on the same store. Alertmanager is Debian's
prometheus-alertmanager; without it these tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "e2e-webhook-token"
API_TOKEN = "e2e-api-token"
# People's own tokens in write_config: ana responds, bo only reads, cy administers.
ANA_TOKEN = "e2e-ana-token"
BO_TOKEN = "e2e-bo-token"
CY_TOKEN = "e2e-cy-token"
# How long a process started may take to answer /-/ready. Never reached when it works: on the
# shared 2-core machine under load, `ackd --version` alone took 12 s (1.6 s of CPU), and a
# restart in the SIGKILL tests missed a budget of 20 s.
READY_WITHIN = 60.0
AM_CANDIDATES = ("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alertmanager_binary() -> str:
    """The Alertmanager binary; a missing one skips locally and fails under CI=true."""
    for candidate in AM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    message = "the Alertmanager binary is missing (apt-get install prometheus-alertmanager)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


async def wait_until(
    check: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def http_ok(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(
            url, timeout=aiohttp.ClientTimeout(total=1)
        ) as response:
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


class Process:
    """A child process with its output in a log file (shown when a test fails)."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str]):
        self.name = name
        self.argv = list(argv)
        self.log_path = log
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, cwd=ROOT,
        )
        out.close()

    def signal(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        self.proc = None
        return code

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            self.signal(signal.SIGTERM)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Ackd(Process):
    def __init__(self, workdir: Path, config: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable, "-m", "receiver", "--log-level", "DEBUG", "serve",
            "--config", str(config), "--listen", f"127.0.0.1:{self.port}",
            "--data-dir", str(workdir / "data"),
        ]
        super().__init__("ackd", argv, workdir / "ackd.log", os.environ)

    async def start_ready(self) -> None:
        self.start()
        await wait_until(lambda: http_ok(f"{self.url}/-/ready"), READY_WITHIN, "ackd to be ready")

    async def incidents(self, **query: str) -> list[dict[str, Any]]:
        body = await self.get("/api/v1/incidents", **query)
        result: list[dict[str, Any]] = body["incidents"]
        return result

    async def incident(self, number: int) -> dict[str, Any]:
        return await self.get(f"/api/v1/incidents/{number}")

    async def get(self, path: str, **query: str) -> Any:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with aiohttp.ClientSession() as session, session.get(
            self.url + path, params=query, headers=headers
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def call(self, method: str, path: str, body: Any = None, *,
                   token: str = API_TOKEN) -> Any:
        """A JSON API call that must succeed (2xx); its answer."""
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as session, session.request(
            method, self.url + path, json=body, headers=headers
        ) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(
            self.url + "/metrics"
        ) as response:
            return await response.text()


class Alertmanager(Process):
    """The real Alertmanager, configured from deploy/alertmanager.yml; clustering off unless
    `cluster_port` is given (then it gossips on 127.0.0.1 with `peers`)."""

    def __init__(self, workdir: Path, ackd_url: str, *, name: str = "am",
                 group_wait: str = "1s", group_interval: str = "1s",
                 repeat_interval: str = "2s", cluster_port: int | None = None,
                 peers: Sequence[int] = (), peer_timeout: str = "500ms"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home = workdir / name
        home.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((ROOT / "deploy/alertmanager.yml").read_text())
        timings = dict(group_wait=group_wait, group_interval=group_interval,
                       repeat_interval=repeat_interval)
        # The Watchdog's own route too: every route runs on the test's second-scale timings.
        for route in [config["route"], *config["route"].get("routes", [])]:
            route.update(timings)
        hook = config["receivers"][0]["webhook_configs"][0]
        hook["url"] = f"{ackd_url}/api/v1/alerts"
        hook["http_config"]["authorization"]["credentials"] = TOKEN
        (home / "alertmanager.yml").write_text(yaml.safe_dump(config))
        argv = [
            alertmanager_binary(), f"--config.file={home / 'alertmanager.yml'}",
            f"--storage.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}", "--log.level=debug",
        ]
        if cluster_port is None:
            argv.append("--cluster.listen-address=")
        else:
            argv += [
                f"--cluster.listen-address=127.0.0.1:{cluster_port}",
                f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
                f"--cluster.peer-timeout={peer_timeout}",
                *(f"--cluster.peer=127.0.0.1:{peer}" for peer in peers),
            ]
        super().__init__(name, argv, home / "alertmanager.log", os.environ)

    async def start_ready(self) -> None:
        self.start()
        await wait_until(lambda: http_ok(f"{self.url}/-/ready"), READY_WITHIN,
                         f"{self.name} to be ready")

    async def post_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        async with aiohttp.ClientSession() as session, session.post(
            f"{self.url}/api/v2/alerts", json=list(alerts)
        ) as response:
            assert response.status == 200, await response.text()


def am_alert(
    labels: Mapping[str, str],
    starts_at: datetime,
    *,
    resolved_at: datetime | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An alert as Prometheus posts it to Alertmanager's API (v2)."""
    alert: dict[str, Any] = {
        "labels": dict(labels),
        "annotations": dict(annotations or {"summary": labels.get("alertname", "")}),
        "startsAt": starts_at.isoformat(),
        "generatorURL": "http://prometheus.invalid/graph",
    }
    # Prometheus re-sends firing alerts with endsAt a few minutes ahead; resolution sets it now.
    alert["endsAt"] = (resolved_at or datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return alert


def write_config(
    path: Path, sink: str, *, step_delay: str = "2s", external_url: str = "", extra: str = "",
    repeat_after: str = "15m",
) -> Path:
    """An ackd config for end-to-end tests: tokens known to the tests, steps seconds apart,
    every contact a json:// URL on the test's local sink. The escalation runs out
    `repeat_after` after its last step (the lead) paged."""
    base = f"external_url: {external_url}" if external_url else ""
    path.write_text(f"""{base}
webhook: {{bearer_token: {TOKEN}}}
api: {{tokens: [{{name: e2e, token: {API_TOKEN}}}]}}
links: {{secret: e2e-link-secret, ttl: 1h}}
notifications: {{timeout: 2s, retry: {{attempts: 2, backoff: 200ms, max_backoff: 1s}},
                bundle_window: 0s}}
users:
  - {{name: ana, token: {ANA_TOKEN}, contacts: [{{url: "json://{sink}/ana"}}]}}
  - {{name: bo, token: {BO_TOKEN}, scope: read, contacts: [{{url: "json://{sink}/bo"}}]}}
  - {{name: cy, token: {CY_TOKEN}, scope: admin, contacts: [{{url: "json://{sink}/cy"}}]}}
schedules:
  - name: payments
    timezone: Europe/Amsterdam
    layers:
      - {{name: primary, rotations: [{{users: [ana], shift: 1w, start: 2020-01-06T09:00:00}}]}}
      - {{name: secondary, rotations: [{{users: [bo], shift: 1w, start: 2020-01-06T09:00:00}}]}}
teams:
  - {{name: payments, schedule: payments, lead: cy}}
  - {{name: platform, schedule: payments, lead: cy}}
policies:
  - name: standard
    steps:
      - {{after: 0s, notify: [{{oncall: primary}}]}}
      - {{delay: {step_delay}, notify: [{{oncall: secondary}}]}}
      - {{delay: {step_delay}, notify: [{{lead: true}}]}}
    repeat_after: {repeat_after}
route:
  team: platform
  policy: standard
  group_by: [alertname, cluster]
  severity_from: {{label: severity, map: {{critical: SEV1, warning: SEV3}}, default: SEV2}}
  routes:
    - matchers: ['team="payments"']
      team: payments
{extra}""")
    return path


def ackd_for(tmp_path: Path, sink_port: int, step_delay: str, repeat_after: str = "15m") -> Ackd:
    """An ackd process whose pages go to the sink and whose links point at itself."""
    port = free_port()
    config = write_config(
        tmp_path / "ackd.yaml", f"127.0.0.1:{sink_port}", step_delay=step_delay,
        external_url=f"http://127.0.0.1:{port}", repeat_after=repeat_after,
    )
    return Ackd(tmp_path, config, port)

