"""The maintenance API: POST, GET and DELETE /api/v1/maintenance (receiver/maintenance/)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from receiver.alertmanager.matchers import MatcherError, parse_matcher
from receiver.core.access import Scope
from receiver.core.durations import parse_duration
from receiver.core.errors import AckdError, PayloadError
from receiver.core.inputs import parse_json, whole_number
from receiver.maintenance import domain
from receiver.maintenance.domain import Window
from receiver.maintenance.service import Maintenance
from receiver.web.access import authorise
from receiver.web.api import error_response
from receiver.web.responses import error, ok
from receiver.web.services import Services, services

KEYS = frozenset({"team", "matchers", "start", "end", "for", "comment"})


def window_json(window: Window, now: datetime) -> dict[str, Any]:
    return {
        "id": window.id,
        "name": window.name,
        "source": "api" if window.id is not None else "config",
        "team": window.team,
        "matchers": [str(m) for m in window.matchers],
        "start": window.starts_at,
        "end": window.ends_at,
        "active": window.active(now),
        "comment": window.comment,
        "created_by": window.created_by,
    }


def _maintenance(s: Services) -> Maintenance:
    assert s.maintenance is not None, "app/daemon.py builds the maintenance windows with the routes"
    return s.maintenance


async def list_windows(request: web.Request) -> web.Response:
    s = services(request)
    authorise(request, Scope.READ)
    now = s.clock.now()
    found = domain.current(_maintenance(s).windows(), now)
    return ok({"windows": [window_json(w, now) for w in found]})


async def add_window(request: web.Request) -> web.Response:
    """201 with the window; 400 naming the field that is wrong. Scope respond: whoever may
    act on incidents may hold their pages for planned work."""
    s = services(request)
    actor = authorise(request, Scope.RESPOND)
    try:
        window = _window(await _body(request), s, actor.name)
        added = await _maintenance(s).add(window)
    except AckdError as exc:
        return error_response(exc)
    return ok(window_json(added, s.clock.now()), status=201)


async def delete_window(request: web.Request) -> web.Response:
    s = services(request)
    authorise(request, Scope.RESPOND)
    try:
        number = whole_number(request.match_info["id"], "id")
        found = await _maintenance(s).delete(number)
    except AckdError as exc:
        return error_response(exc)
    if found is None:
        return error(404, f"no maintenance window #{number} made through the API", "id")
    return ok({"deleted": number})


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = parse_json((await request.read() or b"{}").decode("utf-8"))
    except UnicodeDecodeError:
        raise PayloadError("body", "not valid UTF-8") from None
    if not isinstance(body, dict):
        raise PayloadError("body", "must be a JSON object")
    unknown = sorted(set(body) - KEYS)
    if unknown:
        raise PayloadError(unknown[0], f"unknown key; the keys are {', '.join(sorted(KEYS))}")
    return body


def _window(body: dict[str, Any], s: Services, actor: str) -> Window:
    now = s.clock.now()
    team = body.get("team")
    if team is not None and (not isinstance(team, str) or team not in s.config.teams):
        known = ", ".join(s.config.teams)
        raise PayloadError("team", f"unknown team {team!r} (known: {known})")
    matchers = body.get("matchers", [])
    if not isinstance(matchers, list) or not all(isinstance(m, str) for m in matchers):
        raise PayloadError("matchers", 'must be a list of matchers such as "cluster=\\"eu1\\""')
    parsed = []
    for i, text in enumerate(matchers):
        try:
            parsed.append(parse_matcher(text))
        except MatcherError as exc:
            raise PayloadError(f"matchers[{i}]", str(exc)) from None
    if team is None and not parsed:
        raise PayloadError("team", "a window needs a team, matchers, or both")
    start = _time(body["start"], "start") if "start" in body else now
    end = _end(body, start)
    if end <= now:
        raise PayloadError("end", "is already past")
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        raise PayloadError("comment", "must be a string")
    return Window(start, end, team, tuple(parsed), comment[:1000], actor)


def _end(body: dict[str, Any], start: datetime) -> datetime:
    if ("end" in body) == ("for" in body):
        raise PayloadError("end", "give `end` (an ISO time) or `for` (a duration such as 2h)")
    if "end" in body:
        end = _time(body["end"], "end")
    else:
        try:
            length = parse_duration(str(body["for"]))
            end = start + length
        except ValueError as exc:
            raise PayloadError("for", str(exc)) from None
        except OverflowError:
            raise PayloadError("for", "ends after the year 9999") from None
    if end <= start:
        raise PayloadError("end", "must be after start")
    if end - start > timedelta(days=366):
        raise PayloadError("end", "a window lasts at most a year")
    return end


def _time(raw: Any, key: str) -> datetime:
    try:
        at = datetime.fromisoformat(str(raw))
    except ValueError:
        raise PayloadError(key, "must be an ISO 8601 time with a zone") from None
    if at.tzinfo is None:
        raise PayloadError(key, "must carry a time zone (Z or an offset)")
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise PayloadError(key, "is after the year 9999 once in UTC") from None
