"""The webhook v4 format: what Alertmanager really sends parses; every broken field is named."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from receiver.alertmanager.webhook import (
    build_webhook,
    fingerprint_of,
    parse_webhook,
    silence_url,
)
from receiver.core.errors import PayloadError
from receiver.core.model import AlertStatus

# As Alertmanager 0.25+ sends it, with keys newer versions add.
REAL = {
    "receiver": "ackd",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "PaymentApiDown", "team": "payments", "severity": "critical"},
            "annotations": {"summary": "Payment API down", "runbook_url": "https://r/x"},
            "startsAt": "2026-03-01T12:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
            "fingerprint": "c0ffee0123456789",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "PaymentApiDown", "team": "payments", "instance": "b"},
            "annotations": {},
            "startsAt": "2026-03-01T11:00:00+01:00",
            "endsAt": "2026-03-01T12:05:00Z",
            "generatorURL": "",
            "fingerprint": "0123456789abcdef",
        },
    ],
    "groupLabels": {"alertname": "PaymentApiDown"},
    "commonLabels": {"alertname": "PaymentApiDown"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": '{}:{alertname="PaymentApiDown"}',
    "truncatedAlerts": 2,
    "notification_reason": "new alerts",
    "routeLabels": {"x": "y"},
}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_real_payload() -> None:
    message = parse_webhook(body(REAL))
    firing, resolved = message.alerts
    assert firing.status is AlertStatus.FIRING
    assert firing.starts_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert firing.ends_at is None  # the zero time
    assert firing.fingerprint == "c0ffee0123456789"
    assert firing.annotations["runbook_url"] == "https://r/x"
    assert resolved.starts_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)  # offset normalised
    assert resolved.ends_at == datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    assert message.truncated_alerts == 2
    assert message.external_url == "http://alertmanager:9093"
    assert message.group_labels == {"alertname": "PaymentApiDown"}


def with_alert(**changes: Any) -> dict[str, Any]:
    alert = {**REAL["alerts"][0], **changes}  # type: ignore[dict-item]
    return {**REAL, "alerts": [alert]}


BAD = [
    ("not json", b"{nope", "body"),
    ("not utf-8", b'{"alerts": ["\xff"]}', "body"),
    ("not an object", body([1, 2]), "body"),
    ("no alerts", body({"version": "4"}), "alerts"),
    ("alerts not a list", body({"alerts": {}}), "alerts"),
    ("other version", body({**REAL, "version": "3"}), "version"),
    ("negative truncated", body({**REAL, "truncatedAlerts": -1}), "truncatedAlerts"),
    ("alert not an object", body({"alerts": ["x"]}), "alerts[0]"),
    ("bad status", body(with_alert(status="pending")), "alerts[0].status"),
    ("labels missing", body(with_alert(labels=None)), "alerts[0].labels"),
    ("labels empty", body(with_alert(labels={})), "alerts[0].labels"),
    ("label not a string", body(with_alert(labels={"a": 1})), "alerts[0].labels.a"),
    ("annotation not a string", body(with_alert(annotations={"s": []})), "alerts[0].annotations.s"),
    ("startsAt missing", body(with_alert(startsAt=None)), "alerts[0].startsAt"),
    ("startsAt garbage", body(with_alert(startsAt="yesterday")), "alerts[0].startsAt"),
    ("startsAt no zone", body(with_alert(startsAt="2026-03-01T12:00:00")), "alerts[0].startsAt"),
    ("endsAt a number", body(with_alert(endsAt=5)), "alerts[0].endsAt"),
    ("generatorURL a number", body(with_alert(generatorURL=5)), "alerts[0].generatorURL"),
    ("fingerprint a number", body(with_alert(fingerprint=5)), "alerts[0].fingerprint"),
    ("deep nesting", b'{"alerts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "body"),
]


@pytest.mark.parametrize(("raw", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_payloads_name_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_webhook(raw)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("version", "says"),
    [
        (4, "must be a string, '4' (Alertmanager) or '1' (Grafana), not the number 4"),
        (None, "must be a string, '4' (Alertmanager) or '1' (Grafana), not null"),
        ({"v": 4}, "must be a string, '4' (Alertmanager) or '1' (Grafana), not an object"),
        ("3", "unsupported webhook version '3': expected '4' (Alertmanager) or '1' (Grafana)"),
    ],
)
def test_a_version_that_is_not_a_string_says_so(version: Any, says: str) -> None:
    # A curl by hand with "version": 4 was told "unsupported webhook version 4: expected '4'".
    with pytest.raises(PayloadError) as caught:
        parse_webhook(body({**REAL, "version": version}))
    assert (caught.value.field, caught.value.message) == ("version", says)


@pytest.mark.parametrize(
    ("starts_at", "says"),
    [
        (None, "required for every alert"),
        ("", "required for every alert"),
        ("0001-01-01T00:00:00Z",
         "must be when the alert began, not Go's zero time '0001-01-01T00:00:00Z'"),
    ],
)
def test_a_start_that_is_absent_or_go_zero_time_says_which(starts_at: Any, says: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_webhook(body(with_alert(startsAt=starts_at)))
    assert (caught.value.field, caught.value.message) == ("alerts[0].startsAt", says)


def test_missing_fingerprint_is_computed() -> None:
    raw = with_alert()
    del raw["alerts"][0]["fingerprint"]
    alert = parse_webhook(body(raw)).alerts[0]
    assert alert.fingerprint == fingerprint_of(alert.labels)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # FNV-1a 64 offset basis: the empty label set, as in Prometheus' model package.
        ({}, "cbf29ce484222325"),
        # Label order in the input does not matter.
        ({"b": "2", "a": "1"}, fingerprint_of({"a": "1", "b": "2"})),
    ],
)
def test_fingerprint(labels: dict[str, str], expected: str) -> None:
    assert fingerprint_of(labels) == expected
    assert len(fingerprint_of({"alertname": "X"})) == 16


def test_round_trip_through_build_webhook() -> None:
    message = parse_webhook(body(REAL))
    again = parse_webhook(body(build_webhook(message.alerts, external_url="http://am")))
    assert again.alerts == message.alerts


def test_silence_url() -> None:
    url = silence_url("http://am:9093/", {"alertname": "X", "cluster": "eu 1"})
    assert url == (
        "http://am:9093/#/silences/new?filter="
        "%7Balertname%3D%22X%22%2C%20cluster%3D%22eu%201%22%7D"
    )
    assert silence_url("", {"a": "b"}) == ""


def test_readme_fixture_parses() -> None:
    """The README's quick start posts this file: keep it a valid webhook."""
    from tests.harness import ROOT

    message = parse_webhook((ROOT / "tests/fixtures/webhook/firing.json").read_bytes())
    assert message.alerts[0].labels["team"] == "payments"
