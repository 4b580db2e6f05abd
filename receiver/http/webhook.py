"""POST /api/v1/alerts: Alertmanager's webhook.

Alertmanager retries only on 5xx and transport errors; any 4xx drops the notification for
good. So: 4xx only for requests that can never succeed (bad auth, bad body), 503 for anything
transient (not ready, store trouble), and 200 only once the alerts are committed.
"""

from __future__ import annotations

import logging

from aiohttp import web

from receiver.alertmanager import parse_webhook
from receiver.errors import PayloadError, StoreUnavailable
from receiver.http.auth import webhook_allowed
from receiver.http.responses import error, ok
from receiver.http.services import Services, services

log = logging.getLogger(__name__)


async def receive_alerts(request: web.Request) -> web.Response:
    s = services(request)
    refusal = _refuse_early(request, s)
    if refusal is not None:
        return refusal
    body = await _read_body(request, s.config.max_body_bytes)
    if body is None:
        s.metrics.webhooks.labels("too_large").inc()
        return error(413, f"body exceeds {s.config.max_body_bytes} bytes", "body")
    try:
        message = parse_webhook(body)
    except PayloadError as exc:
        s.metrics.webhooks.labels("bad_request").inc()
        log.warning("webhook rejected: %s", exc)
        return error(400, exc.message, exc.field)
    try:
        result = await s.incidents.ingest(message)
    except StoreUnavailable as exc:
        s.metrics.webhooks.labels("unavailable").inc()
        s.metrics.store_errors.inc()
        return error(503, f"store unavailable, retry: {exc}")
    s.metrics.webhooks.labels("accepted").inc()
    return ok(
        {
            "status": "accepted",
            "alerts": result.alerts,
            "incidents": sorted(set(result.groups.values())),
            "opened": [i.id for i in result.opened],
            "resolved": [i.id for i in result.resolved],
            "outcomes": {k.value: v for k, v in result.outcomes.items()},
        }
    )


def _refuse_early(request: web.Request, s: Services) -> web.Response | None:
    client = request.remote or "unknown"
    if s.throttle.blocked(client):
        s.metrics.auth_failures.labels("webhook").inc()
        return error(429, "too many failed authentication attempts", "Authorization")
    if not webhook_allowed(request, s.config.webhook_auth):
        s.throttle.record(client)
        s.metrics.auth_failures.labels("webhook").inc()
        s.metrics.webhooks.labels("unauthorized").inc()
        return web.json_response(
            {"error": "missing or wrong credentials", "field": "Authorization"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="ackd"'},
        )
    if not s.ready or s.draining:
        s.metrics.webhooks.labels("unavailable").inc()
        return error(503, "not ready")
    if request.content_length is not None and request.content_length > s.config.max_body_bytes:
        s.metrics.webhooks.labels("too_large").inc()
        return error(413, f"body exceeds {s.config.max_body_bytes} bytes", "body")
    return None


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """Read at most `limit` bytes; None if the body is longer (chunked bodies have no length)."""
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
