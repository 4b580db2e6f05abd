"""Hostile and broken input at the webhook: never a 500, never a dead daemon, nothing lost.

A real ackd process takes Hypothesis-generated and mutated webhooks over loopback HTTP: each
answer is 200 (and the firing alerts are then in the store) or a 4xx whose JSON body names the
offending field. Named cases cover what a fuzzer rarely builds on its own: oversized, chunked
and compressed bodies, deep nesting, huge label counts, text that is not Unicode, credentials
that are not UTF-8. In-process daemons (short timeouts, fresh throttles) show that slow clients
are cut off without holding anyone else up, and that failed authentication is counted and
throttled without ever making Alertmanager drop an alert.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import json
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.alertmanager import webhook as alertmanager
from receiver.alertmanager.webhook import (
    _DECODER,
    _message_of,
    _parse_carefully,
    build_webhook,
    fingerprint_of,
    parse_webhook,
)
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.errors import PayloadError
from receiver.core.limits import WebhookLimits
from receiver.core.model import Alert, AlertStatus
from receiver.store import IncidentFilter
from receiver.testing import RecordingNotifier
from receiver.web.auth import FailureThrottle
from receiver.web.encoding import inflate
from tests.harness import API_TOKEN, TOKEN, Ackd, free_port, write_config

HOST = "127.0.0.1"
MAX_BODY = 1024 * 1024  # the configured default
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
# Where a 4xx may point: the top-level keys ackd reads, and paths below them.
FIELD = re.compile(
    r"(body|version|truncatedAlerts|receiver|status|groupKey|externalURL|Authorization"
    r"|groupLabels(\..*)?|alerts(\[\d+\](\..*)?)?)",
    re.DOTALL,
)


# -- a real ackd process, and plain blocking HTTP to it -----------------------------------------


@pytest.fixture(scope="module")
def ackd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ackd]:
    workdir = tmp_path_factory.mktemp("fuzz")
    # Pages go to a port nobody listens on; the first step is an hour after the page.
    config = write_config(workdir / "ackd.yaml", f"{HOST}:{free_port()}", step_delay="1h")
    daemon = Ackd(workdir, config)
    asyncio.run(daemon.start_ready())
    yield daemon
    daemon.stop()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def post(
    port: int,
    body: bytes | Iterator[bytes],
    headers: Mapping[str, str | bytes] | None = None,
    *,
    chunked: bool = False,
    source: str = HOST,
) -> Answer:
    """POST to the webhook with the right token unless `headers` says otherwise."""
    sent: dict[str, str | bytes] = {"Authorization": f"Bearer {TOKEN}",
                                    "Content-Type": "application/json"}
    sent.update(headers or {})
    conn = http.client.HTTPConnection(HOST, port, timeout=30, source_address=(source, 0))
    try:
        conn.request("POST", "/api/v1/alerts", body=body, headers=sent, encode_chunked=chunked)
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def get(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {API_TOKEN}"})
        response = conn.getresponse()
        raw = response.read()
        assert response.status == 200, raw
        return json.loads(raw) if raw.startswith(b"{") else raw.decode()
    finally:
        conn.close()


def stored_fingerprints(port: int) -> set[str]:
    found: set[str] = set()
    for incident in get(port, "/api/v1/incidents?limit=1000")["incidents"]:
        detail = get(port, f"/api/v1/incidents/{incident['id']}")
        found.update(a["fingerprint"] for a in detail["alerts"])
    return found


def assert_alive(daemon: Ackd) -> None:
    assert daemon.proc is not None
    assert daemon.proc.poll() is None, daemon.log()[-3000:]
    assert get(daemon.port, "/-/healthy") == "ackd is healthy\n"


def assert_clear_refusal(answer: Answer, status: int, field: str) -> None:
    """A 4xx whose JSON body says what is wrong and names where."""
    assert answer.status == status, answer.raw[:300]
    body = answer.json
    assert body["field"] == field, body
    assert isinstance(body["error"], str)
    assert body["error"]


# -- generated and mutated payloads ---------------------------------------------------------------

TEXT = st.text(max_size=12)
# JSON can spell an unpaired surrogate (\ud800); UTF-8, and so SQLite, cannot hold one.
SURROGATES = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT | SURROGATES
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Years 1 to 9999 in any offset: some of them fall outside what a datetime holds in UTC.
TIMESTAMPS = st.one_of(
    st.datetimes(timezones=OFFSETS).map(lambda t: t.isoformat()),
    st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat().replace("+00:00", "Z")),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00",
                     "0001-01-01T00:00:00.123456789+14:00", "2026-01-01T00:00:00.999999999Z"]),
    st.from_regex(r"\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]1[0-4]:00)",
                  fullmatch=True),
)
# What Grafana's values may hold, and what a 64-bit float cannot (1e309 as an integer).
NUMBERS = st.none() | st.floats(allow_nan=False) | st.integers() | st.just(10**309)
# Control characters, line and paragraph separators, bidirectional overrides, alone or inside
# ordinary text: in label names and values and annotations they must be stored or named, and
# never break a page or a log line.
CONTROLS = st.text(st.characters(categories=["Cc", "Cf", "Zl", "Zp"]), min_size=1, max_size=4)
ODD_TEXT = TEXT | CONTROLS | st.tuples(TEXT, CONTROLS, TEXT).map("".join)
LABEL_NAMES = st.sampled_from(["alertname", "cluster", "team", "severity", "instance"]) | ODD_TEXT
LABELS = st.dictionaries(LABEL_NAMES, ODD_TEXT | st.sampled_from(["critical", "payments"]),
                         min_size=1, max_size=6)
# Well-typed webhooks with extreme values; the strategies below break them.
ALERTS = st.fixed_dictionaries(
    {"status": st.sampled_from(["firing", "resolved"]),
     "labels": LABELS,
     "startsAt": TIMESTAMPS},
    optional={
        "annotations": st.dictionaries(ODD_TEXT, ODD_TEXT | SURROGATES, max_size=3),
        "endsAt": TIMESTAMPS,
        "generatorURL": TEXT,
        "fingerprint": st.text(st.sampled_from("0123456789abcdef"), max_size=70),
        "notification_reason": ANY_JSON,  # newer Alertmanagers add keys: never a reason to 4xx
        # Grafana's (version 1); keys ackd does not read in version 4.
        "silenceURL": TEXT,
        "dashboardURL": TEXT,
        "panelURL": TEXT,
        "imageURL": TEXT,
        "values": st.dictionaries(TEXT, NUMBERS, max_size=3),
        "valueString": TEXT,
    },
)
WEBHOOKS = st.fixed_dictionaries(
    {"version": st.sampled_from(["4", "1"]), "alerts": st.lists(ALERTS, max_size=4)},
    optional={
        "orgId": st.integers(),  # Grafana's, with its title, state and message
        "title": TEXT,
        "state": TEXT,
        "message": TEXT,
        "status": TEXT,
        "receiver": TEXT,
        "groupKey": TEXT,
        "groupLabels": st.dictionaries(TEXT, TEXT, max_size=3),
        "commonLabels": LABELS,
        "externalURL": TEXT,
        "truncatedAlerts": st.integers(min_value=0) | st.sampled_from([2**63 - 1, 2**63, 2**64]),
        "routeLabels": ANY_JSON,
    },
)
SPLICES = st.sampled_from(
    [b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x00", b"\\ud800", b'"', b"{", b"]", b",", b"\\"]
) | st.binary(max_size=4)


def encode(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True).encode()


@st.composite
def replaced_somewhere(draw: st.DrawFn) -> bytes:
    """A generated webhook with one value, anywhere in it, swapped for any JSON at all."""
    document = draw(WEBHOOKS)
    node: Any = document
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        if isinstance(node[key], dict | list) and draw(st.booleans()):
            node = node[key]
            continue
        node[key] = draw(ANY_JSON)
        break
    return encode(document)


# JSON text json.dumps will not write: integers past Python's 4,300-digit limit (and just
# past 64 bits), and nesting far past any recursion limit. Depths stay clear of the edge
# where the interpreter's own recursion limit falls (about 1,000 levels less the stack in
# use), where the two parsers may disagree on which depth is too deep; both refuse past it.
HUGE_INTEGERS = st.integers(min_value=19, max_value=6_000).flatmap(
    lambda digits: st.sampled_from([b"9" * digits, b"-" + b"1" * digits, b"1" + b"0" * digits])
)
DEPTHS = st.integers(min_value=1, max_value=300) | st.integers(min_value=3_000,
                                                               max_value=150_000)
DEEP = DEPTHS.flatmap(lambda depth: st.sampled_from([
    nested(depth), b'{"a":' * depth + b"1" + b"}" * depth]))
RAW_JSON = HUGE_INTEGERS | DEEP
PLACEHOLDER = "\u0000raw"


@st.composite
def raw_somewhere(draw: st.DrawFn) -> bytes:
    """A generated webhook with one value, anywhere in it, swapped for raw JSON text: a huge
    integer or deep nesting."""
    document = draw(WEBHOOKS)
    node: Any = document
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:  # an empty object or list: the value goes in as a new member
            if isinstance(node, dict):
                node["future"] = PLACEHOLDER
            else:
                node.append(PLACEHOLDER)
            break
        key = draw(st.sampled_from(keys))
        if isinstance(node[key], dict | list) and node[key] and draw(st.booleans()):
            node = node[key]
            continue
        node[key] = PLACEHOLDER
        break
    return encode(document).replace(encode(PLACEHOLDER), draw(RAW_JSON), 1)


@st.composite
def mangled_bytes(draw: st.DrawFn) -> bytes:
    """A generated webhook's bytes, cut, spliced with bytes that break UTF-8 or JSON."""
    data = bytearray(encode(draw(WEBHOOKS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(data)))
        action = draw(st.sampled_from(["splice", "cut", "delete"]))
        if action == "splice":
            data[at:at] = draw(SPLICES)
        elif action == "cut":
            del data[at:]
        else:
            del data[at:at + draw(st.integers(min_value=1, max_value=8))]
    return bytes(data)


PAYLOADS = st.one_of(
    WEBHOOKS.map(encode),
    replaced_somewhere(),
    raw_somewhere(),
    mangled_bytes(),
    ANY_JSON.map(encode),
    st.binary(max_size=64),
)


def firing_fingerprints(body: bytes) -> set[str]:
    return {a.fingerprint for a in parse_webhook(body).alerts if a.status is AlertStatus.FIRING}


def test_generated_payloads_get_200_or_a_named_4xx_and_accepted_alerts_stay(
    ackd: Ackd,
) -> None:
    accepted: set[str] = set()
    seen: set[int] = set()

    @settings(
        max_examples=200, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=PAYLOADS)
    def throw(body: bytes) -> None:
        answer = post(ackd.port, body)
        seen.add(answer.status)
        assert answer.status in (200, 400, 413), (answer.status, answer.raw[:300])
        if answer.status == 200:
            accepted.update(firing_fingerprints(body))
            return
        refusal = answer.json
        assert FIELD.fullmatch(refusal["field"]), refusal
        assert isinstance(refusal["error"], str)
        assert refusal["error"]

    throw()
    assert {200, 400} <= seen  # the generator reached both sides of the parser
    assert accepted  # and firing alerts got in, so the last check means something
    assert_alive(ackd)
    assert accepted <= stored_fingerprints(ackd.port)


def outcome(parse: Callable[[bytes], Any], body: bytes) -> Any:
    try:
        return parse(body)
    except PayloadError as exc:
        return ("refused", exc.field, exc.message)


# The parser properties below run hundreds of generated bodies in this process: 15 s on a
# quiet machine, most of it Hypothesis generating them, and past pytest's 120 s when the load
# average passed 10. That timeout is a guard against a hang, so it is scaled for them; what a
# parser gone slow would show (a body that takes quadratic time or worse) is bounded per body
# instead, in this process's CPU time, which other processes' load does not stretch. The
# slowest body seen took 0.23 s for both parses.
PROPERTY_TIMEOUT = 600
PARSES_CPU_BOUND = 2.0


def outcomes(parse: Callable[[bytes], Any], careful: Callable[[bytes], Any],
             body: bytes) -> tuple[Any, Any]:
    """Both parsers' outcomes for `body`, within PARSES_CPU_BOUND seconds of CPU together."""
    began = time.process_time()
    fast, slow = outcome(parse, body), outcome(careful, body)
    took = time.process_time() - began
    assert took < PARSES_CPU_BOUND, (took, len(body), body[:200])
    return fast, slow


@pytest.mark.timeout(PROPERTY_TIMEOUT)
@settings(max_examples=1000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=PAYLOADS)
def test_the_fast_parse_decides_as_the_careful_one(body: bytes) -> None:
    """parse_webhook takes msgspec's typed decoder first; whatever it accepts must come out
    exactly as the careful parser reads it, and whatever it refuses, the careful one decides."""
    fast, careful = outcomes(parse_webhook, _parse_carefully, body)
    assert fast == careful


SMALL = WebhookLimits(max_alerts=2, max_labels=5, max_groups=1)


@pytest.mark.timeout(PROPERTY_TIMEOUT)
@settings(max_examples=500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=PAYLOADS)
def test_both_parsers_apply_the_limits_alike(body: bytes) -> None:
    """With limits small enough to matter, and alerts counted before they are read whatever
    the body's size, the fast path still decides as the careful one."""
    counted_from = alertmanager.COUNT_FIRST_FROM
    alertmanager.COUNT_FIRST_FROM = 0
    try:
        fast, careful = outcomes(lambda b: parse_webhook(b, SMALL),
                                 lambda b: _parse_carefully(b, SMALL), body)
    finally:
        alertmanager.COUNT_FIRST_FROM = counted_from
    assert fast == careful


def test_generated_payloads_reach_the_hostile_cases() -> None:
    """The strategies do build what they are meant to: without this, a strategy that never
    produced a deep body or a huge integer would pass every test above."""
    seen: set[str] = set()

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=PAYLOADS)
    def look(body: bytes) -> None:
        if b"[[[[[[[[[[" in body or b'{"a":{"a":' in body:
            seen.add("deep")
        if re.search(rb"[0-9]{19}", body):
            seen.add("huge integer")
        if re.search(rb"\\u00[01][0-9a-f]|\\u2028|\\u202e", body):
            seen.add("control character")
        if b'"version": "1"' in body:
            seen.add("grafana")

    look()
    assert seen == {"deep", "huge integer", "control character", "grafana"}


