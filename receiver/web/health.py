"""Liveness, readiness, the Prometheus endpoint and POST /-/reload."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.config.coordinator import ReloadWarning
from receiver.config.model import Config
from receiver.core.access import Scope
from receiver.core.errors import ConfigError, StoreUnavailable
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
    # Replicas on PostgreSQL: how far this one's clock is from the database's. Shown, never
    # a reason to refuse webhooks (a replica with a clock off still commits them).
    offset = s.store.clock_offset
    if offset is None:
        return ok({"status": "ready"})
    return ok({"status": "ready", "clock": offset.to_json()})


async def metrics(request: web.Request) -> web.Response:
    s = services(request)
    # On store trouble, serve the last known gauge values rather than nothing.
    with contextlib.suppress(StoreUnavailable):
        s.metrics.set_open(await s.store.count_open(), _open_label_sets(s.config))
    with contextlib.suppress(StoreUnavailable):
        now = s.clock.now()
        s.metrics.set_oldest_due(await s.store.oldest_due_outbox(now), now)
    if s.heartbeats is not None:
        with contextlib.suppress(StoreUnavailable):
            await s.heartbeats.refresh()
        s.heartbeats.observe()
    s.metrics.clock_offset.offset = s.store.clock_offset
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


# How long POST /-/reload waits for the look at the open incidents before it answers without
# it (the look goes on, and logs what it finds). Measured (README, Reloading): 10,000 open
# incidents are looked at in 0.8 to 1.8 s, 100,000 in 11 to 20 s: a deploy script waits for
# the first, never for the second.
LOOK_WAIT = 5.0
# Incident numbers one warning lists at most; `incident_count` says how many in all.
LISTED = 1000


async def reload(request: web.Request) -> web.Response:
    """Alertmanager's reload endpoint, behind an API token: unlike Alertmanager's, ackd's
    listen address often faces the network (the webhook), and a reload can change who gets
    paged. A refused file keeps the running config; the answer lists every problem with its
    file, line and key, as `ackd check-config` does. 422: the request was fine, the file
    was not, and sending the same request again changes nothing until it is fixed.

    A file that took is answered with whether it changed anything (the published config
    hash before and after) and every warning the reload found, in the shape of the 422's
    problems: the file's own (check-config's) and what the new config does to the open
    incidents. That look runs in the background after the swap; the answer waits for it up
    to LOOK_WAIT seconds, and past that says it is still running and that its warnings go
    to the log, so a deploy script is never held for as long as 100,000 open incidents
    take. A file that changed nothing (the same published digest) is not swapped in and
    the open incidents are not looked at (`unchanged`); its own warnings are answered, as
    check-config would give them now."""
    s = services(request)
    authorise(request, Scope.ADMIN)
    if s.reload is None:
        return error(409, "this ackd was started without a config file to reload")
    outcome = s.reload()
    if isinstance(outcome, ConfigError):
        problems = [
            {"file": p.file, "line": p.line, "key": p.key, "message": p.message}
            for p in outcome.problems
        ]
        return error(422, "reload refused, the running config is kept", problems=problems)
    warnings = [] if outcome.checks is None else await asyncio.shield(outcome.checks)
    looked: dict[str, str]
    if not outcome.changed:
        looked = {"status": "unchanged", "message": "the file is the running config: nothing"
                  " was swapped in, and the open incidents were not looked at again"}
    elif outcome.look is None:
        looked = {"status": "failed", "message": "the open incidents were not looked at"}
    else:
        try:
            found = await asyncio.wait_for(asyncio.shield(outcome.look), LOOK_WAIT)
        except TimeoutError:
            looked = {"status": "running", "message": (
                f"still looking at the open incidents after {LOOK_WAIT:g} s: what it finds"
                " goes to the log as WARNING lines (events config_regrouped,"
                " config_unreached, config_contact_lost, config_message_lost and"
                " config_queued_lost)")}
        else:
            if found is None:
                looked = {"status": "failed", "message": "cannot look at the open incidents,"
                          " see the log"}
            else:
                looked = {"status": "checked"}
                warnings = warnings + found
    return ok({
        "status": "reloaded",
        "changed": outcome.changed,
        "config_hash": {"before": outcome.before, "after": outcome.after},
        "warnings": [_warning(w) for w in warnings],
        "open_incidents": looked,
    })


def _warning(warning: ReloadWarning) -> dict[str, Any]:
    answer: dict[str, Any] = {"file": warning.file, "line": warning.line, "key": warning.key,
                              "message": warning.message, "kind": warning.kind}
    if warning.incidents:
        answer["incidents"] = list(warning.incidents[:LISTED])
        answer["incident_count"] = len(warning.incidents)
    return answer
