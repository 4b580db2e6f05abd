"""What one webhook may ask of the loop: limits answered with a 400 naming them, large bodies
parsed beside the loop, and many groups written in slices that other webhooks come between.

The figures (an ordinary webhook's p99 while one client sends each kind of abusive body) are
bench/abuse.py's, not a timed test's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.errors import PayloadError
from receiver.core.limits import WebhookLimits
from receiver.core.model import Alert, AlertStatus
from receiver.incidents.service import ON_LOOP_BYTES, SLICE_ALERTS, SLICE_GROUPS, _slices
from receiver.ingest.grouping import RoutedGroup
from receiver.notify.messages import LABELS_SHOWN, describe
from receiver.routing.tree import Match
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import ROOT, TOKEN, write_config
from tests.test_api import Api


def firing(*label_sets: dict[str, str]) -> dict[str, Any]:
    clock = FakeClock()
    return build_webhook([Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {},
                                clock.now(), None) for labels in label_sets])


async def start(directory: Path, limits: WebhookLimits) -> Api:
    path = write_config(directory / "ackd.yaml", "127.0.0.1:9", step_delay="1h")
    loaded = replace(config_module.load(path), listen_port=0, data_dir=directory / "data",
                     limits=limits)
    clock, notifier = FakeClock(), RecordingNotifier()
    daemon = Daemon(loaded, clock=clock, notifier=notifier)
    await daemon.start()
    return Api(daemon, notifier, clock)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start(tmp_path, WebhookLimits(max_alerts=50, max_labels=120, max_groups=40))
    yield started
    await started.daemon.stop()


async def post(api: Api, document: dict[str, Any] | bytes) -> tuple[int, Any]:
    if isinstance(document, bytes):
        return await api.call("POST", "/api/v1/alerts", token=TOKEN, raw=document)
    return await api.call("POST", "/api/v1/alerts", document, token=TOKEN)


async def incidents(api: Api) -> list[Any]:
    found: list[Any] = (await api.call("GET", "/api/v1/incidents?limit=1000"))[1]["incidents"]
    return found


# -- the limits ------------------------------------------------------------------------------

REFUSED = [
    ("41 groups", firing(*[{"alertname": f"G{n}"} for n in range(41)]), "alerts",
     "webhook.max_groups (40)"),
    ("51 alerts", firing(*[{"alertname": "A", "n": str(n)} for n in range(51)]), "alerts",
     "webhook.max_alerts (50)"),
    ("121 labels in one alert", firing({f"l{n}": "v" for n in range(121)}),
     "alerts[0].labels", "webhook.max_labels (120)"),
    ("121 labels over three alerts",
     firing(*[{"alertname": "L", "n": str(n)} | {f"l{i}": "v" for i in range(38)}
              for n in range(3)] + [{"alertname": "L", "n": "3", "x": "1"}]),
     "alerts[3].labels", "webhook.max_labels (120)"),
]


@pytest.mark.parametrize(("document", "field", "named"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
async def test_a_webhook_past_a_limit_gets_a_400_naming_it(
    api: Api, document: dict[str, Any], field: str, named: str
) -> None:
    status, body = await post(api, document)
    assert (status, body["field"]) == (400, field), body
    assert named in body["error"]
    assert await incidents(api) == []  # nothing of it was written


async def test_a_webhook_at_every_limit_is_taken_whole(api: Api) -> None:
    # 40 groups, 50 alerts, 120 labels: each limit reached, none passed.
    label_sets = [{"alertname": f"G{n % 40}", "n": str(n)} for n in range(50)]
    label_sets[0] |= {f"l{i}": "v" for i in range(20)}
    status, body = await post(api, firing(*label_sets))
    assert status == 200, body
    assert len(body["opened"]) == 40
    assert len(await incidents(api)) == 40


def test_the_limits_are_configured_under_webhook(tmp_path: Path) -> None:
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9")
    text = path.read_text().replace(
        "webhook: {bearer_token: ", "webhook: {max_alerts: 7, max_labels: 70, max_groups: 3, "
        "bearer_token: ")
    path.write_text(text)
    assert config_module.load(path).limits == WebhookLimits(7, 70, 3)
    example = config_module.load(ROOT / "config.example.yaml")
    assert example.limits == WebhookLimits()


@pytest.mark.parametrize("key", ["max_alerts", "max_labels", "max_groups"])
def test_a_limit_must_be_positive(tmp_path: Path, key: str) -> None:
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9")
    path.write_text(path.read_text().replace("webhook: {", f"webhook: {{{key}: 0, "))
    with pytest.raises(config_module.ConfigError, match=f"webhook.{key}"):
        config_module.load(path)


def test_limits_name_the_first_alert_past_the_labels() -> None:
    limits = WebhookLimits(max_alerts=3, max_labels=10, max_groups=2)
    limits.check_alerts(3, [4, 3, 3])
    with pytest.raises(PayloadError) as refused:
        limits.check_alerts(3, [4, 3, 4])
    assert refused.value.field == "alerts[2].labels"
    with pytest.raises(PayloadError) as refused:
        limits.check_alerts(4, [])
    assert refused.value.field == "alerts"
    limits.check_groups({"a": 1, "b": 2})
    with pytest.raises(PayloadError, match="3 incident groups"):
        limits.check_groups({"a": 1, "b": 2, "c": 3})


# -- large bodies and many groups --------------------------------------------------------------


def big(document: dict[str, Any]) -> bytes:
    """`document` padded past ON_LOOP_BYTES with a key ackd does not read."""
    body = json.dumps(document | {"padding": "x" * ON_LOOP_BYTES}).encode()
    assert len(body) > ON_LOOP_BYTES
    return body


async def test_a_large_body_is_read_beside_the_loop_and_refused_by_name(api: Api) -> None:
    status, body = await post(api, big(firing({"alertname": "Big", "cluster": "eu1"})))
    assert status == 200, body
    broken = big(firing({"alertname": "Big"}))
    status, body = await post(api, broken.replace(b'"firing", "labels"', b'"on", "labels"', 1))
    assert (status, body["field"]) == (400, "alerts[0].status")
    status, body = await post(api, big(firing(*[{"alertname": f"G{n}"} for n in range(41)])))
    assert (status, body["field"]) == (400, "alerts")


async def test_many_groups_are_written_in_slices_that_other_webhooks_come_between(
    api: Api,
) -> None:
    store = api.daemon.store
    many = firing(*[{"alertname": f"Slice{n}", "cluster": "eu1"} for n in range(40)])
    before = store.stats.commits
    both = await asyncio.gather(post(api, many), post(api, firing({"alertname": "Other"})))
    (status, body), (other, _) = both
    assert (status, other) == (200, 200)
    assert len(body["opened"]) == 40
    # 40 groups in slices of 16: three transactions of their own, at least, and the other
    # webhook's in one of them or between.
    assert store.stats.commits - before >= 3
    assert len(await incidents(api)) == 41
    # A resend changes nothing, in any slice.
    status, again = await post(api, many)
    assert (status, again["opened"], again["outcomes"]) == (200, [], {"duplicate": 40})


def test_slices_hold_at_most_so_many_groups_and_alerts() -> None:
    match = Match.__new__(Match)

    def group(alerts: int) -> RoutedGroup:
        return RoutedGroup(match, [Alert("f", AlertStatus.FIRING, {}, {}, FakeClock().now(),
                                         None)] * alerts)

    groups = {f"g{n}": group(1) for n in range(SLICE_GROUPS * 2 + 1)}
    assert [len(part) for part in _slices(groups)] == [SLICE_GROUPS, SLICE_GROUPS, 1]
    heavy = {"a": group(SLICE_ALERTS - 1), "b": group(2), "c": group(SLICE_ALERTS + 5),
             "d": group(1)}
    assert [[key for key, _ in part] for part in _slices(heavy)] == [["a"], ["b"], ["c"], ["d"]]
    assert _slices({}) == [[]]


def test_a_page_shows_at_most_so_many_labels_of_an_alert() -> None:
    labels = {"alertname": "Wide"} | {f"l{n:05d}": "v" for n in range(10_000)}
    alert = Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, FakeClock().now(),
                  None)
    text = describe(alert)
    assert text.startswith("Wide (l00000=v, l00001=v, ")
    assert text.count("=v") == LABELS_SHOWN
    assert text.endswith(f"and {10_000 - LABELS_SHOWN} more labels)")
