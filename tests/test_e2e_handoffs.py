"""End to end with second-scale shifts: at each handoff the incoming person's contact (a
real Apprise delivery to the local sink) gets the notice, with the open incident the real
Alertmanager opened; a restart between handoffs sends none twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.harness import Alertmanager, ackd_for, am_alert, wait_until
from tests.sinks import HttpSink, SinkRequest

SHIFT = 4  # seconds
PAYMENTS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
            "severity": "critical"}


@pytest.mark.alertmanager
async def test_the_incoming_person_gets_the_notice_at_the_handoff(
    tmp_path: Path, sink: HttpSink
) -> None:
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    config = tmp_path / "ackd.yaml"
    # Handoffs every SHIFT seconds from a start a minute ago (Amsterdam's wall clock).
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    local = start.astimezone(ZoneInfo("Europe/Amsterdam")).replace(tzinfo=None)
    text = config.read_text()
    weekly = next(line for line in text.splitlines() if "{name: primary," in line)
    rotation = f"{{users: [ana, bo], shift: {SHIFT}s, start: {local.isoformat()}}}"
    config.write_text(text.replace(
        weekly, f"      - {{name: primary, rotations: [{rotation}]}}").replace(
        "    timezone: Europe/Amsterdam\n",
        "    timezone: Europe/Amsterdam\n    handoff_notices: true\n", 1))
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        await am.start_ready()
        await am.post_alerts([am_alert(PAYMENTS, start)])
        await wait_until(lambda: _paged(sink), 15, "the page")
        paged = next(r.received_at for r in sink.requests if not _notice(r))
        await wait_until(lambda: _notices_after(sink, paged, 1), SHIFT + 5, "a notice")
        ackd.stop()  # between handoffs: what went out is not sent again
        await ackd.start_ready()
        await wait_until(lambda: _notices_after(sink, paged, 3), 2 * SHIFT + 5, "two more")
    finally:
        am.stop()
        ackd.stop()

    got = [(r.received_at, r) for r in sink.requests if _notice(r) and r.received_at > paged]
    assert len(got) >= 3
    for arrived, request in got:
        # At the handoff (a multiple of SHIFT seconds from the start), within 1.5 s.
        late = (arrived - start.timestamp()) % SHIFT
        assert late < 1.5, (late, request.json)
        index = int((arrived - start.timestamp()) // SHIFT)
        assert request.path == ("/ana", "/bo")[index % 2]
        assert request.json["message"].startswith("You are on call now for payments primary")
        assert "#1 [SEV1] triggered: " in request.json["message"]
    handoffs = [int((arrived - start.timestamp()) // SHIFT) for arrived, _ in got]
    assert len(handoffs) == len(set(handoffs)), handoffs  # none twice


def _notice(request: SinkRequest) -> bool:
    return str((request.json or {}).get("title", "")).startswith("On call now")


async def _paged(sink: HttpSink) -> bool:
    return any(not _notice(r) for r in sink.requests)


async def _notices_after(sink: HttpSink, after: float, count: int) -> bool:
    return sum(1 for r in sink.requests if _notice(r) and r.received_at > after) >= count
