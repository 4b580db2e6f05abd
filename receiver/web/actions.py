"""People acting on incidents: the API (ack, resolve, snooze, unack) and signed one-click links.

A link's GET only shows a confirmation page with a button; only the POST acts. Chat tools and
mail scanners fetch links to preview them, and a preview must never acknowledge an incident.
"""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from receiver.core.access import Scope
from receiver.core.durations import format_duration, parse_duration
from receiver.core.errors import AckdError, LinkError, PayloadError
from receiver.core.inputs import parse_json
from receiver.core.model import Action
from receiver.notify.links import OPEN, LinkClaim
from receiver.web.access import authorise
from receiver.web.api import error_response, incident_id
from receiver.web.responses import error, incident_json, ok
from receiver.web.services import Services, services
from receiver.web.ui.pages import open_link

LINK_VIA = "link"  # an action's timeline event: {"via": "link"}
# A link's token is a credential in its path: no cache may keep the page, and no page it
# leads to may learn the URL from a Referer header.
LINK_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def act(request: web.Request) -> web.Response:
    """POST /api/v1/incidents/{id}/{action}; snooze takes {"until": ISO} or {"for": "30m"}."""
    s = services(request)
    actor = authorise(request, Scope.RESPOND)
    name = request.match_info["action"]
    if name not in Action.__members__.values() or s.responder is None:
        return error(404, f"unknown action {name!r}; one of {', '.join(Action)}", "action")
    action = Action(name)
    try:
        number = incident_id(request)
        body = await _action_body(request, SNOOZE_FIELDS if action is Action.SNOOZE else ())
        until = _snooze_until(body, s) if action is Action.SNOOZE else None
        incident = await s.responder.act(number, action, actor.name, until)
    except AckdError as exc:
        return error_response(exc)
    return ok(incident_json(incident))


SNOOZE_FIELDS = ("for", "until")
# A week: a snooze stops escalation and the reack, so one longer than the quiet anybody means
# (a weekend, a holiday) is a mistake that silences a firing incident for good.
MAX_SNOOZE = timedelta(days=7)


async def _action_body(request: web.Request, known: tuple[str, ...]) -> dict[str, Any]:
    """The body as a JSON object (none is {}), refusing a field the action does not read."""
    try:
        body = parse_json((await request.read() or b"{}").decode("utf-8"))
    except UnicodeDecodeError:
        raise PayloadError("body", "not valid UTF-8") from None
    if not isinstance(body, dict):
        raise PayloadError("body", "must be a JSON object")
    unknown = sorted(set(body) - set(known))
    if unknown:
        takes = f"known: {', '.join(known)}" if known else "this action takes no fields"
        raise PayloadError(unknown[0], f"unknown field; {takes}")
    return body


def _snooze_until(body: dict[str, Any], s: Services) -> datetime:
    if "for" in body and "until" in body:
        raise PayloadError("until", "give `for` or `until`, not both")
    now = s.clock.now()
    if "for" in body:
        return _within_limit("for", _snooze_for(_text(body, "for", "a duration such as 30m"),
                                                now), now)
    if "until" in body:
        until = _snooze_to(_text(body, "until", "an ISO 8601 time with a zone"))
        if until <= now:
            raise PayloadError("until", "is already past")
        return _within_limit("until", until, now)
    raise PayloadError("for", "give `for` (a duration such as 30m) or `until` (an ISO time)")


def _within_limit(key: str, until: datetime, now: datetime) -> datetime:
    """A snooze ends within MAX_SNOOZE: it stops escalation and the reack, so `5000w` (a slip
    of the keyboard) silenced a firing incident for good."""
    if until - now > MAX_SNOOZE:
        raise PayloadError(key, f"at most {format_duration(MAX_SNOOZE)} ahead: a longer quiet "
                                "belongs in an Alertmanager silence or a maintenance window")
    return until