def test_a_webhook_as_alertmanager_sends_it_takes_the_fast_path() -> None:
    labels = {"alertname": "X", "instance": "a:9100"}
    body = build_webhook([Alert(fingerprint_of(labels), AlertStatus.FIRING, labels,
                                {"summary": "s"}, START, None, "http://prom")])
    message = _message_of(_DECODER.decode(encode(body)))
    assert message == _parse_carefully(encode(body))


# -- named hostile cases --------------------------------------------------------------------------


def hook(*alerts: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "alerts": list(alerts), **envelope}


def alert(labels: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"status": "firing", "labels": labels, "annotations": {},
            "startsAt": START.isoformat(), "endsAt": "0001-01-01T00:00:00Z", **fields}


def lone_surrogate(document: dict[str, Any], marker: str) -> bytes:
    """`document` as JSON with `marker` spelt as an unpaired surrogate escape."""
    return encode(document).replace(marker.encode(), b"\\ud800")


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# The default webhook limits (receiver/limits.py), at them and past them.
MOST_LABELS = {f"label_{n}": str(n) for n in range(9_999)} | {"alertname": "ManyLabels"}
TOO_MANY_LABELS = {f"label_{n}": str(n) for n in range(31_000)} | {"alertname": "TooMany"}

REFUSED = [
    ("empty body", b"", 400, "body"),
    ("invalid UTF-8", encode(hook()).replace(b'"firing"', b'"fir\xffing"'), 400, "body"),
    ("UTF-8 byte order mark", b"\xef\xbb\xbf" + encode(hook()), 400, "body"),
    ("truncated JSON", encode(hook(alert({"alertname": "Cut"})))[:-7], 400, "body"),
    ("JSON array", b"[]", 400, "body"),
    ("nested 100k deep", nested(100_000), 400, "body"),
    ("nested 100k deep in a label",
     encode(hook(alert({"alertname": "Deep", "x": "@"}))).replace(b'"@"', nested(100_000)),
     400, "body"),
    ("nested 100k deep under a key ackd does not read",
     encode(hook(alert({"alertname": "Deep"}), future="@")).replace(b'"@"', nested(100_000)),
     400, "body"),
    ("nested 100k deep under an alert's unknown key",
     encode(hook(alert({"alertname": "Deep"}, future="@"))).replace(b'"@"', nested(100_000)),
     400, "body"),
    ("a 5,000-digit truncatedAlerts",
     encode(hook(alert({"alertname": "Trunc"}), truncatedAlerts=0)).replace(
         b'"truncatedAlerts": 0', b'"truncatedAlerts": ' + b"9" * 5000), 400,
     "truncatedAlerts"),
    ("a 5,000-digit label value",
     encode(hook(alert({"alertname": "@"}))).replace(b'"@"', b"9" * 5000), 400,
     "alerts[0].labels.alertname"),
    ("a 5,000-digit number beside a bad version",
     encode(hook(alert({"alertname": "V"}), version="3", future="@")).replace(
         b'"@"', b"-" + b"9" * 5000), 400, "version"),
    ("31,000 labels in one alert", encode(hook(alert(TOO_MANY_LABELS))), 400,
     "alerts[0].labels"),
    ("10,001 labels over two alerts",
     encode(hook(alert(MOST_LABELS), alert({"alertname": "One", "x": "y"}))), 400,
     "alerts[1].labels"),
    ("501 alerts", encode(hook(*[alert({"alertname": f"A{n}"}) for n in range(501)])), 400,
     "alerts"),
    ("10,919 alerts in 1 MiB, counted before they are read",
     encode(hook(*[{"status": "firing", "labels": {"alertname": f"G{n}"},
                    "startsAt": "2026-01-01T00:00:00Z"} for n in range(10_919)])), 400,
     "alerts"),
    ("version 3", encode(hook(version="3")), 400, "version"),
    ("alerts not a list", encode(hook() | {"alerts": {}}), 400, "alerts"),
    ("label value not a string", encode(hook(alert({"alertname": ["x"]}))), 400,
     "alerts[0].labels.alertname"),
    ("no labels", encode(hook(alert({}))), 400, "alerts[0].labels"),
    ("unpaired surrogate in a label value",
     lone_surrogate(hook(alert({"alertname": "Sur@gate"})), "@"), 400,
     "alerts[0].labels.alertname"),
    ("unpaired surrogate in a label name",
     lone_surrogate(hook(alert({"alertname": "S", "na@me": "v"})), "@"), 400,
     "alerts[0].labels"),
    ("unpaired surrogate in an annotation",
     lone_surrogate(hook(alert({"alertname": "S"}, annotations={"summary": "@"})), "@"), 400,
     "alerts[0].annotations.summary"),
    ("unpaired surrogate in the external URL",
     lone_surrogate(hook(alert({"alertname": "S"}), externalURL="http://@"), "@"), 400,
     "externalURL"),
    ("truncatedAlerts beyond 64 bits",
     encode(hook(alert({"alertname": "Trunc"}), truncatedAlerts=2**64)), 400,
     "truncatedAlerts"),
    ("startsAt after year 9999 in UTC",
     encode(hook(alert({"alertname": "Late"}, startsAt="9999-12-31T23:00:00-14:00"))), 400,
     "alerts[0].startsAt"),
    ("endsAt after year 9999 in UTC",
     encode(hook(alert({"alertname": "Late"}, status="resolved",
                       endsAt="9999-12-31T23:00:00-14:00"))), 400, "alerts[0].endsAt"),
]


