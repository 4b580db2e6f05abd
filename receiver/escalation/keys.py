"""Deadline keys: each names its run and cycle (and a delayed contact its person and contact),
so a deadline left over from an earlier run is recognised as stale and does nothing.

A contact is named by its index and a digest of its URL: a reload may insert, reorder or
remove a person's contacts (or a channel's URLs) while a delayed contact or an outbox row
waits, and the index alone would then name another contact, another address. `find_contact`
looks the digest up; a contact that is gone is gone, never the one now at its position.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache


def step_key(run: int, cycle: int, index: int) -> str:
    return f"{run}:{cycle}:{index}"


def end_key(run: int, cycle: int) -> str:
    """The STEP deadline past a policy's last step: its wait ends (engine: exhaustion). Not an
    index, so a release before it, whose key for the pending step is always one, finds it
    stale and does nothing with it."""
    return f"{run}:{cycle}:end"


@lru_cache(maxsize=1024)
def contact_digest(url: str) -> str:
    """What a key or an outbox row knows a contact's URL by: 16 hex digits of its SHA-256,
    enough to tell one recipient's contacts apart; the URL holds credentials and is never
    stored. Remembered: every page, stakeholder note and delivery asks it of one of the
    config's few URLs, and OpenSSL's SHA-256 of a short text costs 7,000 instructions (the
    look-up here a few hundred). The daemon empties it whenever a config is swapped in, so
    a URL a reload rotated away, credentials and all, is not kept."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def find_contact(urls: Sequence[str], index: int, digest: str) -> int | None:
    """Where the contact named by (`index`, `digest`) is among `urls` now: at `index` if that
    URL still has the digest, else the first URL that has it; None if none has (a reload
    removed the contact or changed its URL). An empty digest (a deadline or an outbox row
    written before digests) names the contact by its index alone, as it always did."""
    if 0 <= index < len(urls) and (not digest or contact_digest(urls[index]) == digest):
        return index
    if not digest:
        return None
    return next((i for i, url in enumerate(urls) if contact_digest(url) == digest), None)


def contact_key(run: int, cycle: int, index: int, user: str, contact_index: int,
                url: str) -> str:
    return f"{contact_prefix(run, cycle, index)}{user}:{contact_index}.{contact_digest(url)}"


def contact_prefix(run: int, cycle: int, index: int) -> str:
    """What the keys of every delayed contact of one step of one run and cycle begin with."""
    return f"{run}:{cycle}:{index}:"


def parse_contact_key(key: str) -> tuple[int, int, int, str, int, str]:
    """(run, cycle, step, user, contact index, URL digest); the digest is "" in a key armed
    before digests (RUN:CYCLE:STEP:USER:CONTACT)."""
    try:
        run, cycle, index, rest = key.split(":", 3)
        user, contact = rest.rsplit(":", 1)
        contact_index, _, digest = contact.partition(".")
        return int(run), int(cycle), int(index), user, int(contact_index), digest
    except ValueError as exc:
        raise ValueError(
            f"contact deadline key {key!r} is not RUN:CYCLE:STEP:USER:CONTACT[.DIGEST]"
        ) from exc
