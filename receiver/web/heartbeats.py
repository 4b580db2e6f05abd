"""The heartbeats API: list them, and the endpoint a cron job posts to (receiver/heartbeats/)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from receiver.core.access import Scope
from receiver.core.errors import StoreUnavailable
from receiver.heartbeats.service import Heartbeats, Status
from receiver.web.access import authorise
from receiver.web.responses import error, ok
from receiver.web.services import Services, services


def status_json(status: Status) -> dict[str, Any]:
    h = status.heartbeat
    return {
        "name": h.name,
        "every": h.every.total_seconds(),
        "team": h.team,
        "severity": h.severity,
        "policy": h.policy,
        "matchers": [str(m) for m in h.matchers],
        "last_arrival": status.last_arrival,
        "due": status.due,
        "state": status.state.value,
        "incident": status.incident,
    }


def _heartbeats(s: Services) -> Heartbeats:
    assert s.heartbeats is not None, "app/daemon.py builds the heartbeats with the routes"
    return s.heartbeats


async def list_heartbeats(request: web.Request) -> web.Response:
    s = services(request)
    authorise(request, Scope.READ)
    try:
        found = await _heartbeats(s).statuses()
    except StoreUnavailable as exc:
        return error(503, str(exc))
    return ok({"heartbeats": [status_json(h) for h in found]})


async def heartbeat_arrived(request: web.Request) -> web.Response:
    """A heartbeat from a job: 200 once its arrival is committed, 404 naming a heartbeat the
    config does not have. The body, if any, is not read: `curl -X POST` is enough."""
    s = services(request)
    authorise(request, Scope.HEARTBEAT)  # a token of that scope (a cron job's), or admin
    name = request.match_info["name"]
    try:
        taken = await _heartbeats(s).arrived([name])
    except StoreUnavailable as exc:
        return error(503, str(exc))
    if not taken:
        known = ", ".join(h.name for h in s.config.heartbeats) or "none configured"
        return error(404, f"no heartbeat named {name!r} (known: {known})", "name")
    return ok({"heartbeat": name, "status": "arrived"})
