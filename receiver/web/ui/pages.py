"""The web page: server-rendered HTML over the same services the API uses.

Reads need a session (or nothing, when no API token is configured, as for the API); every
form posts with the session's CSRF token. Whatever came from alerts reaches the HTML only
through Jinja2's autoescaping, and the Content-Security-Policy forbids every script, so a
label that slipped past escaping would still run nothing.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import jinja2
from aiohttp import web

from receiver.config.model import Config
from receiver.core.access import Principal
from receiver.core.errors import AckdError, InvalidTransition, NotFound, PayloadError
from receiver.core.inputs import whole_number
from receiver.core.model import Action
from receiver.incidents import declare, facts
from receiver.incidents.assignment import parse_reassignment, parse_responder, parse_severity
from receiver.incidents.desk import IncidentDesk
from receiver.incidents.notes import note_text
from receiver.incidents.roles import Role
from receiver.maintenance import domain as maintenance
from receiver.notify.links import LinkClaim
from receiver.store import IncidentFilter
from receiver.web import feeds, learning
from receiver.web.services import Services, services
from receiver.web.ui import views
from receiver.web.ui.session import COOKIE, LINK_SESSION, TOKEN_SESSION, Session, Sessions

LOGIN_COOKIE = "ackd_login"
# The responder's actions (core/model.Action) the page offers a button for: it snoozes and
# un-acknowledges nothing. The page's other forms go to the incident desk (_DESK_FORMS).
PAGE_ACTIONS = (Action.ACK, Action.RESOLVE)
OPEN_LIMIT = 200
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages carry CSRF tokens and incident data
}

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.globals.update(age=views.age, stamp=views.stamp, detail=views.event_detail,
                    seconds=views.seconds, share=views.share)


class Visitor:
    """Who is looking: a session, or nobody (allowed to read only when no token is set)."""

    def __init__(self, s: Services, session: Session | None, cookie: str) -> None:
        self.session = session
        self.csrf = _sessions(s).csrf(cookie) if session else ""

    @property
    def can_act(self) -> bool:
        return self.session is not None and self.session.scope in ("respond", "admin")


def _sessions(s: Services) -> Sessions:
    return Sessions(s.config.link_secret)


def _visitor(request: web.Request, s: Services) -> Visitor | None:
    """The visitor, or None when the page must ask for a token first."""
    cookie = request.cookies.get(COOKIE, "")
    session = _sessions(s).verify(cookie, s.clock.now()) if cookie else None
    if session is not None:
        session = _as_configured(session, s)
    if session is None and s.config.api_tokens:
        return None
    return Visitor(s, session, cookie)


def _as_configured(session: Session, s: Services) -> Session | None:
    """The session as the running config has it now: a reload may have removed the token or
    the user it was opened for (no session), or changed the token's scope (the session's
    follows: the cookie's scope is what it was at sign-in)."""
    if session.via == "link":
        return session if session.name in s.config.users else None
    scopes = [p.scope.value for p in s.config.api_tokens.values() if p.name == session.name]
    return replace(session, scope=scopes[0]) if scopes else None


def render(template: str, status: int = 200, **context: Any) -> web.Response:
    text = _ENV.get_template(template).render(**context)
    return web.Response(status=status, text=text, content_type="text/html", headers=HEADERS)


def _to_login(request: web.Request) -> NoReturn:
    raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}", headers=HEADERS)


async def index(request: web.Request) -> web.Response:
    """GET /: open incidents, with acknowledge and resolve, and who is on call now."""
    s = services(request)
    visitor = _visitor(request, s)
    if visitor is None:
        return _to_login(request)
    return await _index(s, visitor)


async def _index(s: Services, visitor: Visitor, status: int = 200, message: str = ""
                 ) -> web.Response:
    now = s.clock.now()
    try:
        incidents = await s.store.incidents(IncidentFilter(open_only=True, limit=OPEN_LIMIT))
        heartbeats = await s.heartbeats.statuses() if s.heartbeats is not None else []
    except AckdError as exc:
        return _problem(exc, visitor)
    windows = maintenance.current(s.maintenance.windows(), now) if s.maintenance else []
    oncall = _on_call_now(s, now)
    try:
        calendars = await _calendars(s, visitor, oncall)
    except AckdError as exc:
        return _problem(exc, visitor)
    return render("index.html", status, visitor=visitor, incidents=incidents, now=now,
                  oncall=oncall, calendars=calendars, limit=OPEN_LIMIT, message=message,
                  heartbeats=heartbeats, windows=windows,
                  teams=list(s.config.teams), severities=[sv.name for sv in s.config.severities],
                  sources=declare.SOURCES)


