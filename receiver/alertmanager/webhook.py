"""Alertmanager's webhook format (version 4), in and out, and its fingerprints; Grafana's.

Grafana's webhook contact point sends the same shape as version 1, with more in it: per alert
the links to silence it and to its dashboard and panel, a screenshot, and the query values
that fired it (GrafanaDetails), and starts with an offset (`+02:00`). Both come to the same
endpoint; everything else (routing, grouping, fingerprints) is the same for both.

Parsing is strict about what we rely on and lenient about the rest: every field we read is
checked and a bad one is named (`alerts[3].labels.severity`), while keys we do not know are
ignored, because newer Alertmanagers add keys (`notification_reason`, `routeLabels`) and a 4xx
makes Alertmanager drop the notification for good.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import quote

import msgspec

from receiver.core.errors import PayloadError
from receiver.core.frozen import frozen
from receiver.core.inputs import MAX_INTEGER, parse_json
from receiver.core.limits import UNLIMITED, WebhookLimits
from receiver.core.model import ALERT_STATUSES, Alert, AlertStatus, GrafanaDetails

SUPPORTED_VERSION = "4"
GRAFANA_VERSION = "1"
_VERSIONS = (SUPPORTED_VERSION, GRAFANA_VERSION)
# Firing alerts carry Go's zero time as endsAt; so may a resolved one from an odd sender.
_ZERO_YEAR = 1
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = 0xFF
_MAX_FINGERPRINT = 64


@frozen(slots=True)
class WebhookMessage:
    alerts: tuple[Alert, ...]
    receiver: str = ""
    status: str = ""
    group_key: str = ""
    group_labels: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""
    truncated_alerts: int = 0


def parse_webhook(body: bytes, limits: WebhookLimits = UNLIMITED) -> WebhookMessage:
    """Bytes of a webhook request -> a message, or PayloadError naming the offending field or
    the limit it passes (checked before any alert is read).

    Two paths. msgspec decodes a well-formed webhook straight into typed documents, in C; it
    is at least as strict as the careful path, and anything it refuses or that fails a check
    after it goes to the careful path, which decides, and names the field when it refuses."""
    try:
        if not body.isascii():  # ASCII is UTF-8; isascii() is a tenth of decoding
            body.decode("utf-8")  # msgspec does not look inside the keys it skips
        if len(body) > COUNT_FIRST_FROM:
            _count_first(body, limits)
        doc = _DECODER.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # RecursionError: msgspec's own, for nesting too deep even under a key it skips.
        return _parse_carefully(body, limits)
    if doc.version in _VERSIONS:
        # The careful path would reach the same check with the same counts: a document
        # msgspec read has a version, a list of alerts and a truncatedAlerts that pass.
        limits.check_alerts(len(doc.alerts), [len(a.labels) for a in doc.alerts])
    message = _message_of(doc)
    return message if message is not None else _parse_carefully(body, limits)


# -- the fast path ----------------------------------------------------------------------------


class _AlertDoc(msgspec.Struct, rename={"starts_at": "startsAt", "ends_at": "endsAt",
                                        "generator_url": "generatorURL",
                                        "silence_url": "silenceURL",
                                        "dashboard_url": "dashboardURL",
                                        "panel_url": "panelURL", "image_url": "imageURL",
                                        "value_string": "valueString"}):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    starts_at: str  # times are parsed by _instant on both paths, so both agree to the µs
    annotations: dict[str, str] = {}
    ends_at: str | None = None
    generator_url: str | None = ""
    fingerprint: str | None = None
    # Grafana's (version 1); in any other version they are unknown keys, and ignored.
    silence_url: str | None = ""
    dashboard_url: str | None = ""
    panel_url: str | None = ""
    image_url: str | None = ""
    values: dict[str, float | None] | None = None
    value_string: str | None = ""


class _WebhookDoc(msgspec.Struct, rename={"group_key": "groupKey", "group_labels": "groupLabels",
                                          "external_url": "externalURL",
                                          "truncated_alerts": "truncatedAlerts"}):
    alerts: list[_AlertDoc]
    version: str = SUPPORTED_VERSION
    receiver: str | None = ""
    status: str | None = ""
    group_key: str | None = ""
    group_labels: dict[str, str] = {}
    external_url: str | None = ""
    truncated_alerts: Annotated[int, msgspec.Meta(ge=0, le=MAX_INTEGER)] = 0


_DECODER = msgspec.json.Decoder(_WebhookDoc)


class _Envelope(msgspec.Struct, rename={"truncated_alerts": "truncatedAlerts"}):
    """What the careful path checks before it counts the alerts, and the alerts unread."""

    alerts: list[msgspec.Raw]
    version: str = SUPPORTED_VERSION
    truncated_alerts: Annotated[int, msgspec.Meta(ge=0, le=MAX_INTEGER)] = 0


_ENVELOPE = msgspec.json.Decoder(_Envelope)
# Above this, a body's alerts are counted before they are read: reading 10,919 alerts took
# 10 to 16 ms of the GIL, counting them 1 ms.
COUNT_FIRST_FROM = 64 * 1024


def _count_first(body: bytes, limits: WebhookLimits) -> None:
    """PayloadError if the body holds more alerts than the limit, as the careful path would
    say it: it checks the version, the alerts list and truncatedAlerts first, and counts
    next. A body this cannot read is left to the full decoding and the careful path."""
    try:
        envelope = _ENVELOPE.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return
    if envelope.version in _VERSIONS:
        limits.check_alerts(len(envelope.alerts), ())


def _message_of(doc: _WebhookDoc) -> WebhookMessage | None:
    """The message, or None if a check fails (the careful path then says which)."""
    if doc.version not in _VERSIONS:
        return None
    grafana = doc.version == GRAFANA_VERSION
    alerts = []
    for raw in doc.alerts:
        alert = _alert_of(raw, grafana)
        if alert is None:
            return None
        alerts.append(alert)
    return WebhookMessage(
        alerts=tuple(alerts),
        receiver=doc.receiver or "",
        status=doc.status or "",
        group_key=doc.group_key or "",
        group_labels=doc.group_labels,
        external_url=doc.external_url or "",
        truncated_alerts=doc.truncated_alerts,
    )


def _alert_of(raw: _AlertDoc, grafana: bool) -> Alert | None:
    if not raw.labels:
        return None
    try:
        starts_at = _instant(raw.starts_at) if "T" in raw.starts_at else None
        ends_at = _instant(raw.ends_at) if raw.ends_at and "T" in raw.ends_at else None
    except _BadTime:
        return None
    if starts_at is None or (raw.ends_at and "T" not in raw.ends_at):
        return None
    fingerprint = raw.fingerprint or fingerprint_of(raw.labels)
    if len(fingerprint) > _MAX_FINGERPRINT or "\x00" in fingerprint:
        return None
    status = ALERT_STATUSES[raw.status]
    # Positional, in the order of its fields: one per alert, and keywords cost a webhook 1% of
    # the ingest path's instructions.
    return Alert(
        fingerprint, status, raw.labels, raw.annotations, starts_at,
        ends_at if status is AlertStatus.RESOLVED else None, raw.generator_url or "",
        _grafana_of(raw) if grafana else None,
    )


def _grafana_of(raw: _AlertDoc) -> GrafanaDetails:
    return GrafanaDetails(
        silence_url=raw.silence_url or "",
        dashboard_url=raw.dashboard_url or "",
        panel_url=raw.panel_url or "",
        image_url=raw.image_url or "",
        values=raw.values or {},
        value_string=raw.value_string or "",
    )


# -- the careful path -------------------------------------------------------------------------


def _parse_carefully(body: bytes, limits: WebhookLimits = UNLIMITED) -> WebhookMessage:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("body", f"not valid UTF-8 at byte {exc.start}") from None
    data = parse_json(text)
    if not isinstance(data, dict):
        raise PayloadError("body", "must be a JSON object")
    return _message(data, limits)


def _message(data: dict[str, Any], limits: WebhookLimits) -> WebhookMessage:
    version = data.get("version", SUPPORTED_VERSION)
    if not isinstance(version, str):
        # A hand-written `"version": 4` read "unsupported webhook version 4: expected '4'".
        raise PayloadError(
            "version",
            f"must be a string, '4' (Alertmanager) or '1' (Grafana), not {_json_kind(version)}",
        )
    if version not in _VERSIONS:
        raise PayloadError(
            "version",
            f"unsupported webhook version {version!r}: expected '4' (Alertmanager) "
            "or '1' (Grafana)",
        )
    grafana = version == GRAFANA_VERSION
    raw_alerts = data.get("alerts")
    if not isinstance(raw_alerts, list):
        raise PayloadError("alerts", "required, must be a list")
    truncated = data.get("truncatedAlerts", 0)
    if (
        not isinstance(truncated, int)
        or isinstance(truncated, bool)
        or not 0 <= truncated <= MAX_INTEGER
    ):
        raise PayloadError("truncatedAlerts", "must be a whole number from 0 to 2^63-1")
    limits.check_alerts(len(raw_alerts), [_label_count(raw) for raw in raw_alerts])
    return WebhookMessage(
        alerts=tuple(_alert(raw, f"alerts[{i}]", grafana) for i, raw in enumerate(raw_alerts)),
        receiver=_optional_str(data, "receiver", "receiver"),
        status=_optional_str(data, "status", "status"),
        group_key=_optional_str(data, "groupKey", "groupKey"),
        group_labels=_labels(data.get("groupLabels", {}), "groupLabels"),
        external_url=_optional_str(data, "externalURL", "externalURL"),
        truncated_alerts=truncated,
    )


def _label_count(raw: Any) -> int:
    """What the limit counts: the labels of an alert that has them (a broken alert is named
    when it is read)."""
    labels = raw.get("labels") if isinstance(raw, dict) else None
    return len(labels) if isinstance(labels, dict) else 0


def _alert(raw: Any, at: str, grafana: bool) -> Alert:
    if not isinstance(raw, dict):
        raise PayloadError(at, "must be an object")
    text = raw.get("status")
    status = ALERT_STATUSES.get(text) if isinstance(text, str) else None
    if status is None:
        raise PayloadError(f"{at}.status", "must be 'firing' or 'resolved'")
    labels = _labels(raw.get("labels"), f"{at}.labels")
    if not labels:
        raise PayloadError(f"{at}.labels", "an alert needs at least one label")
    given = raw.get("startsAt")
    starts_at = _time(given, f"{at}.startsAt")
    if starts_at is None and given:
        # Go's zero time passed for absent, and "required" puzzled whoever had sent one.
        raise PayloadError(f"{at}.startsAt", f"must be when the alert began, not Go's zero"
                           f" time {given[:40]!r}")
    if starts_at is None:
        raise PayloadError(f"{at}.startsAt", "required for every alert")
    ends_at = _time(raw.get("endsAt"), f"{at}.endsAt")
    fingerprint = raw.get("fingerprint") or fingerprint_of(labels)
    if not isinstance(fingerprint, str) or len(fingerprint) > _MAX_FINGERPRINT:
        raise PayloadError(f"{at}.fingerprint", "must be a string of at most 64 characters")
    _unicode(fingerprint, f"{at}.fingerprint")
    if "\x00" in fingerprint:
        # Alertmanager's are 16 hex digits. PostgreSQL's text cannot hold NUL, and the store
        # escapes it where it can (store/postgres/text.py), not in arrays of fingerprints.
        raise PayloadError(f"{at}.fingerprint", "must not hold NUL (\\u0000)")
    return Alert(
        fingerprint=fingerprint,
        status=status,
        labels=labels,
        annotations=_labels(raw.get("annotations", {}), f"{at}.annotations"),
        starts_at=starts_at,
        ends_at=ends_at if status is AlertStatus.RESOLVED else None,
        generator_url=_optional_str(raw, "generatorURL", f"{at}.generatorURL"),
        grafana=_grafana(raw, at) if grafana else None,
    )


def _grafana(raw: dict[str, Any], at: str) -> GrafanaDetails:
    return GrafanaDetails(
        silence_url=_optional_str(raw, "silenceURL", f"{at}.silenceURL"),
        dashboard_url=_optional_str(raw, "dashboardURL", f"{at}.dashboardURL"),
        panel_url=_optional_str(raw, "panelURL", f"{at}.panelURL"),
        image_url=_optional_str(raw, "imageURL", f"{at}.imageURL"),
        values=_values(raw.get("values"), f"{at}.values"),
        value_string=_optional_str(raw, "valueString", f"{at}.valueString"),
    )


def _values(raw: Any, at: str) -> dict[str, float | None]:
    """Grafana's query values by reference (`{"B": 44.2, "C": 1}`): numbers a float holds."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PayloadError(at, "must be an object of numbers")
    values: dict[str, float | None] = {}
    for name, value in raw.items():
        _unicode(name, at, "a name ")
        values[name] = None if value is None else _number(value, f"{at}.{name}")
    return values


