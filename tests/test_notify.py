"""The Apprise adapter against real Apprise, delivering over loopback to sinks the tests start.

Nothing here mocks Apprise: json://, form:// and mailto:// go through Apprise's own plugins to
tests/sinks.py. The hung sink accepts and never answers, the refusing one has no listener.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from receiver.notify.notifier import (
    AppriseNotifier,
    Delivery,
    DeliveryStatus,
    Message,
    NotifyType,
    mask,
    scheme,
    validate_url,
)
from receiver.testing import Outcome, RecordingNotifier
from tests.sinks import HttpSink, SinkMode, SinkRequest, SmtpMessage, SmtpSink

ACK = "https://ackd.example.com/l/AQABZf3-bx_AAAAAAAAAKmFuYQ8xXv2"
RESOLVE = "https://ackd.example.com/l/AQEBZf3-bx_AAAAAAAAAKmFuYQ3Yz-_"
SILENCE = 'https://am.example.com/#/silences/new?filter=%7Balertname%3D"HighErrorRate"%7D&x=1'
MESSAGE = Message(
    title="[SEV1] #42 payments: Payment API down (3 alerts)",
    body=f"SEV1 - customer-facing outage\nTeam: payments\n\nSilence: {SILENCE}\n"
         f"Acknowledge: {ACK}\nResolve: {RESOLVE}",
    notify_type=NotifyType.FAILURE,
)
TIMEOUT = timedelta(seconds=1)
MARGIN = 0.5  # seconds a timeout may overrun on a busy machine


@pytest.fixture
async def notifier() -> AsyncIterator[AppriseNotifier]:
    n = AppriseNotifier(workers=4, timeout=TIMEOUT)
    yield n
    await n.close()


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as s:
        yield s


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as s:
        yield s


def _json_fields(r: SinkRequest) -> tuple[str, str, str]:
    return r.json["title"], r.json["message"], r.json["type"]


def _form_fields(r: SinkRequest) -> tuple[str, str, str]:
    assert r.form is not None
    return r.form["title"], r.form["message"], r.form["type"]


@pytest.mark.parametrize(
    ("kind", "fields"),
    [pytest.param("json", _json_fields, id="json"), pytest.param("form", _form_fields, id="form")],
)
async def test_http_delivery_arrives_whole(
    notifier: AppriseNotifier,
    sink: HttpSink,
    kind: str,
    fields: Callable[[SinkRequest], tuple[str, str, str]],
) -> None:
    delivery = await notifier.send(sink.url(kind, "/ana"), MESSAGE)

    assert delivery.status is DeliveryStatus.SUCCESS, delivery.error
    [request] = await sink.wait_for(1)
    assert request.path == "/ana"
    assert fields(request) == (MESSAGE.title, MESSAGE.body, "failure")


async def test_mail_delivery_arrives_whole(notifier: AppriseNotifier, smtp: SmtpSink) -> None:
    delivery = await notifier.send(smtp.url(to="ana@example.com"), MESSAGE)

    assert delivery.status is DeliveryStatus.SUCCESS, delivery.error
    [mail] = await smtp.wait_for(1)
    assert mail.rcpt_tos == ("ana@example.com",)
    assert mail.subject == MESSAGE.title
    assert _lines(mail) == MESSAGE.body.splitlines()


def _lines(mail: SmtpMessage) -> list[str]:
    return mail.text.replace("\r\n", "\n").strip().splitlines()


async def test_hung_endpoint_times_out_without_holding_up_anything_else(
    notifier: AppriseNotifier, sink: HttpSink
) -> None:
    async with HttpSink(SinkMode.HUNG) as hung:
        hanging = asyncio.create_task(notifier.send(hung.url("json"), MESSAGE))
        await hung.wait_for(1)  # accepted, and now it hangs

        started = time.monotonic()
        other = await notifier.send(sink.url("json", "/bo"), MESSAGE)
        other_took = time.monotonic() - started
        lags = sorted([await _loop_lag() for _ in range(20)])
        timed_out = await hanging

    assert other.status is DeliveryStatus.SUCCESS
    assert other_took < MARGIN
    # The loop stays responsive while the delivery hangs: a loop the hung worker starves lags
    # at every turn (the median), and one held by the hung delivery waits for its timeout,
    # much longer than half of it; one turn late from a scheduling hiccup is neither.
    assert lags[len(lags) // 2] < 0.1, lags
    assert lags[-1] < TIMEOUT.total_seconds() / 2, lags
    assert timed_out.status is DeliveryStatus.TIMEOUT
    assert TIMEOUT.total_seconds() <= timed_out.seconds < TIMEOUT.total_seconds() + MARGIN


async def _loop_lag() -> float:
    """How much longer than asked a 10 ms sleep takes: the event loop's responsiveness."""
    started = time.monotonic()
    await asyncio.sleep(0.01)
    return time.monotonic() - started - 0.01