async def incident_page(request: web.Request) -> web.Response:
    """GET /incidents/{id}: the incident, its alerts, its timeline and a form for each action."""
    s = services(request)
    visitor = _visitor(request, s)
    if visitor is None:
        return _to_login(request)
    return await _incident(request, s, visitor)


async def _incident(
    request: web.Request, s: Services, visitor: Visitor, status: int = 200, message: str = ""
) -> web.Response:
    try:
        number = whole_number(request.match_info["id"], "id")
        incident = await s.store.incident(number)
        alerts = await s.store.alerts(number)
        timeline = await s.store.timeline(number)
    except AckdError as exc:
        return _problem(exc, visitor)
    held = await s.desk.roles(number) if s.desk is not None else {}
    return render("incident.html", status, visitor=visitor, incident=incident, alerts=alerts,
                  timeline=timeline, now=s.clock.now(), message=message,
                  exhausted=facts.exhausted(incident, timeline),
                  deferred=facts.deferred(incident, timeline),
                  # Where its time to resolve ends: the alerts' end when Alertmanager
                  # resolved it (up to a group_interval before its report came).
                  ended_at=(facts.problem_ended(incident.opened_at, incident.resolved_at,
                                                incident.resolved_by,
                                                (a.ends_at for a in alerts))
                            if incident.resolved_at is not None else None),
                  # Resolved while nobody held it: who first did, as the post-mortem says.
                  first_ack=(facts.first_acknowledgement(timeline)
                             if incident.resolved_unacknowledged else None),
                  roles=[(role, held.get(role)) for role in Role],
                  users=sorted(s.config.users), teams=list(s.config.teams),
                  severities=[sv.name for sv in s.config.severities])


async def incident_action(request: web.Request) -> web.Response:
    """POST /incidents/{id}/{action} from a form: act, then show the incident again."""
    s = services(request)
    visitor = _visitor(request, s)
    if visitor is None:
        return _to_login(request)
    form = await request.post()
    refused = _refuse_form(request, s, visitor, str(form.get("csrf", "")))
    if refused is not None:
        return refused
    assert visitor.session is not None
    assert s.responder is not None
    action = request.match_info["action"]
    if action not in WEB_ACTIONS:
        return render("problem.html", 404, visitor=visitor, title="No such action",
                      text=f"unknown action {action!r}; one of {', '.join(WEB_ACTIONS)}")
    try:
        number = whole_number(request.match_info["id"], "id")
        await _perform(s, number, action, form, visitor.session.actor)
    except InvalidTransition as exc:
        return await _incident(request, s, visitor, 409, str(exc))
    except PayloadError as exc:
        return await _incident(request, s, visitor, 400, f"{exc.field}: {exc.message}")
    except AckdError as exc:
        return _problem(exc, visitor)
    back = str(form.get("back", ""))
    raise web.HTTPSeeOther(back if _local(back) else f"/incidents/{number}", headers=HEADERS)


async def _perform(
    s: Services, number: int, action: str, form: Mapping[str, Any], actor: str
) -> None:
    """One form's action, through the same services as the API's."""
    if action in PAGE_ACTIONS:
        assert s.responder is not None
        await s.responder.act(number, Action(action), actor, None)
        return
    if s.desk is None:
        raise NotFound("roles and notes are not served here")
    await _DESK_FORMS[action](s.desk, s.config, number, _filled(form), actor)


def _filled(form: Mapping[str, Any]) -> dict[str, str]:
    """The form's fields that were filled in, as the API's JSON body would carry them."""
    return {key: str(value) for key, value in form.items() if key != "csrf" and str(value)}


async def _role(desk: IncidentDesk, config: Config, number: int, form: dict[str, str],
                actor: str) -> None:
    try:
        role = Role(form.get("role", ""))
    except ValueError:
        raise PayloadError("role", f"one of {', '.join(r.value for r in Role)}") from None
    if "user" in form:
        await desk.assign(number, role, form["user"], actor)
    else:
        await desk.clear(number, role, actor)


async def _note(desk: IncidentDesk, config: Config, number: int, form: dict[str, str],
                actor: str) -> None:
    await desk.note(number, note_text({"text": form.get("text", "")}), actor)


async def _reassign(desk: IncidentDesk, config: Config, number: int, form: dict[str, str],
                    actor: str) -> None:
    wanted = {k: v for k, v in form.items() if k in ("team", "user")}
    await desk.reassign(number, parse_reassignment(wanted, config), actor)


