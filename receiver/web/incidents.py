"""The incident layer's API: declaring incidents, roles and notes.

    POST   /api/v1/incidents                     {"team", "severity", "summary", "source"?}
    PUT    /api/v1/incidents/{id}/roles/{role}   {"user": "ana"}: assign or hand over
    DELETE /api/v1/incidents/{id}/roles/{role}   nobody holds the role any more
    POST   /api/v1/incidents/{id}/notes          {"text": "..."}: a note or status update
    POST   /api/v1/incidents/{id}/reassign       {"team": T} or {"user": U}
    POST   /api/v1/incidents/{id}/responders     {"user": U}: page them in
    PUT    /api/v1/incidents/{id}/severity       {"severity": S}

Roles: commander, tech_lead, comms_lead, scribe. Every change needs the `respond` scope and
is recorded on the timeline as the principal acting.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from receiver.core.access import Scope
from receiver.core.errors import AckdError, PayloadError
from receiver.core.inputs import parse_json
from receiver.incidents import assignment, declare, notes
from receiver.incidents.desk import IncidentDesk
from receiver.incidents.roles import UnknownRole, parse_role
from receiver.web.access import authorise
from receiver.web.api import error_response, incident_id
from receiver.web.responses import error, event_json, incident_json, ok, roles_json
from receiver.web.services import Services, services


async def json_body(request: web.Request) -> Any:
    """The request's JSON body; PayloadError("body", ...) when it is not JSON text."""
    try:
        return parse_json((await request.read() or b"{}").decode("utf-8"))
    except UnicodeDecodeError:
        raise PayloadError("body", "not valid UTF-8") from None


def _desk(s: Services) -> IncidentDesk:
    if s.desk is None:
        raise web.HTTPNotFound()
    return s.desk


def _user(body: Any) -> str:
    if not isinstance(body, dict):
        raise PayloadError("body", "must be a JSON object with a user field")
    unknown = sorted(set(body) - {"user"})
    if unknown:
        raise PayloadError(unknown[0], "unknown field; known: user")
    user = body.get("user")
    if not isinstance(user, str) or not user:
        raise PayloadError("user", "must be a user's name")
    return user


async def declare_incident(request: web.Request) -> web.Response:
    """POST /api/v1/incidents: 201 with the incident, paging as any other does."""
    s = services(request)
    actor = authorise(request, Scope.RESPOND)
    try:
        declaration = declare.parse(await json_body(request), s.config)
        incident = await _desk(s).declare(declaration, actor.name)
    except AckdError as exc:
        return _refused(exc)
    return ok(incident_json(incident), 201)


async def assign_role(request: web.Request) -> web.Response:
    """PUT /api/v1/incidents/{id}/roles/{role}: 200 with every role held now."""
    s = services(request)
    actor = authorise(request, Scope.RESPOND)
    try:
        number = incident_id(request)
        role = parse_role(request.match_info["role"])
        user = _user(await json_body(request))
        held = await _desk(s).assign(number, role, user, actor.name)
    except AckdError as exc:
        return _refused(exc)
    return ok({"id": number, "roles": roles_json(held)})


async def clear_role(request: web.Request) -> web.Response:
    """DELETE /api/v1/incidents/{id}/roles/{role}: 200 with every role held now."""
    s = services(request)
    actor = authorise(request, Scope.RESPOND)
    try:
        number = incident_id(request)
        role = parse_role(request.match_info["role"])
        held = await _desk(s).clear(number, role, actor.name)
    except AckdError as exc:
        return _refused(exc)
    return ok({"id": number, "roles": roles_json(held)})


async def post_note(request: web.Request) -> web.Response:
    """POST /api/v1/incidents/{id}/notes: 201 with the timeline event written."""
    s = services(request)
    actor = authorise(request, Scope.RESPOND)
    try:
        number = incident_id(request)
        text = notes.note_text(await json_body(request))
        event = await _desk(s).note(number, text, actor.name)
    except AckdError as exc:
        return _refused(exc)
    return ok(event_json(event), 201)


async def reassign(request: web.Request) -> web.Response:
    """POST /api/v1/incidents/{id}/reassign: 200 with the incident, escalating anew."""
    s = services(request)
    actor = authorise(request, Scope.RESPOND)
    try:
        number = incident_id(request)
        to = assignment.parse_reassignment(await json_body(request), s.config)
        incident = await _desk(s).reassign(number, to, actor.name)
    except AckdError as exc:
        return _refused(exc)
    return ok(incident_json(incident))


async def add_responder(request: web.Request) -> web.Response:
    """POST /api/v1/incidents/{id}/responders: 200 with the incident (its owner unchanged)."""
    s = services(request)
    actor = authorise(request, Scope.RESPOND)
    try:
        number = incident_id(request)
        user = assignment.parse_responder(await json_body(request), s.config)
        incident = await _desk(s).add_responder(number, user, actor.name)
    except AckdError as exc:
        return _refused(exc)
    return ok(incident_json(incident))


async def change_severity(request: web.Request) -> web.Response:
    """PUT /api/v1/incidents/{id}/severity: 200 with the incident."""
    s = services(request)
    actor = authorise(request, Scope.RESPOND)
    try:
        number = incident_id(request)
        severity = assignment.parse_severity(await json_body(request), s.config)
        incident = await _desk(s).change_severity(number, severity, actor.name)
    except AckdError as exc:
        return _refused(exc)
    return ok(incident_json(incident))


def _refused(exc: AckdError) -> web.Response:
    if isinstance(exc, UnknownRole):
        return error(404, str(exc), "role")
    return error_response(exc)
