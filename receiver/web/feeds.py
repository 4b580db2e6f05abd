"""Calendar feeds a calendar app can subscribe to: the `.ics` of a person or a schedule at a
signed address that needs no header (notify/links.FeedLinks).

    GET    /api/v1/users/{name}/feed         the person's feed address (scope read)
    DELETE /api/v1/users/{name}/feed         revoke it: a new address, the old ones stop
                                             (the person themselves, or admin)
    GET    /api/v1/schedules/{name}/feed     the schedule's feed address (scope read)
    DELETE /api/v1/schedules/{name}/feed     revoke it (admin)
    GET    /feeds/{token}.ics?weeks=N        the calendar itself, no Authorization: what
                                             Google Calendar, Outlook and Apple Calendar send

The `.ics` routes under /api/v1 keep their Bearer token, for scripts. A forged or damaged
address is a 404, a revoked one a 403, each with a JSON body naming the token, so a calendar
app shows an error instead of an empty calendar.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from aiohttp import web

from receiver.core.access import Scope
from receiver.core.errors import AckdError, Forbidden, LinkError, NotFound
from receiver.notify.links import FeedClaim, FeedLinks
from receiver.store import Transaction
from receiver.web.responses import error, ok
from receiver.web.schedules import actor, answer, calendar_response, on_call_service, window
from receiver.web.services import Services, services

_NO_FEED = "no such calendar feed"


def _feeds(s: Services) -> FeedLinks:
    return FeedLinks(s.config.link_secret, s.config.external_url)


def _known(s: Services, kind: str, name: str) -> bool:
    return name in (s.config.users if kind == "user" else s.config.schedules)


async def _generations(s: Services, feeds: Sequence[tuple[str, str]]) -> list[int]:
    """The current generation of each (kind, name) feed, in one writer job (a revocation
    raises it in the writer, so the writer says what it is now)."""
    async def job(tx: Transaction) -> list[int]:
        return [await tx.feed_generation(kind, name) for kind, name in feeds]

    return await s.store.write(job)


async def addresses(s: Services, feeds: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The current address of each (kind, name) feed."""
    links = _feeds(s)
    generations = await _generations(s, feeds)
    return {(kind, name): links.url(kind, name, generation)
            for (kind, name), generation in zip(feeds, generations, strict=True)}


async def user_feed(request: web.Request) -> web.Response:
    return await _address(request, "user")


async def schedule_feed(request: web.Request) -> web.Response:
    return await _address(request, "schedule")


async def revoke_user_feed(request: web.Request) -> web.Response:
    return await _revoke(request, "user")


async def revoke_schedule_feed(request: web.Request) -> web.Response:
    return await _revoke(request, "schedule")


async def _address(request: web.Request, kind: str) -> web.Response:
    s = services(request)
    actor(request, s)  # the address gives what a read token gives: the shifts
    name = request.match_info["name"]
    try:
        if not _known(s, kind, name):
            raise NotFound(f"unknown {kind} {name!r}")
        url = (await addresses(s, [(kind, name)]))[kind, name]
    except AckdError as exc:
        return answer(exc, kind)
    return ok({kind: name, "url": url})


async def _revoke(request: web.Request, kind: str) -> web.Response:
    """A new address for the feed; every earlier one stops. A person revokes their own (a
    phone lost, an address pasted where it should not be); admins any."""
    s = services(request)
    who = actor(request, s)
    name = request.match_info["name"]
    own = kind == "user" and who.name == name and Scope.RESPOND in who.scopes
    try:
        if not _known(s, kind, name):
            raise NotFound(f"unknown {kind} {name!r}")
        if not own and Scope.ADMIN not in who.scopes:
            mine = " (or being them)" if kind == "user" else ""
            raise Forbidden(Scope.ADMIN.value,
                            f"revoking the feed of {kind} {name!r} needs the 'admin' scope{mine}")

        async def job(tx: Transaction) -> int:
            return await tx.revoke_feed(kind, name)

        generation = await s.store.write(job)
    except AckdError as exc:
        return answer(exc, kind)
    return ok({kind: name, "url": _feeds(s).url(kind, name, generation)})


async def feed_calendar(request: web.Request) -> web.Response:
    """The calendar at a signed address; no header is read. Forged, damaged, or naming a
    person or schedule the config no longer has: 404. Revoked: 403."""
    s = services(request)
    try:
        claim = _feeds(s).verify(request.match_info["token"])
    except LinkError:
        return error(404, _NO_FEED, "token")
    try:
        if not _known(s, claim.kind, claim.name):
            return error(404, _NO_FEED, "token")
        if [claim.generation] != await _generations(s, [(claim.kind, claim.name)]):
            return error(403, "this calendar feed address was revoked; ask ackd for the new "
                              f"one (GET /api/v1/{claim.kind}s/NAME/feed)", "token")
        since, until = window(request, s)
        return await _calendar(claim, s, since, until)
    except AckdError as exc:
        return answer(exc, "token")


async def _calendar(claim: FeedClaim, s: Services, since: datetime, until: datetime
                    ) -> web.Response:
    oncall = on_call_service(s)
    title = f"on call: {claim.name}"
    if claim.kind == "schedule":
        return await calendar_response(title, [oncall.laid(claim.name)], since, until, s)
    laid = [oncall.laid(schedule) for schedule in s.config.schedules]
    return await calendar_response(title, laid, since, until, s, claim.name)
