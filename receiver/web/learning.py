"""Learning from incidents over HTTP: post-mortem drafts, reports and drills."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from receiver.core.access import Scope
from receiver.core.durations import parse_duration
from receiver.core.errors import AckdError, PayloadError
from receiver.core.inputs import parse_json
from receiver.incidents import drills, facts, postmortem, reports
from receiver.web.access import authorise
from receiver.web.api import error_response, incident_id
from receiver.web.responses import error, ok
from receiver.web.services import Services, services

DEFAULT_SINCE = "30d"
DRILL_FIELDS = frozenset({"team", "severity"})


async def get_postmortem(request: web.Request) -> web.Response:
    """GET /api/v1/incidents/{id}/postmortem: the draft, as Markdown."""
    s = services(request)
    authorise(request, Scope.READ)
    try:
        text = await draft(s, incident_id(request))
    except AckdError as exc:
        return error_response(exc)
    return web.Response(text=text, content_type="text/markdown", charset="utf-8")


async def draft(s: Services, number: int) -> str:
    incident = await s.store.incident(number)
    return postmortem.draft(
        incident, await s.store.alerts(number), await s.store.timeline(number),
        await s.store.earlier_incidents(number), s.clock.now(),
    )


async def get_report(request: web.Request) -> web.Response:
    """GET /api/v1/reports?since=30d: the figures of the incidents opened since then."""
    s = services(request)
    authorise(request, Scope.READ)
    try:
        report = await build_report(s, since_param(request.query.get("since", DEFAULT_SINCE)))
    except AckdError as exc:
        return error_response(exc)
    return ok(reports.to_json(report))


def since_param(text: str) -> timedelta:
    try:
        length = parse_duration(text)
    except ValueError as exc:
        raise PayloadError("since", str(exc)) from None
    if length <= timedelta(0):
        raise PayloadError("since", "must be longer than 0s")
    return length


async def build_report(s: Services, length: timedelta) -> reports.Report:
    now = s.clock.now()
    since = _start(now, length)
    history = await s.store.history(_start(since, reports.REPEAT_WINDOW))
    return reports.build(
        [facts.read(*record) for record in history], since, now,
        is_drill=facts.is_drill, is_reported=facts.is_reported,
        severity_order=[sev.name for sev in s.config.severities],
    )


def _start(now: datetime, length: timedelta) -> datetime:
    try:
        return now - length
    except OverflowError:
        return datetime.min.replace(tzinfo=now.tzinfo)


async def post_drill(request: web.Request) -> web.Response:
    """POST /api/v1/drills {"team": T, "severity"?: S}: start a drill; 201 with its report."""
    s = services(request)
    # Drills page real people at any hour, for any team: the admin scope.
    actor = authorise(request, Scope.ADMIN).name
    if s.responder is None:
        return error(503, "ackd is not serving incidents", "team")
    try:
        body = await _object(request)
        unknown = sorted(set(body) - DRILL_FIELDS)
        if unknown:
            raise PayloadError(unknown[0], "unknown field; known: severity, team")
        team = _text_field(body, "team")
        severity = _text_field(body, "severity") if "severity" in body else None
        incident = await drills.start(s.store, s.responder, s.config, team, severity, actor,
                                      s.clock.now())
        timeline = await s.store.timeline(incident.id)
    except AckdError as exc:
        return error_response(exc)
    return ok(drills.to_json(drills.report(incident, timeline)), status=201)


async def get_drill(request: web.Request) -> web.Response:
    """GET /api/v1/drills/{id}: who the drill reached, how, and how fast it was acknowledged."""
    s = services(request)
    authorise(request, Scope.READ)
    try:
        number = incident_id(request)
        incident = await s.store.incident(number)
        report = drills.report(incident, await s.store.timeline(number))
    except AckdError as exc:
        return error_response(exc)
    return ok(drills.to_json(report))


async def _object(request: web.Request) -> dict[str, Any]:
    try:
        body = parse_json((await request.read() or b"{}").decode("utf-8"))
    except UnicodeDecodeError:
        raise PayloadError("body", "not valid UTF-8") from None
    if not isinstance(body, dict):
        raise PayloadError("body", "must be a JSON object")
    return body


def _text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise PayloadError(name, "must be a non-empty string")
    return value