def _text(body: dict[str, Any], key: str, what: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise PayloadError(key, f"must be a string: {what}, not {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


def _snooze_for(text: str, now: datetime) -> datetime:
    try:
        length = parse_duration(text)
    except ValueError as exc:
        raise PayloadError("for", str(exc)) from None
    if length <= timedelta(0):
        raise PayloadError("for", "must be longer than 0s")
    try:
        return now + length
    except OverflowError:
        raise PayloadError("for", "ends after the year 9999") from None


def _snooze_to(text: str) -> datetime:
    try:
        until = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError("until", "must be an ISO 8601 time with a zone") from None
    if until.tzinfo is None:
        raise PayloadError("until", "must carry a time zone (Z or an offset)")
    try:
        return until.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00:00-14:00 is in the year 10000 in UTC
        raise PayloadError("until", "is after the year 9999 once in UTC") from None


# -- signed links ---------------------------------------------------------------------------


def add_link_routes(router: web.UrlDispatcher) -> None:
    """The signed links' routes. Every answer under /l/ carries LINK_HEADERS: the pages, their
    errors, and what the router would answer itself (404, 405) for a path or a method no link
    route takes, since its URL holds the token too. Routes, not a middleware: a middleware
    runs, with aiohttp's own one for the current app, around every request, and cost each
    webhook 20,000 instructions (1.2% of its loop's over HTTP) for the links' sake."""
    router.add_get("/l/{token}", _private(link_page))
    router.add_post("/l/{token}", _private(link_action))
    # Any other method on a link: the router's 405. Added last to the same resource, so GET,
    # HEAD and POST match first.
    router.add_route("*", "/l/{token}", _method_not_allowed)
    # Whatever else `request.path` puts under /l or /l/ (`path_safe`, which the router
    # matches, keeps an encoded slash encoded): the router's 404. Indexed under "/", so it is
    # tried after every route under /l.
    router.add_route("*", "/l{rest:(/|%2[Ff]).*|}", _not_found)


def _private(handler: Handler) -> Handler:
    async def private(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(LINK_HEADERS)
            raise
        response.headers.update(LINK_HEADERS)
        return response

    return private


async def _method_not_allowed(request: web.Request) -> web.StreamResponse:
    resource = request.match_info.route.resource
    assert resource is not None
    allowed = {route.method for route in resource if route.method != "*"}
    raise web.HTTPMethodNotAllowed(request.method, allowed, headers=LINK_HEADERS)


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound(headers=LINK_HEADERS)


def _claim(request: web.Request, s: Services) -> LinkClaim | web.Response:
    if s.links is None or s.responder is None:
        return error(404, "links are not enabled", "token")
    try:
        return s.links.verify(request.match_info["token"], s.clock.now())
    except LinkError as exc:
        return _page(403, "Link not accepted", str(exc))


async def link_page(request: web.Request) -> web.Response:
    """GET /l/{token}: say what the link will do and offer the button that does it."""
    s = services(request)
    claim = _claim(request, s)
    if isinstance(claim, web.Response):
        return claim
    if claim.action == OPEN:
        return open_link(request, claim)
    try:
        incident = await s.store.incident(claim.incident_id)
    except AckdError as exc:
        return error_response(exc)
    verb = Action(claim.action).verb.capitalize()
    text = (
        f"{html.escape(incident.severity)} #{incident.id} {html.escape(incident.team)}: "
        f"{html.escape(incident.summary)}<br>State: {html.escape(incident.state.value)}"
    )
    form = (
        f'<form method="post"><button type="submit" style="font-size:1.5em">{verb} '
        f"incident #{incident.id}</button></form>"
    )
    return _page(200, f"{verb} incident #{incident.id}?", text + form, raw=True)


async def link_action(request: web.Request) -> web.Response:
    """POST /l/{token}: act as the person the link was sent to."""
    s = services(request)
    claim = _claim(request, s)
    if isinstance(claim, web.Response):
        return claim
    assert s.responder is not None
    if claim.action == OPEN:  # opening the page acts on nothing: show the page instead
        raise web.HTTPSeeOther(request.path)
    action = Action(claim.action)
    try:
        # The person acts, as with their own token: every check of who acknowledged (the
        # status cadence, the stale notice, a follow-up) looks for their name. The timeline
        # event says it came through the link.
        incident = await s.responder.act(
            claim.incident_id, action, claim.recipient, None, via=LINK_VIA
        )
    except AckdError as exc:
        response = error_response(exc)
        detail = json.loads(response.text or "{}").get("error", "")
        return _page(response.status, "Nothing changed", html.escape(detail), raw=True)
    done = action.done
    return _page(200, f"Incident #{incident.id} {done}", f"Thank you, {claim.recipient}.")


def _page(status: int, title: str, text: str, *, raw: bool = False) -> web.Response:
    body = text if raw else html.escape(text)
    document = (
        "<!doctype html><html><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body style=\"font-family:sans-serif\">"
        f"<h1>{html.escape(title)}</h1><p>{body}</p></body></html>"
    )
    return web.Response(status=status, text=document, content_type="text/html")
