"""Credentials checks in constant time, and a throttle for whoever keeps failing them."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections import deque
from collections.abc import Mapping

from aiohttp import web

from receiver.config.model import WebhookAuth
from receiver.core.access import Principal


def _equal(given: str, expected: str) -> bool:
    # Header values arrive decoded with surrogateescape: bytes that are not UTF-8 become lone
    # surrogates, which a plain encode() refuses. Turn them back into the bytes that were sent.
    return hmac.compare_digest(_raw(given), _raw(expected))


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _basic(request: web.Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(_raw(value.strip()), validate=True)
        user, sep, password = decoded.decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None  # not base64, or not UTF-8 inside: wrong credentials, not a crash
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


def api_principal(request: web.Request, tokens: Mapping[str, Principal]) -> Principal | None:
    """Who the API token presented acts as, or None. Checks every token in constant time."""
    token = bearer(request)
    if token is None:
        return None
    found = None
    for expected, principal in tokens.items():
        if _equal(token, expected):
            found = principal
    return found


class FailureThrottle:
    """After `limit` failed attempts from one address within `window` seconds, its further
    failures are answered as throttled. Only failures: a request with valid credentials always
    goes through, since behind a proxy a guesser shares its address with real clients."""

    def __init__(self, limit: int = 20, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._logged: dict[str, float] = {}  # when each address's last line was logged

    def blocked(self, client: str, now: float | None = None) -> bool:
        return self.retry_after(client, now) > 0

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds until `client` may try again; 0 if it is not blocked."""
        failures = self._failures.get(client)
        if failures is None:
            return 0.0
        at = time.monotonic() if now is None else now
        self._prune(failures, at)
        if len(failures) < self.limit:
            return 0.0
        # Unblocked once enough of the oldest failures have left the window.
        return failures[len(failures) - self.limit] + self.window - at

    def log_due(self, client: str, now: float | None = None) -> bool:
        """Whether a failure from `client` now earns a log line: its first, then one a window
        for as long as they go on. Once per quiet spell logged a steady stream once, ever: a
        rotated token keeps Alertmanager failing, and the line was hours back in the log."""
        at = time.monotonic() if now is None else now
        last = self._logged.get(client)
        if last is not None and at - last < self.window:
            return False
        if len(self._logged) >= self.max_clients and client not in self._logged:
            self._logged.pop(next(iter(self._logged)))  # bounded memory under a spray
        self._logged[client] = at
        return True

    def record(self, client: str, now: float | None = None) -> None:
        if len(self._failures) >= self.max_clients and client not in self._failures:
            self._failures.pop(next(iter(self._failures)))  # bounded memory under a spray
        at = time.monotonic() if now is None else now
        # Only the newest `limit` failures decide when the address is free again.
        failures = self._failures.setdefault(client, deque(maxlen=self.limit))
        self._prune(failures, at)
        failures.append(at)

    def _prune(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window:
            failures.popleft()
