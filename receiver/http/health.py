"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

import contextlib

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.errors import StoreUnavailable
from receiver.http.services import services


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="ackd is healthy\n")


async def ready(request: web.Request) -> web.Response:
    s = services(request)
    if not s.ready or s.draining:
        return web.Response(status=503, text="not ready\n")
    try:
        await s.store.ping()
        # Reads may work while writes fail (a full disk, a damaged page): not ready then.
        await s.store.writable()
    except StoreUnavailable as exc:
        return web.Response(status=503, text=f"store unavailable: {exc}\n")
    return web.Response(text="ackd is ready\n")


async def metrics(request: web.Request) -> web.Response:
    s = services(request)
    # On store trouble, serve the last known gauge values rather than nothing.
    with contextlib.suppress(StoreUnavailable):
        s.metrics.set_open(await s.store.count_open())
    memos = (("bodies", s.incidents.bodies.memo), ("groups", s.incidents.held.memo))
    for name, memo in memos:
        s.metrics.memo_bytes.labels(name).set(memo.bytes)
        s.metrics.memo_entries.labels(name).set(len(memo))
    body = generate_latest(s.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
