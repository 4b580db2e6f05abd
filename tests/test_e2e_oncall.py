"""End to end: a swap made with `ackd override` through the API of a real ackd, kept across
a restart and a SIGHUP reload, shown by `ackd oncall`, and used by escalation: the real
Alertmanager's webhook pages the swapped-in person through real Apprise."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.harness import ANA_TOKEN, API_TOKEN, ROOT, Ackd, Alertmanager, ackd_for, am_alert
from tests.sinks import HttpSink

PAYMENTS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
            "severity": "critical"}


async def cli(ackd: Ackd, *argv: str) -> tuple[int, str, str]:
    env = {**os.environ, "ACKD_URL": ackd.url, "ACKD_API_TOKEN": API_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", *argv, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.alertmanager
async def test_a_swapped_in_person_gets_the_page(tmp_path: Path, sink: HttpSink) -> None:
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    config = str(tmp_path / "ackd.yaml")
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        later = now + timedelta(days=1)
        # ana is primary, bo secondary: ana's next two hours for bo's two hours tomorrow.
        code, out, err = await cli(
            ackd, "override", "swap", "payments",
            "ana", (now - timedelta(minutes=1)).isoformat(), (now + timedelta(hours=2)).isoformat(),
            "bo", later.isoformat(), (later + timedelta(hours=2)).isoformat(),
        )
        assert code == 0, err
        first, second = out.splitlines()
        assert first.startswith("#1 bo on call")
        assert "in place of ana (swap with #2)" in first
        assert second.startswith("#2 ana on call")
        assert "in place of bo (swap with #1)" in second

        # Kept across a restart and a reload (of another file: the same one is not swapped in).
        ackd.stop()
        await ackd.start_ready()
        assert ackd.proc is not None
        _touch(config)
        ackd.proc.send_signal(signal.SIGHUP)
        code, out, err = await cli(ackd, "override", "list", "payments")
        assert (code, len(out.splitlines())) == (0, 2), err
        code, out, err = await cli(ackd, "oncall", "payments", "--config", config)
        assert code == 0, err
        primary = next(line for line in out.splitlines() if "primary" in line)
        assert primary.split()[:2] == ["primary", "bo"]
        assert "(run-time override #1 by e2e)" in primary

        await am.start_ready()
        await am.post_alerts([am_alert(PAYMENTS, now - timedelta(minutes=1))])
        [page] = await sink.wait_for(1, within=15)
        assert page.path == "/bo"
        assert "[SEV1]" in page.json["title"]
        assert "reload" in ackd.log()  # the SIGHUP was taken before the page

        # Deleted (a swap leg deletes the swap): the page's plan goes back to the config's.
        code, out, err = await cli(ackd, "override", "delete", "payments", "2")
        assert (code, out.strip()) == (0, "deleted #1, #2"), err
        code, out, err = await cli(ackd, "oncall", "payments", "--config", config)
        assert next(line for line in out.splitlines() if "primary" in line).split()[:2] == [
            "primary", "ana"]
        assert [r.path for r in sink.requests] == ["/bo"]
    finally:
        am.stop()
        ackd.stop()


@pytest.mark.alertmanager
async def test_override_cli_errors_name_the_field_and_the_schedule(
    tmp_path: Path, sink: HttpSink
) -> None:
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    await ackd.start_ready()
    try:
        code, _, err = await cli(ackd, "override", "add", "payments", "cy",
                                 "--from", "2026-01-05T10:00", "--to", "2026-01-05T09:00")
        assert code == 1
        assert err.strip() == (
            "override add: HTTP 400: end: must be after start (2026-01-05T09:00:00+00:00)")
        code, _, err = await cli(ackd, "override", "add", "payments", "cy", "--replaces", "bo",
                                 "--from", "2099-01-05T10:00", "--to", "2099-01-05T11:00",
                                 "--token", ANA_TOKEN)
        assert code == 1
        assert err.startswith("override add: HTTP 403: admin: changing this needs scope 'admin'")
        code, _, err = await cli(ackd, "override", "list", "nope")
        assert (code, err.strip()) == (
            1, "override list: HTTP 404: schedule: unknown schedule 'nope'; schedules: payments")
    finally:
        ackd.stop()


def _touch(path: str) -> None:
    """Another file to reload, alike but for a comment."""
    with open(path, "a") as out:
        out.write("# reloaded\n")
