"""Liveness, readiness, the Prometheus endpoint and POST /-/reload."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiver.config.coordinator import Reloaded, ReloadWarning
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


# How long POST /-/reload waits, after the file's load and swap, for the checks that follow
# (the file's own, and the look at what the new config does to the open incidents) before it
# answers with what is done and says what still runs; the checks go on, log what they find,
# and GET /-/reload and ackd_config_warnings give it once done. Measured (README,
# Reloading): 10,000 open incidents are looked at in 0.8 to 1.8 s, 100,000 in 11 to 20 s: a
# deploy script waits for the first, never for the second.
REPLY_WAIT = 5.0
# Incident numbers one warning lists at most; `incident_count` says how many in all.
LISTED = 1000
# Where the findings of checks still running go.
LATER = ("what it finds goes to the log as WARNING lines, to GET /-/reload (ackd reload"
         " --status) and to ackd_config_warnings")


async def reload(request: web.Request) -> web.Response:
    """Alertmanager's reload endpoint, behind an API token: unlike Alertmanager's, ackd's
    listen address often faces the network (the webhook), and a reload can change who gets
    paged. A refused file keeps the running config; the answer lists every problem with its
    file, line and key, as `ackd check-config` does. 422: the request was fine, the file
    was not, and sending the same request again changes nothing until it is fixed.

    A file that took is swapped in whole before anything is awaited, and answered with
    whether it changed anything (the published config hash before and after) and every
    warning the reload found, in the shape of the 422's problems: the file's own
    (check-config's) and what the new config does to the open incidents. Both checks run
    in the background after the swap; the answer waits for them up to REPLY_WAIT seconds in
    all, and past that gives what is done and says what still runs (`file_checks`,
    `open_incidents`), whose warnings then go to the log, GET /-/reload and
    ackd_config_warnings: a deploy script is never held for as long as 100,000 open
    incidents take. A file that changed nothing (the same published digest) is not swapped
    in and the open incidents are not looked at again: the look the reload that swapped in
    this same config began, or the start's when ackd started with it, running or done, is
    this one's too (unless the start skipped its look: then this reload looks)."""
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
    running = [f for f in (outcome.checks, outcome.look) if f is not None and not f.done()]
    if running:  # asyncio.wait cancels nothing: what is not done by then goes on
        await asyncio.wait(running, timeout=REPLY_WAIT)
    return ok(reload_answer(outcome))


async def last_reload(request: web.Request) -> web.Response:
    """GET /-/reload: the last reload that took, answered as POST /-/reload answered it but
    with its checks as they stand now (those that ran past the answer's bound are done, or
    still `running`), and when it was asked (`at`). Before any reload took, the start's
    checks of the config ackd started with, which ran the same way (`status` `started`,
    `at` the start): what the last check of the running config found, as
    ackd_config_warnings counts it. 404 only from a web app no daemon started."""
    s = services(request)
    authorise(request, Scope.ADMIN)
    outcome = None if s.last_reload is None else s.last_reload()
    if outcome is None:
        return error(404, "ackd has not started: no check of its config has begun")
    answer = reload_answer(outcome)
    if outcome.at is not None:
        answer["at"] = outcome.at.isoformat()
    return ok(answer)


def reload_answer(outcome: Reloaded) -> dict[str, Any]:
    """A reload that took as its checks stand now: what is done, and what still runs."""
    checks = outcome.checks
    warnings: list[ReloadWarning] = []
    file_checks: dict[str, str]
    if checks is not None and not checks.done():
        file_checks = {"status": "running", "message": (
            "still checking the file as check-config does: " + LATER)}
    else:
        file_checks = {"status": "checked"}
        warnings += [] if checks is None else checks.result()
    return {
        "status": "started" if outcome.by == "start" else "reloaded",
        "changed": outcome.changed,
        "config_hash": {"before": outcome.before, "after": outcome.after},
        "warnings": [_warning(w) for w in warnings + _looked(outcome)],
        "file_checks": file_checks,
        "open_incidents": _look_status(outcome),
    }


def _looked(outcome: Reloaded) -> list[ReloadWarning]:
    look = outcome.look
    return [] if look is None or not look.done() else list(look.result().warnings)


def _look_status(outcome: Reloaded) -> dict[str, str]:
    look = outcome.look
    if look is None:
        if not outcome.changed and outcome.by == "reload":
            return {"status": "unchanged", "message": "the file is the running config:"
                    " nothing was swapped in, and the open incidents were not looked at"
                    " again"}
        return {"status": "failed", "message": "the open incidents were not looked at"}
    if not look.done():
        if outcome.behind is not None:
            begun = ("begun by an earlier reload, was still running at this one"
                     if outcome.behind_by == "reload"
                     else "begun when ackd started, was still running at this reload")
            return {"status": "running", "message": (
                f"the look under config hash {outcome.behind[:12]}, {begun}: the look under"
                " this config follows it; " + LATER)}
        return {"status": "running", "message": "still looking at the open incidents: " + LATER}
    looked = look.result()
    status = looked.status
    if status == "skipped":
        return {"status": "skipped", "message": looked.why}
    if status == "failed":
        return {"status": "failed", "message": "cannot look at the open incidents, see the log"}
    if status == "superseded":
        return {"status": "superseded", "message": (
            "a later reload swapped in another config before this look ended: what it found"
            " is not given; GET /-/reload gives the running config's")}
    if not outcome.changed and outcome.by == "reload":
        began = {"start": "when ackd started with it",
                 "reload": "when the reload that swapped it in began it",
                 "unchanged": ("when a reload of it began it, the start having skipped its"
                               " look (more open incidents than it looks at)")}
        return {"status": "checked", "message": (
            "the file is the running config: nothing was swapped in; what the look at the"
            f" open incidents found {began[outcome.look_by]} is in `warnings`")}
    return {"status": "checked"}


def _warning(warning: ReloadWarning) -> dict[str, Any]:
    answer: dict[str, Any] = {"file": warning.file, "line": warning.line, "key": warning.key,
                              "message": warning.message, "kind": warning.kind}
    if warning.incidents:
        answer["incidents"] = list(warning.incidents[:LISTED])
        answer["incident_count"] = len(warning.incidents)
    return answer