@pytest.mark.parametrize(
    ("params", "next_status"),
    [
        # Our cto/rto release the stuck worker soon after the timeout: the next one gets it.
        pytest.param({}, DeliveryStatus.SUCCESS, id="socket-timeouts-added"),
        # The user's own rto wins, and a pool of one stays stuck behind the hung endpoint.
        pytest.param({"rto": "30"}, DeliveryStatus.TIMEOUT, id="user-rto-kept"),
    ],
)
async def test_hung_worker_is_released_for_the_next_delivery(
    sink: HttpSink, params: dict[str, str], next_status: DeliveryStatus
) -> None:
    notifier = AppriseNotifier(workers=1, timeout=TIMEOUT)
    try:
        async with HttpSink(SinkMode.HUNG) as hung:
            first = await notifier.send(hung.url("json", **params), MESSAGE)
            second = await notifier.send(sink.url("json"), MESSAGE)
    finally:
        await notifier.close()

    assert first.status is DeliveryStatus.TIMEOUT
    assert second.status is next_status


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        pytest.param(SinkMode.REFUSING, "Connection error", id="refused"),
        pytest.param(SinkMode.ERROR, "error=500", id="http-500"),
    ],
)
async def test_failures_are_reported_with_apprises_reason(
    notifier: AppriseNotifier, mode: SinkMode, reason: str
) -> None:
    async with HttpSink(mode) as bad:
        delivery = await notifier.send(bad.url("json"), MESSAGE)

    assert delivery.status is DeliveryStatus.FAILURE
    assert reason in delivery.error
    assert delivery.seconds < TIMEOUT.total_seconds()


async def test_broken_endpoints_do_not_stop_good_ones(
    notifier: AppriseNotifier, sink: HttpSink, smtp: SmtpSink
) -> None:
    async with (
        HttpSink(SinkMode.HUNG) as hung,
        HttpSink(SinkMode.REFUSING) as refusing,
        HttpSink(SinkMode.ERROR) as failing,
    ):
        urls = {
            "json": sink.url("json", "/ana"),
            "form": sink.url("form", "/ops"),
            "mail": smtp.url(),
            "hung": hung.url("json"),
            "refusing": refusing.url("json"),
            "failing": failing.url("form"),
        }
        results = await asyncio.gather(*(notifier.send(u, MESSAGE) for u in urls.values()))

    statuses = {name: d.status for name, d in zip(urls, results, strict=True)}
    assert statuses == {
        "json": DeliveryStatus.SUCCESS,
        "form": DeliveryStatus.SUCCESS,
        "mail": DeliveryStatus.SUCCESS,
        "hung": DeliveryStatus.TIMEOUT,
        "refusing": DeliveryStatus.FAILURE,
        "failing": DeliveryStatus.FAILURE,
    }
    assert sorted(r.path for r in sink.requests) == ["/ana", "/ops"]
    assert [m.subject for m in smtp.messages] == [MESSAGE.title]


async def test_secrets_stay_out_of_errors_and_logs(
    notifier: AppriseNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with HttpSink(SinkMode.ERROR) as failing:
        url = f"json://deploy:hunter22secret@127.0.0.1:{failing.port}/hook"
        delivery = await notifier.send(url, MESSAGE)

    assert delivery.status is DeliveryStatus.FAILURE
    assert "hunter22secret" not in delivery.error
    assert "hunter22secret" not in caplog.text
    assert "json://deploy:" in caplog.text  # the delivery was logged, masked


async def test_close_does_not_wait_for_hung_deliveries() -> None:
    """close() returns while a delivery hangs. The hung delivery cannot end before its
    timeout, counted from before it was sent (its worker's socket, 1.25 times that): a close
    that waited for it, awaiting it or its worker (blocking the loop), returns after that."""
    timeout = 3 * TIMEOUT  # room for the rest of the test on a loaded machine
    notifier = AppriseNotifier(workers=2, timeout=timeout)
    async with HttpSink(SinkMode.HUNG) as hung:
        sent = time.monotonic()
        hanging = asyncio.create_task(notifier.send(hung.url("json"), MESSAGE))
        await hung.wait_for(1)
        await notifier.close()
        closed_after = time.monotonic() - sent
        after = await notifier.send(hung.url("json"), MESSAGE)
        assert (await hanging).status is DeliveryStatus.TIMEOUT

    assert closed_after < timeout.total_seconds(), closed_after
    assert after == Delivery(DeliveryStatus.FAILURE, 0.0, "the notifier is closed")


@pytest.mark.parametrize(
    ("workers", "timeout"),
    [
        pytest.param(0, TIMEOUT, id="no-workers"),
        pytest.param(1, timedelta(0), id="zero-timeout"),
    ],
)
def test_rejects_unusable_settings(workers: int, timeout: timedelta) -> None:
    with pytest.raises(ValueError, match="must be"):
        AppriseNotifier(workers, timeout)


# -- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("json://127.0.0.1:8080/hook", id="json"),
        pytest.param("form://hooks.example.com/ops", id="form"),
        pytest.param("mailto://user:secret@example.com", id="mailto-auth"),
        pytest.param("mailto://127.0.0.1:2525?from=a@example.com&to=b@example.com", id="mailto"),
        pytest.param("discord://1234567/abcdefghijkl", id="discord"),
    ],
)
def test_validate_url_accepts_what_apprise_can_use(url: str) -> None:
    assert validate_url(url) is None


