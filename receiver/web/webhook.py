"""POST /api/v1/alerts: Alertmanager's webhook.

Alertmanager retries only on 5xx and transport errors; any 4xx drops the notification for
good. So: 4xx only for requests that can never succeed (bad auth, bad body), 503 for anything
transient (not ready, store trouble, a throttled address, a body that arrives too slowly), and
200 only once the alerts are committed. A resend of what is committed already is answered at
once (grouping.HeldGroups; a body seen before is not even parsed again, grouping.RoutedBodies),
so it gets its 200 even while the store cannot take writes.

Failed credentials are counted per client address in a throttle of the webhook's own: API
clients with a stale token must not lock Alertmanager out. Only failing requests are throttled
(503 with Retry-After); a request with valid credentials always goes through, because behind a
reverse proxy Alertmanager shares its address with whoever is guessing. The throttle cannot
stop a guesser who ignores Retry-After: the defence against guessing is a long random token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from aiohttp import web

from receiver.core.errors import PayloadError, StoreUnavailable
from receiver.web.auth import FailureThrottle, webhook_allowed
from receiver.web.encoding import FIELD as ENCODING
from receiver.web.encoding import encoding_of, inflate, supported
from receiver.web.responses import error, ok, unauthorized
from receiver.web.services import Services, services

log = logging.getLogger(__name__)

# A client gets this long to send the whole body once its headers are in; slower ones would
# hold a connection and a handler for as long as they like.
DEFAULT_BODY_TIMEOUT = 30.0
BODY_TIMEOUT = web.AppKey("webhook_body_timeout", float)
THROTTLE = web.AppKey("webhook_throttle", FailureThrottle)


async def receive_alerts(request: web.Request) -> web.Response:
    started = time.perf_counter()
    s = services(request)
    result = "error"  # an exception no refusal names: aiohttp answers 500
    try:
        result, response = await _receive(request, s)
        s.metrics.webhooks.labels(result).inc()
        return response
    finally:
        s.metrics.webhook_duration.labels(result).observe(time.perf_counter() - started)


async def _receive(request: web.Request, s: Services) -> tuple[str, web.Response]:
    """The result to count (the metrics' label) and the answer."""
    limit = s.config.max_body_bytes
    encoding = encoding_of(request)
    refusal = _refuse_early(request, s, limit, encoding)
    if refusal is not None:
        return refusal
    timeout = request.app[BODY_TIMEOUT]
    try:
        body = await _body_in_time(request, limit, timeout)
    except TimeoutError:
        slow = error(503, f"the body did not arrive within {timeout:g}s, retry", "body")
        slow.force_close()  # the rest of a body this slow is not worth waiting for
        return "slow_body", slow
    try:
        body = body and inflate(body, encoding, limit)
    except PayloadError as exc:
        return _rejected(request, exc)
    if body is None:
        return "too_large", error(413, f"body exceeds {limit} bytes", "body")
    try:
        ingested = await s.incidents.ingest_body(body)
    except PayloadError as exc:
        return _rejected(request, exc)
    except StoreUnavailable as exc:
        s.metrics.store_errors.inc()
        return "unavailable", error(503, f"store unavailable, retry: {exc}")
    return "accepted", ok(
        {
            "status": "accepted",
            "alerts": ingested.alerts,
            "incidents": sorted(set(ingested.groups.values())),
            "opened": [i.id for i in ingested.opened],
            "resolved": [i.id for i in ingested.resolved],
            # msgspec writes an AlertOutcome key as its value
            "outcomes": ingested.outcomes,
        }
    )


def _rejected(request: web.Request, exc: PayloadError) -> tuple[str, web.Response]:
    # The address says which of several Alertmanagers (or which script) sends it.
    log.warning("webhook rejected: %s (from %s)", exc, request.remote or "unknown")
    return "bad_request", error(400, exc.message, exc.field)


def _refuse_early(
    request: web.Request, s: Services, limit: int, encoding: str
) -> tuple[str, web.Response] | None:
    if not webhook_allowed(request, s.config.webhook_auth):
        return _refuse_credentials(request, s)
    if not s.ready or s.draining:
        return "unavailable", error(503, "not ready")
    if (length := request.content_length) is not None and length > limit:
        return "too_large", error(413, f"body exceeds {limit} bytes", "body")
    if not supported(encoding):
        refused = error(415, f"cannot read a body encoded {encoding!r}: send it as it is, or"
                        " gzip or deflate it", ENCODING)
        refused.force_close()  # none of it will be read
        return "bad_request", refused
    return None


def _refuse_credentials(request: web.Request, s: Services) -> tuple[str, web.Response]:
    # Valid credentials are never throttled, whoever shares the address: only failures.
    throttle = request.app[THROTTLE]
    client = request.remote or "unknown"
    wait = throttle.retry_after(client)
    if throttle.log_due(client):
        # Alertmanager drops a refused notification for good and only its own log says so: a
        # token rotated on one side loses every alert. One line per address and window while
        # failures go on, so a guesser does not fill the log; the metric counts all.
        log.warning(
            "webhook refused from %s: missing or wrong credentials. Alertmanager drops a"
            " refused notification: check its credentials against ackd's"
            " webhook.bearer_token (or basic_auth). Further failures from this address"
            " are logged once every %gs (all counted in ackd_auth_failures_total)",
            client, throttle.window,
        )
    throttle.record(client)
    s.metrics.auth_failures.labels("webhook").inc()
    if wait > 0:
        return "throttled", error(
            503,
            "too many failed authentication attempts from this address, retry later",
            "Authorization",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    return "unauthorized", unauthorized("missing or wrong credentials")


async def _body_in_time(request: web.Request, limit: int, seconds: float) -> bytes | None:
    if request.content.is_eof():
        # The whole body came in with the headers, as a webhook's usually does: it is all in
        # the buffer, and a timer would cost more than taking it.
        body = request.content.read_nowait()
        return body if len(body) <= limit else None
    async with asyncio.timeout(seconds):
        return await _read_body(request, limit)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """Read at most `limit` bytes; None if the body is longer (chunked bodies have no length,
    and a compressed body is counted as it is inflated, so a small bomb cannot grow large)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