async def _responder(desk: IncidentDesk, config: Config, number: int, form: dict[str, str],
                     actor: str) -> None:
    await desk.add_responder(number, parse_responder({"user": form.get("user", "")}, config),
                             actor)


async def _severity(desk: IncidentDesk, config: Config, number: int, form: dict[str, str],
                    actor: str) -> None:
    wanted = {"severity": form.get("severity", "")}
    await desk.change_severity(number, parse_severity(wanted, config), actor)


_DESK_FORMS: dict[str, Callable[[IncidentDesk, Config, int, dict[str, str], str],
                                Awaitable[None]]] = {
    "role": _role, "note": _note, "reassign": _reassign, "responder": _responder,
    "severity": _severity,
}
# What POST /incidents/{id}/{action} takes, in the order its 404 lists them.
WEB_ACTIONS = (*(action.value for action in PAGE_ACTIONS), *_DESK_FORMS)


async def declare_incident(request: web.Request) -> web.Response:
    """POST /declare from the list's form: open an incident no alert raised."""
    s = services(request)
    visitor = _visitor(request, s)
    if visitor is None:
        _to_login(request)
    form = await request.post()
    refused = _refuse_form(request, s, visitor, str(form.get("csrf", "")))
    if refused is not None:
        return refused
    assert visitor.session is not None
    if s.desk is None:
        return _problem(NotFound("declaring is not served here"), visitor)
    fields = {k: v for k, v in _filled(form).items() if k != "back"}
    try:
        incident = await s.desk.declare(declare.parse(fields, s.config), visitor.session.actor)
    except PayloadError as exc:
        return await _index(s, visitor, 400, f"{exc.field}: {exc.message}")
    except AckdError as exc:
        return _problem(exc, visitor)
    raise web.HTTPSeeOther(f"/incidents/{incident.id}", headers=HEADERS)


def _refuse_form(
    request: web.Request, s: Services, visitor: Visitor, csrf: str
) -> web.Response | None:
    if visitor.session is None:
        return render("problem.html", 403, visitor=visitor, title="Sign in to act",
                      text="acting on incidents needs an API token; sign in first")
    if not _sessions(s).csrf_ok(request.cookies.get(COOKIE, ""), csrf):
        return render("problem.html", 403, visitor=visitor, title="Form expired",
                      text="this form's CSRF token does not match your session; "
                           "reload the page and try again")
    if not visitor.can_act:
        return render("problem.html", 403, visitor=visitor, title="Not allowed",
                      text=f"acting needs the respond scope; {visitor.session.name} has "
                           f"{visitor.session.scope}")
    return None


def _problem(exc: AckdError, visitor: Visitor) -> web.Response:
    if isinstance(exc, NotFound):
        return render("problem.html", 404, visitor=visitor, title="Not found", text=str(exc))
    if isinstance(exc, PayloadError):
        return render("problem.html", 400, visitor=visitor, title="Bad request",
                      text=f"{exc.field}: {exc.message}")
    return render("problem.html", 503, visitor=visitor, title="Try again", text=str(exc))


def _local(path: str) -> bool:
    """Only a path on this site is a place to go back to after a form."""
    return path.startswith("/") and not path.startswith("//") and "\\" not in path


async def reports_page(request: web.Request) -> web.Response:
    """GET /reports?since=30d: the API's report as plain tables."""
    s = services(request)
    visitor = _visitor(request, s)
    if visitor is None:
        _to_login(request)
    since = request.query.get("since", learning.DEFAULT_SINCE)
    try:
        report = await learning.build_report(s, learning.since_param(since))
    except PayloadError as exc:
        return render("reports.html", 400, visitor=visitor, since=since, report=None,
                      message=f"{exc.field}: {exc.message}", week_severities=[])
    except AckdError as exc:
        return _problem(exc, visitor)
    weeks = sorted({sev for counts in report.per_week.values() for sev in counts},
                   key=lambda sev: (report.severities.index(sev)
                                    if sev in report.severities else len(report.severities)))
    return render("reports.html", visitor=visitor, since=since, report=report, message="",
                  week_severities=weeks)


# -- signing in ------------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    """GET /login: ask for an API token, once; the form's CSRF token is a cookie's twin."""
    nonce = secrets.token_urlsafe(24)
    response = render("login.html", visitor=None, nonce=nonce, message="",
                      next=_next(request.query.get("next", "/")))
    _set_cookie(request, response, LOGIN_COOKIE, nonce, max_age=3600)
    return response


