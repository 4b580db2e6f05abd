"""The on-call API: run-time overrides and swaps, who is on call, calendars.

    GET    /api/v1/schedules/{name}/overrides        the run-time overrides not yet ended
    POST   /api/v1/schedules/{name}/overrides        an override, a shift taken, or a swap
    DELETE /api/v1/schedules/{name}/overrides/{id}   (a swap's leg deletes the swap)
    GET    /api/v1/schedules/{name}/oncall?at=ISO    each layer: who, until when, decided by
    GET    /api/v1/teams/{name}/oncall?at=ISO        the same for the team's schedule, naming
                                                     it and its zone (`ackd oncall --url`)
    GET    /api/v1/schedules/{name}/gaps?weeks=N     each layer's first span with nobody on
                                                     call in the next N weeks (4), run-time
                                                     overrides included
    GET    /api/v1/schedules/{name}.ics?weeks=N      the shifts of the next N weeks (4)
    GET    /api/v1/users/{name}.ics?weeks=N          one person's shifts in every schedule
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from aiohttp import web

from receiver.core.errors import AckdError, Forbidden, NotFound, PayloadError
from receiver.core.inputs import parse_json, whole_number
from receiver.oncall.calendar import calendar
from receiver.oncall.overrides import Actor, Scope, overruled
from receiver.oncall.schedules import Schedule, first_gap
from receiver.oncall.service import OnCallService, override_json
from receiver.web.access import authorise
from receiver.web.api import error_response
from receiver.web.responses import error, ok
from receiver.web.services import Services, services

MAX_WEEKS = 52
GAP_WEEKS = 4  # as far as `ackd check-config` looks for holes
CALENDAR = "text/calendar"
_CALENDARS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ackd-calendar")


def actor(request: web.Request, s: Services) -> Actor:
    """Who is asking and every scope their token grants (reading needs `read`; what a change
    needs is decided by `overrides.refusal`). Without tokens configured, anyone on the listen
    address may read."""
    principal = authorise(request, Scope.READ)
    return Actor(principal.name, frozenset(x for x in Scope if principal.scope.grants(x)))


def on_call_service(s: Services) -> OnCallService:
    if s.oncall is None:
        raise NotFound("on-call changes are not served here")
    return s.oncall


def answer(exc: AckdError, missing: str = "schedule") -> web.Response:
    if isinstance(exc, Forbidden):
        return error(403, exc.message, "Authorization", scope=exc.scope)
    if isinstance(exc, NotFound):
        return error(404, str(exc), missing)
    return error_response(exc)


async def list_overrides(request: web.Request) -> web.Response:
    s = services(request)
    actor(request, s)  # reading needs the read scope
    name = request.match_info["name"]
    try:
        return ok({"schedule": name, "overrides": on_call_service(s).listing(name)})
    except AckdError as exc:
        return answer(exc)


async def create_override(request: web.Request) -> web.Response:
    s = services(request)
    who = actor(request, s)
    name = request.match_info["name"]
    try:
        oncall = on_call_service(s)
        planned = oncall.planned(name)  # an unknown schedule is a 404 before the body is read
        made = await oncall.create(name, await _body(request), who)
    except AckdError as exc:
        return answer(exc)
    gaps = await _gaps(oncall.laid(name), s.clock.now(), s)
    return ok({"overrides": [override_json(o, overruled(planned, o.leg)) for o in made],
               "gaps": gaps}, 201)


async def delete_override(request: web.Request) -> web.Response:
    s = services(request)
    who = actor(request, s)
    name = request.match_info["name"]
    try:
        override_id = whole_number(request.match_info["id"], "id", 1)
        gone = await on_call_service(s).delete(name, override_id, who)
        laid = on_call_service(s).laid(name)
    except NotFound as exc:
        return answer(exc, "id" if "override" in str(exc) else "schedule")
    except AckdError as exc:
        return answer(exc)
    return ok({"deleted": [o.id for o in gone], "gaps": await _gaps(laid, s.clock.now(), s)})


async def coverage_gaps(request: web.Request) -> web.Response:
    s = services(request)
    actor(request, s)  # reading needs the read scope
    name = request.match_info["name"]
    try:
        since, until = window(request, s)
        laid = on_call_service(s).laid(name)
    except AckdError as exc:
        return answer(exc)
    return ok({"schedule": name, "since": since, "until": until,
               "gaps": await _gaps(laid, since, s, until)})


async def _gaps(
    laid: Schedule, since: datetime, s: Services, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Each layer's first span with nobody on call between `since` and `until` (4 weeks on),
    on the schedule with its run-time overrides laid over: an override that fills a hole
    clears it, one that takes away the only person opens one. On the calendars' thread:
    walking an hourly rotation's weeks is work the loop should not do."""
    end = until or since + timedelta(weeks=GAP_WEEKS)
    found = await asyncio.get_running_loop().run_in_executor(
        _CALENDARS, partial(_first_gaps, laid, since, end))
    return [{"layer": layer, "from": start, "until": stop} for layer, start, stop in found]


