"""A normal webhook's latency while one client sends abusive requests, one kind at a time.

For each kind, one connection posts abusive bodies back to back (each different, so no memo
answers it) for a few seconds, while another posts an ordinary webhook (two alerts opening a
new incident) every 10 ms. The figure is the ordinary webhook's p99 while the abuse goes on,
against the 50 ms target, beside what the abusive requests were answered and how long each
took. Kinds: a webhook opening 10,919 groups, one alert with 31,000 labels, 8,000 alerts in
one group, nesting 100,000 deep under a key ackd does not read, 5,000-digit integers, and
the largest bodies the default limits accept (500 alerts of 20 labels in one group; 500
groups, each a new incident that pages). A first row measures the ordinary webhook with no
abuse, the floor a busy machine sets: the machine is shared, and its noise is in every row.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import procs
from load import percentile

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.core.limits import DEFAULT_MAX_ALERTS, DEFAULT_MAX_GROUPS, DEFAULT_MAX_LABELS
from receiver.core.model import Alert, AlertStatus

MAX_P99 = 0.050
SECONDS = 6.0
PAUSE = 0.010
STARTS = datetime.now(UTC) - timedelta(minutes=5)


MARK = b"@@@@@@"  # where each body gets its number: every body is new bytes and new groups


def _alert(labels: dict[str, str]) -> Alert:
    return Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, STARTS, None)


def _lean(labels: list[dict[str, str]], **envelope: object) -> bytes:
    """A webhook of the fewest bytes per alert: no fingerprint (ackd computes it), no
    annotations, no end, the way an abusive client would pack its 1 MiB."""
    starts = STARTS.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    alerts = [{"status": "firing", "labels": each, "startsAt": starts} for each in labels]
    return json.dumps({"version": "4", "alerts": alerts, **envelope},
                      separators=(",", ":")).encode()


def many_groups() -> bytes:
    """10,919 alerts, each its own group: what fits in 1 MiB (issue 13 measured 2.9 s)."""
    return _lean([{"alertname": f"@@@@@@{i}"} for i in range(10_919)])


def many_labels() -> bytes:
    """One alert with 31,000 labels (issue 13 measured 125 ms of loop time each)."""
    return _lean([{f"label_name_{i}": f"value-{i}" for i in range(31_000)}
                  | {"alertname": "@@@@@@"}])


def many_alerts() -> bytes:
    """8,000 alerts in one group."""
    return _lean([{"alertname": "@@@@@@", "i": str(i)} for i in range(8_000)])


def deep() -> bytes:
    body = _lean([{"alertname": "@@@@@@"}], future="#")
    return body.replace(b'"#"', b"[" * 100_000 + b"]" * 100_000)


def huge_integers() -> bytes:
    body = _lean([{"alertname": "@@@@@@"}], future="#")
    return body.replace(b'"#"', b"[" + b",".join([b"9" * 5000] * 150) + b"]")


def at_the_limits_one_group() -> bytes:
    """The most the default limits let into one group: 500 alerts of 20 labels."""
    alerts = DEFAULT_MAX_ALERTS
    per_alert = DEFAULT_MAX_LABELS // alerts
    return _lean([{"alertname": "@@@@@@", "i": str(i)}
                  | {f"l{n}": "v" for n in range(per_alert - 2)} for i in range(alerts)])


def at_the_limits_groups() -> bytes:
    """The most groups the default limits let in: 500, each a new incident that pages."""
    return _lean([{"alertname": f"@@@@@@{i}"} for i in range(DEFAULT_MAX_GROUPS)])


def nothing() -> bytes:
    """No abuse at all: what the machine gives an ordinary webhook while it is busy."""
    return b""


KINDS: dict[str, Callable[[], bytes]] = {
    "no abusive request (the floor)": nothing,
    "a webhook opening 10,919 groups": many_groups,
    "one alert with 31,000 labels": many_labels,
    "8,000 alerts in one group": many_alerts,
    "nesting 100,000 deep under an unknown key": deep,
    "150 integers of 5,000 digits": huge_integers,
    "500 alerts of 20 labels in one group (at the limits)": at_the_limits_one_group,
    "500 new groups (at the limit)": at_the_limits_groups,
}


@dataclass
class Run:
    normal: list[float] = field(default_factory=list)  # latencies while the abuse went on
    normal_statuses: Counter[int] = field(default_factory=Counter)
    abusive: list[float] = field(default_factory=list)
    abusive_statuses: Counter[int] = field(default_factory=Counter)


async def measure(ackd: procs.Child, token: str, kind: str, seconds: float = SECONDS) -> Run:
    template = KINDS[kind]()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"{ackd.url}/api/v1/alerts"
    run = Run()
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as abuser, aiohttp.ClientSession(
        timeout=timeout
    ) as normal:

        async def abuse() -> None:
            n = 0
            while template and not stop.is_set():
                began = time.perf_counter()  # the replace is part of it: a millisecond
                body = template.replace(MARK, b"%06d" % n)
                status = await _post(abuser, url, body, headers)
                run.abusive.append(time.perf_counter() - began)
                run.abusive_statuses[status] += 1
                n += 1

        async def ordinary() -> None:
            n = 0
            while not stop.is_set():
                alerts = [_alert({"alertname": f"Normal{kind[:8]}{n}", "cluster": "c",
                                  "instance": f"i{i}"}) for i in range(2)]
                body = json.dumps(build_webhook(alerts)).encode()
                began = time.perf_counter()
                status = await _post(normal, url, body, headers)
                run.normal.append(time.perf_counter() - began)
                run.normal_statuses[status] += 1
                n += 1
                await asyncio.sleep(PAUSE)

        tasks = [asyncio.create_task(abuse()), asyncio.create_task(ordinary())]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
    return run


async def _post(session: aiohttp.ClientSession, url: str, body: bytes,
                headers: dict[str, str]) -> int:
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


def rows(kind: str, run: Run) -> list[tuple[str, str, str, bool | None]]:
    p99 = percentile(run.normal, 99)
    statuses = ", ".join(f"{code}: {count}" for code, count in sorted(run.abusive_statuses.items()))
    if not run.abusive:
        return [(f"ordinary webhook p50 / p99 with {kind} ({len(run.normal)} requests)",
                 f"{percentile(run.normal, 50) * 1e3:.1f} ms / {p99 * 1e3:.1f} ms", "", None)]
    return [
        (f"ordinary webhook p50 / p99 during {kind} ({len(run.normal)} requests)",
         f"{percentile(run.normal, 50) * 1e3:.1f} ms / {p99 * 1e3:.1f} ms",
         f"p99 < {MAX_P99 * 1e3:.0f} ms", p99 < MAX_P99 and set(run.normal_statuses) == {200}),
        (f"  {kind}: answers, p50 / max time each",
         f"{statuses}; {percentile(run.abusive, 50) * 1e3:.0f} ms / "
         f"{max(run.abusive, default=0) * 1e3:.0f} ms", "", None),
    ]
