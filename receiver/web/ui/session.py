"""Web page sessions: a signed cookie naming who is signed in, and the CSRF token of each form.

A session is stateless: the cookie carries the name, the scope, how it was opened (an API token
typed once, or a signed incident link from a page) and when it ends, with an HMAC-SHA256 over
those bytes under a key derived from the link secret. The link secret is kept in the data
directory when the config names none, so sessions survive a restart; changing the secret ends
them all. Each request checks the name against the running config too, so a token or user
removed by a reload stops its sessions at once.

The CSRF token of a form is an HMAC of the session cookie: a page served to this session can
post, another site cannot (it never sees the cookie, which is HttpOnly and SameSite=Strict).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta

from receiver.core.frozen import frozen

COOKIE = "ackd_session"
# A token typed into the login form lasts a working day; the session a page's incident link
# opens lasts as long as one incident's first response needs, not longer.
TOKEN_SESSION = timedelta(hours=12)
LINK_SESSION = timedelta(hours=1)
_KEY_LABEL = b"ackd web session v1"
_MAC_CHARS = 43  # unpadded base64 of 32 bytes


@frozen(slots=True)
class Session:
    """Who a request acts as. `via` is "token" (signed in with an API token) or "link" (opened
    by the signed incident link sent to that user)."""

    name: str
    scope: str
    via: str
    expires: datetime

    @property
    def actor(self) -> str:
        """Who the timeline names: the person (or the script's token) themselves, however the
        session was opened, so a note from the communications lead counts as theirs."""
        return self.name


class Sessions:
    """Issues and verifies session cookies and CSRF tokens with one key."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the session key needs the link secret; it is empty")
        self._key = hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()

    def issue(self, name: str, scope: str, via: str, now: datetime, length: timedelta) -> str:
        """The cookie value of a new session for `name`, good until now + length."""
        expires = int((now + length).timestamp())
        # A random id makes every session's cookie, and so its CSRF token, its own.
        payload = json.dumps({"n": name, "s": scope, "v": via, "e": expires,
                              "i": secrets.token_urlsafe(9)},
                             separators=(",", ":")).encode()
        body = _b64(payload)
        return f"{body}.{self._sign(b'session', body)}"

    def verify(self, cookie: str, now: datetime) -> Session | None:
        """The session a cookie holds, or None if it is forged, malformed or over."""
        body, dot, mac = cookie.partition(".")
        if not dot or len(mac) != _MAC_CHARS:
            return None
        if not hmac.compare_digest(mac, self._sign(b"session", body)):
            return None
        try:
            fields = json.loads(_unb64(body))
            session = Session(str(fields["n"]), str(fields["s"]), str(fields["v"]),
                              datetime.fromtimestamp(int(fields["e"]), UTC))
        except (ValueError, KeyError, TypeError, OverflowError, binascii.Error):
            return None
        return session if now < session.expires else None

    def csrf(self, cookie: str) -> str:
        """The token every form of this session carries."""
        return self._sign(b"csrf", cookie)

    def csrf_ok(self, cookie: str, given: str) -> bool:
        return hmac.compare_digest(self.csrf(cookie).encode(), given.encode("utf-8", "replace"))

    def _sign(self, purpose: bytes, text: str) -> str:
        mac = hmac.new(self._key, purpose + b"\0" + text.encode(), hashlib.sha256).digest()
        return _b64(mac)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
