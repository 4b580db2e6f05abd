"""The incidents API's reads: incidents and their timelines (acting on them is actions.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from receiver.core.access import Scope
from receiver.core.errors import (
    AckdError,
    Forbidden,
    InvalidTransition,
    NotFound,
    PayloadError,
    StoreUnavailable,
)
from receiver.core.inputs import MAX_INTEGER, whole_number
from receiver.core.model import IncidentState
from receiver.store import IncidentFilter
from receiver.web.access import authorise
from receiver.web.responses import (
    alert_json,
    error,
    escalation_json,
    event_json,
    incident_json,
    ok,
    roles_json,
)
from receiver.web.services import services

MAX_LIMIT = 1000


def _filter(request: web.Request) -> IncidentFilter:
    q = request.query
    state: IncidentState | None = None
    open_only = False
    if "state" in q:
        if q["state"] == "open":
            open_only = True
        else:
            try:
                state = IncidentState(q["state"])
            except ValueError:
                allowed = ", ".join(["open", *(s.value for s in IncidentState)])
                raise PayloadError("state", f"must be one of {allowed}") from None
    return IncidentFilter(
        state=state,
        open_only=open_only,
        team=_text_param(q.get("team"), "team"),
        severity=_text_param(q.get("severity"), "severity"),
        limit=_int_param(q.get("limit"), "limit", 100, 1, MAX_LIMIT),
        before_id=_int_param(q.get("before"), "before", None, 1, None),
    )


def _text_param(raw: str | None, name: str) -> str | None:
    """A filter's text. No team or severity holds NUL (the config's names cannot), and
    PostgreSQL's text refuses one: refused here alike on both stores."""
    if raw is not None and "\x00" in raw:
        raise PayloadError(name, "must not hold NUL (%00)")
    return raw


def _int_param(
    raw: str | None, name: str, default: int | None, low: int, high: int | None
) -> Any:
    if raw is None:
        return default
    return whole_number(raw, name, low, MAX_INTEGER if high is None else high)


def incident_id(request: web.Request) -> int:
    return whole_number(request.match_info["id"], "id")


async def list_incidents(request: web.Request) -> web.Response:
    s = services(request)
    authorise(request, Scope.READ)
    try:
        found = await s.store.incidents(_filter(request))
    except AckdError as exc:
        return error_response(exc)
    return ok({"incidents": [incident_json(i) for i in found]})


async def get_incident(request: web.Request) -> web.Response:
    s = services(request)
    authorise(request, Scope.READ)
    try:
        number = incident_id(request)
        incident = await s.store.incident(number)
        alerts = await s.store.alerts(number)
        timeline = await s.store.timeline(number)
        held = await s.desk.roles(number) if s.desk is not None else {}
    except AckdError as exc:
        return error_response(exc)
    body = incident_json(incident)
    body["roles"] = roles_json(held)
    body["alerts"] = [alert_json(a) for a in alerts]
    body["timeline"] = [event_json(e) for e in timeline]
    body["escalation"] = escalation_json(incident, timeline)
    return ok(body)


def error_response(exc: AckdError) -> web.Response:
    """The response for a request that one of our errors stopped; any other one is a bug and
    propagates (aiohttp answers 500 and logs it)."""
    if isinstance(exc, PayloadError):
        return error(400, exc.message, exc.field)
    if isinstance(exc, Forbidden):
        return error(403, exc.message, "Authorization", scope=exc.scope)
    if isinstance(exc, NotFound):
        return error(404, str(exc), "id")
    if isinstance(exc, InvalidTransition):
        return error(409, str(exc), "state")
    if isinstance(exc, StoreUnavailable):
        return error(503, str(exc))
    raise exc