def _number(value: Any, at: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
        raise PayloadError(at, "must be a number a 64-bit float holds")
    raise PayloadError(at, "must be a number")


def _labels(raw: Any, at: str) -> dict[str, str]:
    if raw is None:
        raise PayloadError(at, "required, must be an object of strings")
    if not isinstance(raw, dict):
        raise PayloadError(at, "must be an object of strings")
    for name, value in raw.items():
        if not isinstance(value, str):
            raise PayloadError(f"{at}.{name}", "must be a string")
        _unicode(name, at, "a name ")
        _unicode(value, f"{at}.{name}")
    return dict(raw)


def _unicode(text: str, at: str, what: str = "") -> str:
    """`text`, if UTF-8 can hold it. JSON can spell an unpaired surrogate (\\ud800); UTF-8,
    and so SQLite, cannot, and the write would fail after the request was taken."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(at, f"{what}contains an unpaired surrogate (\\ud800-\\udfff)") from None
    return text


def _json_kind(value: Any) -> str:
    """How a JSON value that is not a string reads in a message: its kind, a short one as
    written (the number 4), never a long one whole."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return f"the number {json.dumps(value)[:24]}"
    return "an object" if isinstance(value, dict) else "a list"


def _optional_str(raw: Mapping[str, Any], key: str, at: str) -> str:
    value = raw.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(at, "must be a string")
    return _unicode(value, at)


def _time(raw: Any, at: str) -> datetime | None:
    """RFC 3339 with up to nine fractional digits; Go's zero time (and absence) is None."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or "T" not in raw:
        raise PayloadError(at, "must be an RFC 3339 timestamp")
    try:
        return _instant(raw)
    except _BadTime as exc:
        raise PayloadError(at, str(exc)) from None


class _BadTime(ValueError):
    """A timestamp that cannot be read; the caller knows which field it came from."""


@lru_cache(maxsize=4096)
def _instant(text: str) -> datetime | None:
    """Cached: Alertmanager resends the same startsAt with every group_interval."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _BadTime(f"not an RFC 3339 timestamp: {text[:40]!r}") from None
    if value.tzinfo is None:
        raise _BadTime("needs a time zone (Z or an offset)")
    if value.year == _ZERO_YEAR:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00:00-14:00 is in the year 10000 in UTC
        raise _BadTime("outside the years 1 to 9999 once in UTC") from None


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint: FNV-1a 64 over sorted names and values, 0xff-separated."""
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in (*part.encode(), _SEPARATOR):
                digest = ((digest ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


def silence_url(external_url: str, labels: Mapping[str, str]) -> str:
    """A link to Alertmanager's "new silence" form, pre-filled with matchers for `labels`."""
    if not external_url:
        return ""
    matchers = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"{external_url.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}')}"


def format_time(value: datetime | None) -> str:
    if value is None:
        return "0001-01-01T00:00:00Z"
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_webhook(
    alerts: Sequence[Alert],
    *,
    receiver: str = "ackd",
    group_labels: Mapping[str, str] | None = None,
    external_url: str = "",
    truncated_alerts: int = 0,
) -> dict[str, Any]:
    """A webhook body as Alertmanager would send it: for tests, the benchmark and replays."""
    firing = any(a.status is AlertStatus.FIRING for a in alerts)
    return {
        "version": SUPPORTED_VERSION,
        "groupKey": "{}:" + json.dumps(dict(group_labels or {}), sort_keys=True),
        "truncatedAlerts": truncated_alerts,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": dict(group_labels or {}),
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": external_url,
        "alerts": [
            {
                "status": a.status.value,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": format_time(a.starts_at),
                "endsAt": format_time(a.ends_at),
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            }
            for a in alerts
        ],
    }
