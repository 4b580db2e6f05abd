"""Signed one-click links: acknowledge or resolve an incident from a page without logging in;
and signed calendar feed addresses (`FeedLinks`, at the end), which calendar apps poll.

A link is `{base_url}/l/{token}`. The token carries everything needed to act (incident id,
action, who it was sent to, when it expires) plus an HMAC-SHA256 over those bytes, so the
server keeps no state per link and a forged or edited token is refused. Tokens are short on
purpose: they travel in SMS bodies of 160 characters.

Token layout (before unpadded urlsafe base64):

    version (1) | action (1) | expires, unix seconds (4) | incident id (8) | recipient (utf-8)
    | HMAC-SHA256 of everything before it, truncated to 16 bytes
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from datetime import UTC, datetime, timedelta
from typing import Literal

from receiver.core.errors import LinkError
from receiver.core.frozen import frozen
from receiver.core.model import Action

# A link does one of the responder's actions (core/model.Action), or opens the incident page
# with a short session for the recipient (the web page), which acts on nothing.
OPEN: Literal["open"] = "open"
LinkAction = Action | Literal["open"]
# What a link can do, each written in a token as its position here: tokens already sent out
# carry these numbers, so an action is only ever added at the end.
ACTIONS: tuple[LinkAction, ...] = (Action.ACK, Action.RESOLVE, OPEN)

_VERSION = 1
_HEADER = struct.Struct(">BBIQ")
_MAC_BYTES = 16
_MAX_RECIPIENT_BYTES = 200
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_INVALID = "this link is invalid"
_EXPIRED = "this link has expired"


@frozen(slots=True)
class LinkClaim:
    """What a verified token allows: `recipient` may take `action` on the incident."""

    incident_id: int
    action: LinkAction
    recipient: str
    expires: datetime


class Links:
    """Creates and verifies signed links with one secret; `ttl` is how long a link is good."""

    def __init__(self, secret: bytes, base_url: str, ttl: timedelta) -> None:
        if not secret:
            raise ValueError("the link secret is empty: set links.secret or links.secret_file")
        if ttl <= timedelta(0):
            raise ValueError(f"the link ttl must be positive, got {ttl}")
        self._secret = secret
        self._base_url = base_url.rstrip("/")
        self._ttl = ttl

    def url(self, incident_id: int, action: LinkAction, recipient: str, now: datetime) -> str:
        """The link that lets `recipient` take `action` on the incident until now + ttl."""
        return f"{self._base_url}/l/{self.token(incident_id, action, recipient, now)}"

    def token(self, incident_id: int, action: LinkAction, recipient: str, now: datetime) -> str:
        payload = _pack(incident_id, action, recipient, _unix(now + self._ttl))
        return _b64encode(payload + self._mac(payload))

    def verify(self, token: str, now: datetime) -> LinkClaim:
        """The claim a token makes, or LinkError if it is forged, tampered with or expired."""
        raw = _b64decode(token)
        if len(raw) < _HEADER.size + _MAC_BYTES:
            raise LinkError(_INVALID)
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        # Check the signature before reading any field: unsigned bytes mean nothing.
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise LinkError(_INVALID)
        claim = _unpack(payload)
        if now >= claim.expires:
            raise LinkError(_EXPIRED)
        return claim

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _pack(incident_id: int, action: LinkAction, recipient: str, expires: int) -> bytes:
    if action not in ACTIONS:
        raise ValueError(f"unknown link action {action!r}: expected one of {', '.join(ACTIONS)}")
    if not 0 <= incident_id < 2**64:
        raise ValueError(f"incident id out of range: {incident_id}")
    if not 0 <= expires < 2**32:
        raise ValueError(f"link expiry out of range: {expires} (unix seconds)")
    name = recipient.encode()
    if len(name) > _MAX_RECIPIENT_BYTES:
        raise ValueError(f"recipient name longer than {_MAX_RECIPIENT_BYTES} bytes")
    return _HEADER.pack(_VERSION, ACTIONS.index(action), expires, incident_id) + name


def _unpack(payload: bytes) -> LinkClaim:
    version, action, expires, incident_id = _HEADER.unpack_from(payload)
    # A valid signature over an unknown layout means a newer or older format: refuse it.
    if version != _VERSION or action >= len(ACTIONS):
        raise LinkError(_INVALID)
    try:
        recipient = payload[_HEADER.size:].decode()
    except UnicodeDecodeError:
        raise LinkError(_INVALID) from None
    return LinkClaim(incident_id, ACTIONS[action], recipient, datetime.fromtimestamp(expires, UTC))


def _unix(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("link times must be timezone-aware")
    return int(at.timestamp())


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(token: str) -> bytes:
    # Strict alphabet: b64decode would otherwise skip stray characters and accept a variant.
    if not _TOKEN_CHARS.fullmatch(token) or len(token) % 4 == 1:
        raise LinkError(_INVALID)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise LinkError(_INVALID) from None
    # Unused low bits in the last character would let several spellings decode alike.
    if _b64encode(raw) != token:
        raise LinkError(_INVALID)
    return raw


# -- calendar feeds ----------------------------------------------------------------------

FEED_KINDS = ("user", "schedule")
_FEED_VERSION = 1
_FEED_HEADER = struct.Struct(">BBI")
_FEED_KEY_LABEL = b"ackd calendar feed v1"
_NO_FEED = "no such calendar feed"


@frozen(slots=True)
class FeedClaim:
    """What a verified feed address names: one person's or one schedule's shifts, at the
    generation it was issued at (revoking a feed raises its generation in the store)."""

    kind: str  # user or schedule
    name: str
    generation: int


class FeedLinks:
    """Signed calendar feed addresses, `{base_url}/feeds/{token}.ics`.

    A calendar app (Google Calendar, Outlook, Apple Calendar) subscribes to an address with a
    plain GET and sends no header, so the address is the credential: its token is an HMAC, as
    a link's, over (kind, name, generation), under a key derived from the link secret for
    feeds alone, so a feed's token never opens a link and no link's opens a feed. It does not
    expire (a subscription is polled for months); revoking a feed raises its generation, so
    every address issued before stops, and changing the link secret stops them all."""

    def __init__(self, secret: bytes, base_url: str) -> None:
        if not secret:
            raise ValueError("the link secret is empty: set links.secret or links.secret_file")
        self._key = hmac.new(secret, _FEED_KEY_LABEL, hashlib.sha256).digest()
        self._base_url = base_url.rstrip("/")

    def url(self, kind: str, name: str, generation: int) -> str:
        return f"{self._base_url}/feeds/{self.token(kind, name, generation)}.ics"

    def token(self, kind: str, name: str, generation: int) -> str:
        if kind not in FEED_KINDS:
            raise ValueError(f"unknown feed kind {kind!r}: expected one of "
                             f"{', '.join(FEED_KINDS)}")
        if not 0 <= generation < 2**32:
            raise ValueError(f"feed generation out of range: {generation}")
        encoded = name.encode()
        if len(encoded) > _MAX_RECIPIENT_BYTES:
            raise ValueError(f"feed name longer than {_MAX_RECIPIENT_BYTES} bytes")
        payload = _FEED_HEADER.pack(_FEED_VERSION, FEED_KINDS.index(kind), generation) + encoded
        return _b64encode(payload + self._mac(payload))

    def verify(self, token: str) -> FeedClaim:
        """What a token names, or LinkError if it is forged or tampered with. Whether its
        generation is still the feed's is the store's to say."""
        raw = _b64decode(token)
        if len(raw) < _FEED_HEADER.size + _MAC_BYTES:
            raise LinkError(_NO_FEED)
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise LinkError(_NO_FEED)
        version, kind, generation = _FEED_HEADER.unpack_from(payload)
        if version != _FEED_VERSION or kind >= len(FEED_KINDS):
            raise LinkError(_NO_FEED)
        try:
            name = payload[_FEED_HEADER.size:].decode()
        except UnicodeDecodeError:
            raise LinkError(_NO_FEED) from None
        return FeedClaim(FEED_KINDS[kind], name, generation)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