@pytest.mark.parametrize(
    ("body", "status", "field"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_broken_body_is_refused_by_name(ackd: Ackd, body: bytes, status: int, field: str) -> None:
    assert_clear_refusal(post(ackd.port, body), status, field)
    assert_alive(ackd)


def _oversized(port: int) -> Answer:
    return post(port, b" " * (MAX_BODY + 1))


def _oversized_chunked(port: int) -> Answer:
    return post(port, iter([b" " * 65536] * (MAX_BODY // 65536 + 1)), chunked=True)


def _gzip_bomb(port: int) -> Answer:
    # 48 kB on the wire, 50 MB once inflated: the limit counts what is inflated.
    return post(port, gzip.compress(b" " * 50_000_000), {"Content-Encoding": "gzip"})


def _bearer_not_utf8(port: int) -> Answer:
    return post(port, encode(hook()), {"Authorization": b"Bearer \xff\xfe"})


def _basic_not_ascii(port: int) -> Answer:
    return post(port, encode(hook()), {"Authorization": b"Basic \xc3\xa9\xc3\xa9"})


OVERSIZED: list[tuple[str, Callable[[int], Answer], int, str]] = [
    ("Content-Length over the limit", _oversized, 413, "body"),
    ("chunked body over the limit", _oversized_chunked, 413, "body"),
    ("gzip bomb", _gzip_bomb, 413, "body"),
    ("bearer token not UTF-8", _bearer_not_utf8, 401, "Authorization"),
    ("basic credentials not ASCII", _basic_not_ascii, 401, "Authorization"),
]


@pytest.mark.parametrize(
    ("send", "status", "field"), [c[1:] for c in OVERSIZED], ids=[c[0] for c in OVERSIZED]
)
def test_hostile_request_is_refused_by_name(
    ackd: Ackd, send: Callable[[int], Answer], status: int, field: str
) -> None:
    assert_clear_refusal(send(ackd.port), status, field)
    assert_alive(ackd)


# Header bytes aiohttp's parser lets through (it answers control characters itself, in text).
HEADER_BYTES = st.binary(max_size=120).filter(
    lambda value: re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value) is None
)
CREDENTIALS = st.one_of(
    HEADER_BYTES,
    st.tuples(st.sampled_from([b"Bearer ", b"bearer ", b"Basic ", b"BASIC "]),
              HEADER_BYTES | st.binary(max_size=60).map(base64.b64encode)).map(b"".join),
)


def test_generated_credentials_get_a_named_401_and_never_a_crash(tmp_path: Path) -> None:
    daemon = Ackd(tmp_path, write_config(tmp_path / "ackd.yaml", f"{HOST}:9", step_delay="1h"))
    asyncio.run(daemon.start_ready())
    guesses = iter(range(1, 1 << 24))

    @settings(max_examples=150, deadline=None, database=None)
    @given(credentials=CREDENTIALS)
    def guess(credentials: bytes) -> None:
        # Each guess from its own loopback address (all of 127/8 is local), so the throttle,
        # tested on its own below, never stands between the fuzzer and the credential checks.
        n = next(guesses)
        source = f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255 or 1}"
        answer = post(daemon.port, encode(hook()), {"Authorization": credentials},
                      source=source)
        assert answer.status == 401, (answer.status, answer.raw[:300])
        assert answer.json["field"] == "Authorization"

    try:
        guess()
        assert_alive(daemon)
    finally:
        daemon.stop()


ACCEPTED = [
    ("10,000 labels", hook(alert(MOST_LABELS))),
    ("500 alerts", hook(*[alert({"alertname": "Many", "n": str(n)}) for n in range(500)])),
    ("a 500 kB label value", hook(alert({"alertname": "Long", "text": "x" * 500_000}))),
    ("a NUL in a label value", hook(alert({"alertname": "Nul\x00Byte"}))),
    ("an empty label name", hook(alert({"alertname": "EmptyName", "": "v"}))),
    ("keys ackd does not know", hook(alert({"alertname": "Newer"}, notification_reason="x"),
                                     routeLabels={"a": "b"}, future={"x": [1, 2]})),
]
# Bodies json.dumps cannot write: the placeholder "@" is replaced by the raw JSON.
ACCEPTED_RAW = [
    ("a 5,000-digit number under a key ackd does not read",
     encode(hook(alert({"alertname": "HugeUnknown"}), future="@")), b"9" * 5000),
    ("a 5,000-digit number under an alert's unknown key",
     encode(hook(alert({"alertname": "HugeAlertUnknown"}, future="@"))), b"-" + b"9" * 5000),
    ("nested 100 deep under a key ackd does not read",
     encode(hook(alert({"alertname": "DeepUnknown"}), future="@")), nested(100)),
]


@pytest.mark.parametrize("document", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_odd_but_valid_webhook_is_stored_whole(ackd: Ackd, document: dict[str, Any]) -> None:
    answer = post(ackd.port, encode(document))
    assert answer.status == 200, answer.raw[:300]
    [incident] = answer.json["incidents"]
    stored = get(ackd.port, f"/api/v1/incidents/{incident}")["alerts"]
    assert sorted(encode(a["labels"]) for a in stored) == sorted(
        encode(a["labels"]) for a in document["alerts"])
    assert_alive(ackd)


@pytest.mark.parametrize(("template", "raw"), [c[1:] for c in ACCEPTED_RAW],
                         ids=[c[0] for c in ACCEPTED_RAW])
def test_odd_json_under_unknown_keys_is_ignored(ackd: Ackd, template: bytes, raw: bytes) -> None:
    answer = post(ackd.port, template.replace(b'"@"', raw))
    assert answer.status == 200, answer.raw[:300]
    assert answer.json["incidents"]
    assert_alive(ackd)


# -- in-process daemons: slow clients, throttled credentials ---------------------------------------

SHORT = 0.5  # seconds: the keep-alive and body timeouts of the slow-client daemon


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Daemon] = []

    async def start(**options: Any) -> Daemon:
        path = write_config(tmp_path / "ackd.yaml", f"{HOST}:9", step_delay="1h")
        loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
        daemon = Daemon(loaded, notifier=RecordingNotifier(), **options)
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        await daemon.stop()


async def send(url: str, body: Any, token: str = TOKEN) -> tuple[int, Any, Mapping[str, str]]:
    async with aiohttp.ClientSession() as session, session.post(
        url, data=json.dumps(body), headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.json(), dict(response.headers)


def firing(name: str) -> dict[str, Any]:
    labels = {"alertname": name, "cluster": "eu1"}
    return build_webhook([Alert(fingerprint_of(labels), AlertStatus.FIRING, labels, {}, START,
                                None)])


async def test_slow_headers_are_cut_off_and_hold_nobody_up(
    start_daemon: Callable[..., Any],
) -> None:
    daemon: Daemon = await start_daemon(keepalive_timeout=SHORT, body_timeout=SHORT)
    slow = [await asyncio.open_connection(HOST, daemon.port) for _ in range(50)]
    for _, writer in slow:
        writer.write(b"POST /api/v1/alerts HTTP/1.1\r\nHost: ackd\r\nAuthori")  # and no more
        await writer.drain()

    began = time.monotonic()
    status, _, _ = await send(f"http://{HOST}:{daemon.port}/api/v1/alerts", firing("Fast"))
    assert status == 200
    assert time.monotonic() - began < SHORT  # answered while all 50 are still hanging on

    async with asyncio.timeout(10 * SHORT):
        for reader, writer in slow:
            assert await reader.read() == b""  # the server hung up without a word
            writer.close()


async def test_slow_body_gets_503_naming_the_body(start_daemon: Callable[..., Any]) -> None:
    daemon: Daemon = await start_daemon(keepalive_timeout=60.0, body_timeout=SHORT)
    reader, writer = await asyncio.open_connection(HOST, daemon.port)
    try:
        writer.write(
            b"POST /api/v1/alerts HTTP/1.1\r\nHost: ackd\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"version": "4", '  # then nothing for as long as the client likes
        )
        await writer.drain()
        async with asyncio.timeout(10 * SHORT):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = int(re.search(r"Content-Length: (\d+)", head)[1])  # type: ignore[index]
            body = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
    assert head.startswith("HTTP/1.1 503"), head  # transient: Alertmanager would retry
    assert "Connection: close" in head
    assert body["field"] == "body"


LIMIT = FailureThrottle().limit


async def test_failed_authentication_is_counted_then_throttled_with_503(
    start_daemon: Callable[..., Any],
) -> None:
    daemon: Daemon = await start_daemon()
    url = f"http://{HOST}:{daemon.port}/api/v1/alerts"
    for _ in range(LIMIT):
        status, body, headers = await send(url, firing("Guess"), token="guess")
        assert (status, body["field"]) == (401, "Authorization")
        assert headers["WWW-Authenticate"].startswith("Bearer")
    registry = daemon.metrics.registry
    assert registry.get_sample_value("ackd_auth_failures_total", {"endpoint": "webhook"}) == LIMIT

    # Blocked now: further guesses get a 503 with Retry-After, and nothing gets in.
    status, body, headers = await send(url, firing("Guess"), token="guess")
    assert (status, body["field"]) == (503, "Authorization")
    assert 0 < int(headers["Retry-After"]) <= FailureThrottle().window
    assert registry.get_sample_value("ackd_webhooks_total", {"result": "throttled"}) == 1
    assert await daemon.store.incidents(IncidentFilter()) == []


async def test_valid_credentials_are_never_throttled(start_daemon: Callable[..., Any]) -> None:
    # A guesser behind the same proxy as Alertmanager: the address is blocked for failures,
    # and every real post still gets in, interleaved with the guesses.
    daemon: Daemon = await start_daemon()
    base = f"http://{HOST}:{daemon.port}"
    url = f"{base}/api/v1/alerts"
    for _ in range(LIMIT):
        await send(url, firing("Guess"), token="guess")
    for n in range(5):
        status, body, _ = await send(url, firing(f"Real{n}"))
        assert status == 200, body
        status, _, _ = await send(url, firing("Guess"), token="guess")
        assert status == 503
    assert len(await daemon.store.incidents(IncidentFilter())) == 5

    async with aiohttp.ClientSession() as session:
        for _ in range(LIMIT):
            async with session.get(f"{base}/api/v1/incidents",
                                   headers={"Authorization": "Bearer stale"}) as response:
                assert response.status == 401
        async with session.get(f"{base}/api/v1/incidents",
                               headers={"Authorization": "Bearer stale"}) as response:
            assert response.status == 429
        async with session.get(f"{base}/api/v1/incidents",
                               headers={"Authorization": f"Bearer {API_TOKEN}"}) as response:
            assert response.status == 200


async def test_api_token_failures_do_not_lock_out_alertmanager(
    start_daemon: Callable[..., Any],
) -> None:
    daemon: Daemon = await start_daemon()
    base = f"http://{HOST}:{daemon.port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(LIMIT + 5):  # a script with a stale API token, polling
            async with session.get(f"{base}/api/v1/incidents",
                                   headers={"Authorization": "Bearer stale"}) as response:
                assert response.status in (401, 429)
    status, body, _ = await send(f"{base}/api/v1/alerts", firing("StillHeard"))
    assert status == 200, body


THROTTLE_CASES = [
    ("under the limit", [0.0] * (LIMIT - 1), 1.0, 0.0),
    ("at the limit", [0.0] * LIMIT, 1.0, 59.0),
    ("oldest leaves the window", [0.0] + [30.0] * (LIMIT - 1), 61.0, 0.0),
    ("blocked until enough have left", [0.0, 10.0] + [30.0] * (LIMIT - 1), 50.0, 20.0),
    ("window over", [0.0] * LIMIT, 60.0, 0.0),
]


@pytest.mark.parametrize(
    ("failures", "now", "wait"), [c[1:] for c in THROTTLE_CASES],
    ids=[c[0] for c in THROTTLE_CASES],
)
def test_throttle_retry_after(failures: list[float], now: float, wait: float) -> None:
    throttle = FailureThrottle()
    for at in failures:
        throttle.record("10.0.0.1", now=at)
    assert throttle.retry_after("10.0.0.1", now=now) == pytest.approx(wait)
    assert throttle.blocked("10.0.0.1", now=now) is (wait > 0)
    assert throttle.retry_after("10.0.0.2", now=now) == 0.0


# -- compressed bodies: inflated by ackd with a bound, never by aiohttp's parser -----------------


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


BOMB = b" " * 50_000_000
ENCODED: list[tuple[str, str, bytes, int, str]] = [
    ("a deflate bomb", "deflate", zlib.compress(BOMB), 413, "body"),
    ("a raw deflate bomb", "deflate", _raw_deflate(BOMB), 413, "body"),
    ("gzip that is not gzip", "gzip", b"plain text", 400, "body"),
    ("gzip cut short", "gzip", gzip.compress(encode(hook()))[:-12], 400, "body"),
    ("brotli", "br", b"\x0b\x02\x80{}\x03", 415, "Content-Encoding"),
    ("zstd", "zstd", b"\x28\xb5\x2f\xfd\x20\x02\x11\x00\x00{}", 415, "Content-Encoding"),
    ("two encodings", "gzip, gzip", gzip.compress(gzip.compress(b"{}")), 415, "Content-Encoding"),
]


@pytest.mark.parametrize(
    ("encoding", "body", "status", "field"), [c[1:] for c in ENCODED],
    ids=[c[0] for c in ENCODED],
)
def test_an_encoded_body_is_inflated_with_a_bound_or_refused_by_name(
    ackd: Ackd, encoding: str, body: bytes, status: int, field: str
) -> None:
    # aiohttp answered an encoding it lacks (br, zstd) with a text 400 and a traceback in the
    # log, for every request, before any credential was checked.
    assert_clear_refusal(post(ackd.port, body, {"Content-Encoding": encoding}), status, field)
    assert_alive(ackd)
    assert "Traceback" not in ackd.log()


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress),
     ("deflate", _raw_deflate), ("identity", lambda data: data)],
)
def test_a_compressed_webhook_is_taken(
    ackd: Ackd, encoding: str, pack: Callable[[bytes], bytes]
) -> None:
    name = f"Packed{encoding.title().replace('-', '')}{len(pack(b'x'))}"
    answer = post(ackd.port, pack(encode(hook(alert({"alertname": name})))),
                  {"Content-Encoding": encoding})
    assert answer.status == 200, answer.raw[:300]
    assert answer.json["opened"], answer.json


def test_inflating_never_makes_more_than_the_limit_and_one_byte() -> None:
    # 200 MB of spaces in 200 kB: refused having made limit + 1 bytes, not 200 MB.
    packer = zlib.compressobj(9)
    bomb = b"".join(packer.compress(b" " * 10_000_000) for _ in range(20)) + packer.flush()
    assert len(bomb) < 1_048_576
    assert inflate(bomb, "deflate", 1_048_576) is None
    assert inflate(zlib.compress(b"{}"), "deflate", 2) == b"{}"
    assert inflate(zlib.compress(b"{} "), "deflate", 2) is None


async def test_refused_credentials_and_bodies_are_logged_with_the_address(
    start_daemon: Callable[..., Any], caplog: pytest.LogCaptureFixture,
) -> None:
    """Alertmanager drops a 4xx for good: ackd's log must say a webhook was refused, and from
    where. Wrong credentials: one line per address and minute, however many follow."""
    daemon: Daemon = await start_daemon()
    url = f"http://{HOST}:{daemon.port}/api/v1/alerts"
    caplog.set_level("WARNING", logger="receiver.web.webhook")
    for _ in range(3):
        status, _, _ = await send(url, firing("Rotated"), token="the-old-token")
        assert status == 401
    status, _, _ = await send(url, {"version": "4", "alerts": {}})
    assert status == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "receiver.web.webhook"]
    assert lines == [
        f"webhook refused from {HOST}: missing or wrong credentials. Alertmanager drops a"
        " refused notification: check its credentials against ackd's webhook.bearer_token"
        " (or basic_auth). Further failures from this address are logged once every 60s"
        " (all counted in ackd_auth_failures_total)",
        f"webhook rejected: alerts: required, must be a list (from {HOST})",
    ]


def test_refused_credentials_are_logged_once_a_window_while_they_go_on() -> None:
    """A failure every 10 s from one address (Alertmanager with a rotated token): a line at
    the first and once a minute after, not one ever; another address has lines of its own."""
    throttle = FailureThrottle()
    logged = []
    for at in range(0, 130, 10):
        if throttle.log_due("10.0.0.1", now=float(at)):
            logged.append(at)
        throttle.record("10.0.0.1", now=float(at))
    assert logged == [0, 60, 120]
    assert throttle.log_due("10.0.0.2", now=130.0)
