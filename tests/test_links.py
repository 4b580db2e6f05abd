"""Signed one-click links: what a token claims, and every way a bad token is refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from receiver.core.errors import LinkError
from receiver.notify.links import LinkClaim, Links

SECRET = b"0123456789abcdef0123456789abcdef"
BASE = "https://ackd.example.com"
TTL = timedelta(hours=24)
NOW = datetime(2024, 3, 10, 3, 17, 42, 500_000, tzinfo=UTC)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def links(secret: bytes = SECRET, base: str = BASE) -> Links:
    return Links(secret, base, TTL)


def token_of(url: str) -> str:
    return url.rsplit("/l/", 1)[1]


@pytest.mark.parametrize(
    ("incident_id", "action", "recipient"),
    [
        pytest.param(42, "ack", "ana", id="ack"),
        pytest.param(42, "resolve", "ana", id="resolve"),
        pytest.param(0, "ack", "", id="zero-and-empty"),
        pytest.param(2**63 + 5, "ack", "bo", id="large-id"),
        pytest.param(7, "resolve", "Zoë Ødegård", id="unicode-recipient"),
        pytest.param(9, "ack", "ops-channel/with:odd@chars", id="odd-recipient"),
    ],
)
def test_a_link_claims_what_it_was_made_for(incident_id: int, action: str, recipient: str) -> None:
    url = links().url(incident_id, action, recipient, NOW)

    claim = links().verify(token_of(url), NOW + timedelta(hours=23))

    expires = datetime(2024, 3, 11, 3, 17, 42, tzinfo=UTC)  # whole seconds
    assert claim == LinkClaim(incident_id, action, recipient, expires)


@pytest.mark.parametrize(
    ("base", "prefix"),
    [
        pytest.param("https://ackd.example.com", "https://ackd.example.com/l/", id="plain"),
        pytest.param("https://ackd.example.com/", "https://ackd.example.com/l/", id="slash"),
        pytest.param("https://example.com/ackd/", "https://example.com/ackd/l/", id="subpath"),
    ],
)
def test_url_shape(base: str, prefix: str) -> None:
    url = links(base=base).url(42, "ack", "ana", NOW)

    assert url.startswith(prefix)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token_of(url))


def test_tokens_are_short_enough_for_sms() -> None:
    # An SMS body of 160 characters must hold the link and a summary.
    assert len(links().url(123456, "resolve", "ana.lopez", NOW)) <= 90


@pytest.mark.parametrize("action", ["snooze", "ACK", "", "acknowledge"])
def test_unknown_actions_are_refused_at_creation(action: str) -> None:
    with pytest.raises(ValueError, match="unknown link action"):
        links().url(1, action, "ana", NOW)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        pytest.param(lambda: Links(b"", BASE, TTL), "secret is empty", id="empty-secret"),
        pytest.param(lambda: Links(SECRET, BASE, timedelta(0)), "ttl must be positive",
                     id="zero-ttl"),
        pytest.param(lambda: links().url(-1, "ack", "ana", NOW), "out of range", id="negative-id"),
        pytest.param(lambda: links().url(1, "ack", "x" * 201, NOW), "longer than",
                     id="long-recipient"),
        pytest.param(lambda: links().url(1, "ack", "ana", datetime(2024, 1, 1)), "aware",
                     id="naive-now"),
    ],
)
def test_bad_input_is_refused(make: Callable[[], object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        make()


def _flip(token: str, index: int) -> str:
    c = token[index]
    replacement = ALPHABET[(ALPHABET.index(c) + 1) % len(ALPHABET)]
    return token[:index] + replacement + token[index + 1:]


GOOD = token_of(links().url(42, "ack", "ana", NOW))
OTHER = token_of(links().url(43, "resolve", "bo", NOW))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_flip(GOOD, 0), id="flip-first"),
        pytest.param(_flip(GOOD, 1), id="flip-action"),
        pytest.param(_flip(GOOD, 4), id="flip-expiry"),
        pytest.param(_flip(GOOD, len(GOOD) // 2), id="flip-middle"),
        pytest.param(_flip(GOOD, -1), id="flip-last"),
        pytest.param(GOOD[:-1], id="truncated"),
        pytest.param(GOOD[:20], id="truncated-short"),
        pytest.param(GOOD + "A", id="extended"),
        pytest.param(GOOD + "==", id="padded"),
        pytest.param(GOOD.replace(GOOD[5], "+", 1), id="standard-alphabet"),
        pytest.param(" " + GOOD, id="whitespace"),
        pytest.param("", id="empty"),
        pytest.param("!!!!", id="not-base64"),
        pytest.param(OTHER[:-22] + GOOD[-22:], id="spliced-signature"),
        pytest.param(token_of(links(b"another secret").url(42, "ack", "ana", NOW)),
                     id="wrong-secret"),
    ],
)
def test_tampered_tokens_are_invalid(token: str) -> None:
    with pytest.raises(LinkError, match="^this link is invalid$"):
        links().verify(token, NOW)


@pytest.mark.parametrize(
    ("after", "valid"),
    [
        pytest.param(timedelta(0), True, id="fresh"),
        pytest.param(TTL - timedelta(seconds=1), True, id="last-second"),
        pytest.param(TTL, False, id="at-expiry"),
        pytest.param(TTL + timedelta(days=30), False, id="long-gone"),
    ],
)
def test_links_expire_after_their_ttl(after: timedelta, valid: bool) -> None:
    created = NOW.replace(microsecond=0)
    token = links().token(42, "ack", "ana", created)

    if valid:
        assert links().verify(token, created + after).incident_id == 42
    else:
        with pytest.raises(LinkError, match="^this link has expired$"):
            links().verify(token, created + after)


def test_a_forged_expiry_is_invalid_not_extended() -> None:
    # Re-signing is impossible without the secret, so moving the expiry breaks the signature.
    token = links().token(42, "ack", "ana", NOW - timedelta(days=2))
    forged = _flip(token, 4)

    with pytest.raises(LinkError, match="invalid"):
        links().verify(forged, NOW)


def _respell_last(token: str) -> str:
    """The same bytes spelled differently: change only the unused low bits of the last char."""
    index = ALPHABET.index(token[-1])
    unused = {2: 0b1111, 3: 0b11}[len(token) % 4]
    respelled = (index & ~unused) | ((index + 1) & unused)
    return token[:-1] + ALPHABET[respelled]


@pytest.mark.parametrize("recipient", [pytest.param("anna", id="2-spare-chars"),
                                       pytest.param("annah", id="3-spare-chars")])
def test_only_the_canonical_spelling_is_accepted(recipient: str) -> None:
    token = links().token(42, "ack", recipient, NOW)
    assert links().verify(token, NOW).recipient == recipient

    with pytest.raises(LinkError, match="invalid"):
        links().verify(_respell_last(token), NOW)
