"""Memory under webhooks that route to many groups: RSS stays within the memo budget.

One client with the webhook token posts 8,000 bodies of 1,000 alerts, each alert its own group,
the `receiver` varied so that no two bodies are the same bytes (Alertmanager builds such
bodies when ackd's group_by splits its groups). Before the memos were bounded by bytes, each
body was remembered with one entry per group (about 210 KiB), and RSS grew by 1.6 GB. The
figure: RSS after the first body's incidents are in (the baseline) and after the sequence,
against webhook.memo_bytes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import procs

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.core.model import Alert, AlertStatus

BODIES = 8_000
GROUPS = 1_000
CONNECTIONS = 4
MEMO_BYTES = 64 * 1024 * 1024  # the default of webhook.memo_bytes


def many_groups(groups: int) -> Callable[[int], bytes]:
    """Bodies of `groups` alerts, one group each; the n-th body's receiver is its own."""
    starts = datetime.now(UTC) - timedelta(minutes=5)
    alerts = []
    for n in range(groups):
        labels = {"alertname": f"Split{n}", "cluster": "eu1", "instance": f"node-{n}:9100"}
        alerts.append(Alert(fingerprint_of(labels), AlertStatus.FIRING, labels,
                            {"summary": f"split group {n}"}, starts, None))
    payload = build_webhook(alerts, external_url="http://alertmanager.bench:9093")

    def body(n: int) -> bytes:
        return json.dumps({**payload, "receiver": f"ackd-{n}"}).encode()

    return body


async def sequence(
    ackd: procs.Child, token: str, bodies: int = BODIES
) -> tuple[str, str, str, bool]:
    """Post the sequence; the report's row (measure, value, target, passed)."""
    body = many_groups(GROUPS)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"{ackd.url}/api/v1/alerts"
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await _post(session, url, body(0), headers)
        await asyncio.sleep(2.0)  # the first body's pages go out; then the baseline
        baseline = ackd.rss_kib()
        peak = baseline
        queue = iter(range(1, bodies))

        async def worker() -> None:
            nonlocal peak
            for n in queue:
                await _post(session, url, body(n), headers)
                if n % 500 == 0:
                    peak = max(peak, ackd.rss_kib())

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        after = ackd.rss_kib()
        async with session.get(f"{ackd.url}/metrics") as response:
            metrics = await response.text()
    memo = {m[1]: float(m[2]) for m in re.finditer(
        r'^ackd_memo_bytes\{memo="(\w+)"\} (\S+)$', metrics, re.MULTILINE)}
    growth = max(after, peak) - baseline
    return (
        f"memory: {bodies:,} bodies of {GROUPS:,} groups, receiver varied",
        f"RSS {baseline / 1024:,.0f} MiB after the first body, {after / 1024:,.0f} MiB after"
        f" the sequence (peak {peak / 1024:,.0f} MiB): +{growth / 1024:,.0f} MiB; memos"
        f" {', '.join(f'{k} {v / 2**20:,.1f} MiB' for k, v in sorted(memo.items()))}",
        f"growth < memo_bytes ({MEMO_BYTES // 2**20} MiB)",
        growth * 1024 < MEMO_BYTES,
    )


async def _post(session: aiohttp.ClientSession, url: str, body: bytes,
                headers: dict[str, str]) -> None:
    async with session.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"webhook answered {response.status}: {await response.text()}")