async def login(request: web.Request) -> web.Response:
    """POST /login: a valid token opens a session for the token's name."""
    s = services(request)
    form = await request.post()
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    target = _next(str(form.get("next", "/")))
    if not nonce or not _same(str(form.get("csrf", "")), nonce):
        return render("login.html", 403, visitor=None, nonce=nonce, next=target,
                      message="the form expired; try again")
    client = request.remote or "unknown"
    principal = _token_principal(s, str(form.get("token", "")).strip())
    if principal is None:
        blocked = s.throttle.blocked(client)
        s.throttle.record(client)
        s.metrics.auth_failures.labels("api").inc()
        message = "too many failed attempts; wait a minute" if blocked else "unknown token"
        return render("login.html", 429 if blocked else 401, visitor=None, nonce=nonce,
                      next=target, message=message)
    # The session carries the token's own scope: a read token signs in to look, not to act.
    cookie = _sessions(s).issue(principal.name, principal.scope.value, "token", s.clock.now(),
                                TOKEN_SESSION)
    response = web.HTTPSeeOther(target, headers=HEADERS)
    _set_cookie(request, response, COOKIE, cookie, max_age=int(TOKEN_SESSION.total_seconds()))
    response.del_cookie(LOGIN_COOKIE, path="/")
    raise response


def _token_principal(s: Services, given: str) -> Principal | None:
    found = None
    for expected, principal in s.config.api_tokens.items():
        if given and _same(given, expected):
            found = principal
    return found


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _next(path: str) -> str:
    return path if _local(path) else "/"


async def logout(request: web.Request) -> web.Response:
    """POST /logout: forget the session in this browser."""
    s = services(request)
    form = await request.post()
    cookie = request.cookies.get(COOKIE, "")
    if cookie and not _sessions(s).csrf_ok(cookie, str(form.get("csrf", ""))):
        return render("problem.html", 403, visitor=None, title="Form expired",
                      text="this form's CSRF token does not match your session")
    response = web.HTTPSeeOther("/login", headers=HEADERS)
    response.del_cookie(COOKIE, path="/")
    raise response


def _set_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int
) -> None:
    secure = services(request).config.external_url.startswith("https://") or request.secure
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="Strict", secure=secure)


def open_link(request: web.Request, claim: LinkClaim) -> web.Response:
    """GET /l/{token} of an incident link: a short session for the person it was sent to, then
    the incident page. The page moves on by itself from this origin (a meta refresh), since a
    redirect answering a navigation from a chat app counts as cross-site, and a browser would
    not send the SameSite=Strict cookie with it."""
    s = services(request)
    if claim.recipient not in s.config.users:
        return render("problem.html", 403, visitor=None, title="Link not accepted",
                      text="this link was sent to someone who is no longer a user here")
    cookie = _sessions(s).issue(claim.recipient, "respond", "link", s.clock.now(), LINK_SESSION)
    target = f"/incidents/{claim.incident_id}"
    response = render("opening.html", visitor=None, target=target, name=claim.recipient)
    _set_cookie(request, response, COOKIE, cookie, max_age=int(LINK_SESSION.total_seconds()))
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", index)
    router.add_get("/incidents/{id}", incident_page)
    router.add_get("/reports", reports_page)
    router.add_post("/declare", declare_incident)
    router.add_post("/incidents/{id}/{action}", incident_action)
    router.add_get("/login", login_form)
    router.add_post("/login", login)
    router.add_post("/logout", logout)


async def _calendars(s: Services, visitor: Visitor, oncall: list[views.OnCallRow]
                     ) -> list[tuple[str, str]]:
    """(label, address) of the calendar feeds to subscribe to: the visitor's own shifts when
    they are a person ackd pages, then each schedule shown. The API gives these addresses to
    any reader, and so does the page."""
    wanted = [("schedule", name) for name in dict.fromkeys(row.schedule for row in oncall)]
    session = visitor.session
    if session is not None and session.name in s.config.users:
        wanted.insert(0, ("user", session.name))
    urls = await feeds.addresses(s, wanted)
    return [("Your shifts" if kind == "user" else f"Schedule {name}", urls[kind, name])
            for kind, name in wanted]


def _on_call_now(s: Services, now: datetime) -> list[views.OnCallRow]:
    """As escalation sees it: with the run-time overrides and swaps."""
    if s.oncall is None:
        return views.on_call_now(s.config, now)
    return views.on_call_now(s.config, now, s.oncall.roster.schedule)
