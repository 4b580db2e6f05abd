"""Liveness, readiness, the Prometheus endpoint and POST /-/reload."""

from __future__ import annotations

import contextlib

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.config.model import Config
from receiver.core.access import Scope
from receiver.core.errors import StoreUnavailable
from receiver.core.model import IncidentState
from receiver.web.access import authorise
from receiver.web.responses import error, ok
from receiver.web.services import services


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="ackd is healthy\n")


async def ready(request: web.Request) -> web.Response:
    """200 while ackd can take webhooks: started, not stopping, and its store (the SQLite
    file, or the PostgreSQL database replicas share) reads and takes writes. Else 503, its
    JSON naming why, so a load balancer sends webhooks to the replicas that can commit."""
    s = services(request)
    if not s.ready or s.draining:
        return error(503, "not ready: " + ("stopping" if s.draining else "starting"))
    try:
        await s.store.ping()
        # Reads may work while writes fail (a full disk, a damaged page): not ready then.
        await s.store.writable()
    except StoreUnavailable as exc:
        return error(503, f"store unavailable: {exc}")
    return ok({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    s = services(request)
    # On store trouble, serve the last known gauge values rather than nothing.
    with contextlib.suppress(StoreUnavailable):
        s.metrics.set_open(await s.store.count_open(), _open_label_sets(s.config))
    if s.heartbeats is not None:
        with contextlib.suppress(StoreUnavailable):
            await s.heartbeats.refresh()
        s.heartbeats.observe()
    memos = (("bodies", s.incidents.bodies.memo), ("groups", s.incidents.held.memo))
    for name, memo in memos:
        s.metrics.memo_bytes.labels(name).set(memo.bytes)
        s.metrics.memo_entries.labels(name).set(len(memo))
    body = generate_latest(s.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _open_label_sets(config: Config) -> list[tuple[str, str, str]]:
    states = (IncidentState.TRIGGERED, IncidentState.ACKNOWLEDGED)
    return [(team, severity.name, state.value) for team in config.teams
            for severity in config.severities for state in states]


async def reload(request: web.Request) -> web.Response:
    """Alertmanager's reload endpoint, behind an API token: unlike Alertmanager's, ackd's
    listen address often faces the network (the webhook), and a reload can change who gets
    paged. A refused file keeps the running config; the answer lists every problem with its
    file, line and key, as `ackd check-config` does. 422: the request was fine, the file
    was not, and sending the same request again changes nothing until it is fixed."""
    s = services(request)
    authorise(request, Scope.ADMIN)
    if s.reload is None:
        return error(409, "this ackd was started without a config file to reload")
    refused = s.reload()
    if refused is None:
        return ok({"status": "reloaded"})
    problems = [
        {"file": p.file, "line": p.line, "key": p.key, "message": p.message}
        for p in refused.problems
    ]
    return error(422, "reload refused, the running config is kept", problems=problems)
