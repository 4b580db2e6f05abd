"""authorise(request, scope): the one check every API handler makes before it reads or acts.

It answers with the Principal acting, or raises the refusal as an HTTP error with a JSON body:
401 (no or a wrong token; failures are throttled per address, then 429), 403 naming the scope
the request needs when the token is valid but does not carry it. A middleware that knows the
principal another way (a web session) stores it under PRINCIPAL first; authorise uses it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from receiver.core.access import ANONYMOUS, Principal, Scope
from receiver.web.auth import api_principal
from receiver.web.responses import dumps
from receiver.web.services import Services, services

PRINCIPAL = web.RequestKey("principal", Principal)


def authorise(request: web.Request, scope: Scope) -> Principal:
    """The principal acting, if it holds `scope`; otherwise raises 401, 403 or 429.
    With no token configured at all, reads are open on the listen address (anonymous), but
    nobody can act without a token."""
    s = services(request)
    principal = request.get(PRINCIPAL) or _from_token(request, s, scope)
    if not principal.scope.grants(scope):
        raise refusal(
            web.HTTPForbidden,
            f"this needs the {scope.value!r} scope; the {principal.describe()} has "
            f"{principal.scope.value!r}",
            scope=scope.value,
        )
    return principal


def _from_token(request: web.Request, s: Services, scope: Scope) -> Principal:
    tokens = s.config.api_tokens
    if not tokens and scope is Scope.READ:
        return ANONYMOUS
    principal = api_principal(request, tokens)
    if principal is not None:
        return principal  # a valid token is never throttled, whoever shares the address
    client = request.remote or "unknown"
    blocked = s.throttle.blocked(client)
    s.throttle.record(client)
    s.metrics.auth_failures.labels("api").inc()
    if blocked:
        raise refusal(web.HTTPTooManyRequests, "too many failed authentication attempts")
    raise refusal(
        web.HTTPUnauthorized, "missing or wrong API token",
        headers={"WWW-Authenticate": 'Bearer realm="ackd"'},
    )


def refusal(
    kind: type[web.HTTPException], message: str, *, headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.HTTPException:
    """The error to raise: its body is JSON naming the Authorization header."""
    body = {"error": message, "field": "Authorization", **extra}
    return kind(text=dumps(body).decode(), content_type="application/json", headers=headers)