def test_validate_url_parses_a_contact_once(caplog: pytest.LogCaptureFixture) -> None:
    # Every contact is validated at each config load (a start, a reload): the plugin built to
    # learn its URL's secrets is the one that says Apprise can use it, not a second parse.
    caplog.set_level(logging.DEBUG, logger="apprise")
    assert validate_url("json://127.0.0.1:8080/validated-once") is None
    loaded = [r for r in caplog.records if r.getMessage().startswith("Loaded JSON URL")]
    assert len(loaded) == 1


@pytest.mark.parametrize(
    "url", ["nosuchscheme://whatever", "mailto://u:s3cretpw@example.com?mode=x"],
)
def test_a_url_apprise_cannot_use_leaves_apprise_silent(
    url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    # check-config names the URL's file, line and key; Apprise's own "ERROR apprise:
    # Unparseable URL ..." printed before it, a second and unlocated report of one mistake.
    caplog.set_level(logging.DEBUG, logger="apprise")
    assert validate_url(url) is not None
    assert [r.getMessage() for r in caplog.records if r.name == "apprise"] == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("nosuchscheme://whatever",
                     "Apprise cannot use this URL: unknown scheme 'nosuchscheme'", id="scheme"),
        pytest.param("ana@example.com",
                     "Apprise cannot use this URL: it has no scheme (expected scheme://...)",
                     id="no-scheme"),
        pytest.param("mailto://user:s3cretpw@example.com?mode=bogus",
                     "Apprise cannot use this URL: E-Mail rejected its host, path or parameters",
                     id="bad-params"),
    ],
)
def test_validate_url_says_why_without_quoting_the_url(url: str, expected: str) -> None:
    problem = validate_url(url)

    assert problem == expected
    assert "s3cretpw" not in problem


@pytest.mark.parametrize(
    ("url", "secret", "kept"),
    [
        pytest.param("mailto://user:secret@example.com", "secret", "mailto://user:", id="mailto"),
        pytest.param("json://user:pw@host.example.com/hook", ":pw@", "json://user:", id="json"),
        pytest.param("json://host.example.com/?+Authorization=Bearer%20tok123", "tok123",
                     "json://host.example.com/", id="header"),
        pytest.param("form://host.example.com/?-token=qwerty99", "qwerty99",
                     "form://host.example.com/", id="get-param"),
        pytest.param("discord://1234567/abcdefghijkl", "abcdefghijkl", "discord://", id="token"),
        pytest.param("nosuchscheme://user:pw@host", "pw", "nosuchscheme://***", id="unparsed"),
    ],
)
def test_mask_hides_credentials(url: str, secret: str, kept: str) -> None:
    masked = mask(url)

    assert secret not in masked
    assert masked.startswith(kept)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("JSON://host/", "json", id="upper"),
        pytest.param("mailtos://u:p@example.com", "mailtos", id="mailtos"),
        pytest.param("no scheme here", "unknown", id="none"),
    ],
)
def test_scheme_is_a_bounded_label(url: str, expected: str) -> None:
    assert scheme(url) == expected


# -- the recording twin ----------------------------------------------------------------------

FAIL = Outcome(DeliveryStatus.FAILURE, error="boom")
TIMED_OUT = Outcome(DeliveryStatus.TIMEOUT)


@pytest.mark.parametrize(
    ("outcomes", "sends", "expected"),
    [
        pytest.param({}, ["a", "a"], [DeliveryStatus.SUCCESS] * 2, id="default-success"),
        pytest.param({"a": FAIL}, ["a", "b", "a"],
                     [DeliveryStatus.FAILURE, DeliveryStatus.SUCCESS, DeliveryStatus.FAILURE],
                     id="per-url"),
        pytest.param({"a": [FAIL, TIMED_OUT, Outcome()]}, ["a"] * 4,
                     [DeliveryStatus.FAILURE, DeliveryStatus.TIMEOUT, DeliveryStatus.SUCCESS,
                      DeliveryStatus.SUCCESS], id="sequence-then-last-repeats"),
    ],
)
async def test_recording_notifier_plays_outcomes_and_records_every_attempt(
    outcomes: dict[str, Outcome | list[Outcome]], sends: list[str],
    expected: list[DeliveryStatus],
) -> None:
    recorder = RecordingNotifier(outcomes)

    results = [await recorder.send(url, MESSAGE) for url in sends]

    assert [d.status for d in results] == expected
    assert recorder.sent == [(url, MESSAGE) for url in sends]
    assert recorder.messages("a") == [MESSAGE] * sends.count("a")
    assert all(d.ok == (d.error == "") for d in results)


async def test_recording_notifier_delay_and_close() -> None:
    recorder = RecordingNotifier(default=Outcome(delay=timedelta(milliseconds=20)))

    delivery = await recorder.send("a", MESSAGE)
    await recorder.close()
    after = await recorder.send("a", MESSAGE)

    assert delivery == Delivery(DeliveryStatus.SUCCESS, 0.02)
    assert after.status is DeliveryStatus.FAILURE
    assert recorder.sent == [("a", MESSAGE)]
