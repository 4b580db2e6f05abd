"""Credentials checks in constant time, and a throttle for whoever keeps failing them."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections import deque
from collections.abc import Mapping

from aiohttp import web

from receiver.config import WebhookAuth


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _basic(request: web.Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def webhook_allowed(request: web.Request, auth: WebhookAuth) -> bool:
    """Bearer token and/or basic auth, as configured; with neither configured, open."""
    if not auth.required:
        return True
    token = bearer(request)
    if token is not None and auth.bearer_token is not None:
        return _equal(token, auth.bearer_token)
    basic = _basic(request)
    if basic is not None and auth.basic_username is not None:
        # Compare both parts every time, so timing does not reveal which one was wrong.
        user_ok = _equal(basic[0], auth.basic_username)
        password_ok = _equal(basic[1], auth.basic_password or "")
        return user_ok and password_ok
    return False


def api_actor(request: web.Request, tokens: Mapping[str, str]) -> str | None:
    """The name of the API token presented, or None. Checks every token in constant time."""
    token = bearer(request)
    if token is None:
        return None
    found = None
    for expected, name in tokens.items():
        if _equal(token, expected):
            found = name
    return found


class FailureThrottle:
    """After `limit` failed attempts from one address within `window` seconds, refuse early."""

    def __init__(self, limit: int = 20, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, client: str, now: float | None = None) -> bool:
        failures = self._failures.get(client)
        if failures is None:
            return False
        self._prune(failures, time.monotonic() if now is None else now)
        return len(failures) >= self.limit

    def record(self, client: str, now: float | None = None) -> None:
        if len(self._failures) >= self.max_clients and client not in self._failures:
            self._failures.pop(next(iter(self._failures)))  # bounded memory under a spray
        failures = self._failures.setdefault(client, deque())
        self._prune(failures, time.monotonic() if now is None else now)
        failures.append(time.monotonic() if now is None else now)

    def _prune(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window:
            failures.popleft()
