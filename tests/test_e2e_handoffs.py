"""End to end with second-scale shifts: at each handoff the incoming person's contact (a
real Apprise delivery to the local sink) gets the notice, with the open incident the real
Alertmanager opened; a restart between handoffs sends none twice.

How soon after its handoff a notice goes out is read from ackd's own record (the store's
`sent_at`, the clock reading of the timer's pass that took it), not from when the sink, in
this test's process, saw the delivery: on a loaded machine the delivery's threads, HTTP and
this process's loop took more than the bound by themselves."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from receiver.config import build as config_module
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
        await wait_until(lambda: _paged(sink), 30, "the page")
        paged = next(r.received_at for r in sink.requests if not _notice(r))
        await wait_until(lambda: _notices_after(sink, paged, 1), SHIFT + 5, "a notice")
        down = time.time()
        ackd.stop()  # what went out is not sent again
        await ackd.start_ready()
        up = time.time()
        await wait_until(lambda: _notices_after(sink, paged, 3), 2 * SHIFT + 5, "two more")
    finally:
        am.stop()
        ackd.stop()

    # What ackd sent, by its record: one row per handoff (none twice), each on the SHIFT grid,
    # taken within 1.5 s of its moment, for the person whose shift begins then. A handoff
    # that came while ackd was down (a restart slower than SHIFT, on a loaded machine) is
    # taken as it starts again: within 1.5 s of its being ready.
    sent = _sent_notices(tmp_path / "data" / config_module.load(config).db_file)
    begun = int(start.timestamp()) * US
    for at, user, sent_at in sent:
        index, offset = divmod(at - begun, SHIFT * US)
        assert offset == 0, (at, begun)
        due = int(up * US) if down * US <= at <= up * US else at
        assert at <= sent_at < due + 1.5 * US, ((sent_at - at) / US, user)
        assert user == ("ana", "bo")[index % 2]
    # The sink got exactly those, in order, each after its handoff; those after the page
    # list the open incident.
    notices = sorted((r for r in sink.requests if _notice(r)), key=lambda r: r.received_at)
    assert [r.path for r in notices] == [f"/{user}" for _, user, _ in sent]
    for request, (at, _, _) in zip(notices, sent, strict=True):
        assert request.received_at >= at / US
    got = [r for r in notices if r.received_at > paged]
    assert len(got) >= 3
    for request in got:
        assert request.json["message"].startswith("You are on call now for payments primary")
        assert "#1 [SEV1] triggered: " in request.json["message"]


US = 1_000_000  # the store's times are microseconds since the epoch


def _sent_notices(db: Path) -> list[tuple[int, str, int]]:
    """(handoff, person, taken) of each primary notice ackd marked sent, by handoff."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT at, user, sent_at FROM handoff_notices WHERE sent_at IS NOT NULL"
            " AND schedule = 'payments' AND layer = 'primary' ORDER BY at").fetchall()
    return [(at, user, sent_at) for at, user, sent_at in rows]


def _notice(request: SinkRequest) -> bool:
    return str((request.json or {}).get("title", "")) == "On call now: payments primary"


async def _paged(sink: HttpSink) -> bool:
    return any(not str((r.json or {}).get("title", "")).startswith("On call now")
               for r in sink.requests)


async def _notices_after(sink: HttpSink, after: float, count: int) -> bool:
    return sum(1 for r in sink.requests if _notice(r) and r.received_at > after) >= count