def _first_gaps(laid: Schedule, since: datetime, until: datetime
                ) -> list[tuple[str, datetime, datetime | None]]:
    return [(layer.name, *gap) for layer in laid.layers
            if (gap := first_gap(laid, layer.name, since, until)) is not None]


async def who_is_on_call(request: web.Request) -> web.Response:
    s = services(request)
    actor(request, s)  # reading needs the read scope
    name = request.match_info["name"]
    try:
        at = _at(request.query.get("at"), s.clock.now())
        layers = on_call_service(s).who(name, at)
    except OverflowError:
        return _too_near_the_end()
    except AckdError as exc:
        return answer(exc)
    return ok({"schedule": name, "at": at, "layers": layers})


async def team_on_call(request: web.Request) -> web.Response:
    """Who is on call for a team: its schedule's answer, with the schedule's name and zone,
    so a client without the config file (`ackd oncall TEAM --url`) can say it all."""
    s = services(request)
    actor(request, s)  # reading needs the read scope
    name = request.match_info["name"]
    team = s.config.teams.get(name)
    if team is None:
        return error(404, f"unknown team {name!r}; teams: {', '.join(s.config.teams)}", "team")
    if team.schedule is None:
        return error(404, f"team {name!r} has no on-call schedule", "team")
    try:
        at = _at(request.query.get("at"), s.clock.now())
        layers = on_call_service(s).who(team.schedule, at)
    except OverflowError:
        return _too_near_the_end()
    except AckdError as exc:
        return answer(exc)
    tz = s.config.schedules[team.schedule].tz.key
    return ok({"team": name, "schedule": team.schedule, "tz": tz, "at": at, "layers": layers})


def _too_near_the_end() -> web.Response:
    # The answer says until when each layer holds, in the schedule's zone: near the end of
    # year 9999 that passes the calendar's last day.
    return answer(PayloadError(
        "at", "is too near the year 9999 to say who is on call and until when"))


async def schedule_calendar(request: web.Request) -> web.Response:
    s = services(request)
    actor(request, s)  # reading needs the read scope
    name = request.match_info["name"]
    try:
        since, until = window(request, s)
        laid = on_call_service(s).laid(name)
    except AckdError as exc:
        return answer(exc)
    return await calendar_response(f"on call: {name}", [laid], since, until, s)


async def user_calendar(request: web.Request) -> web.Response:
    s = services(request)
    actor(request, s)  # reading needs the read scope
    name = request.match_info["name"]
    if name not in s.config.users:
        return error(404, f"unknown user {name!r}", "user")
    try:
        since, until = window(request, s)
        oncall = on_call_service(s)
        laid = [oncall.laid(schedule) for schedule in s.config.schedules]
    except AckdError as exc:
        return answer(exc)
    return await calendar_response(f"on call: {name}", laid, since, until, s, name)


async def calendar_response(
    title: str, laid: list[Schedule], since: datetime, until: datetime, s: Services,
    user: str | None = None,
) -> web.Response:
    # Hundreds of milliseconds to seconds of work: on a thread of its own, one calendar at a
    # time, so webhooks keep their turns on the loop and calendars queue.
    body = await asyncio.get_running_loop().run_in_executor(
        _CALENDARS, partial(calendar, title, laid, since, until, s.clock.now(), user))
    return web.Response(body=body, content_type=CALENDAR, charset="utf-8")


def window(request: web.Request, s: Services) -> tuple[datetime, datetime]:
    raw = request.query.get("weeks")
    weeks = 4 if raw is None else whole_number(raw, "weeks", 1, MAX_WEEKS)
    now = s.clock.now()
    return now, now + timedelta(weeks=weeks)


def _at(raw: str | None, now: datetime) -> datetime:
    if raw is None:
        return now
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise PayloadError("at", f"not an ISO 8601 time: {raw[:64]!r}") from None
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00:00-14:00 is in the year 10000 in UTC
        raise PayloadError("at", "is after the year 9999 once in UTC") from None


async def _body(request: web.Request) -> object:
    try:
        return parse_json((await request.read() or b"{}").decode("utf-8"))
    except UnicodeDecodeError:
        raise PayloadError("body", "not valid UTF-8") from None
