"""Where a notification goes: outbox rows name a contact, never its Apprise URL.

An Apprise URL carries credentials (a mail password, a Slack webhook token, a `+header`
value). Written into an outbox row, it would stay on disk long after the row was deleted:
in SQLite's free pages and in the WAL. So a row holds a reference, the recipient, its kind,
the contact's index (a user's `contacts`, a channel's `urls`) and its URL's digest, and the
dispatcher looks the URL up in the config it runs with when the row is sent: the digest finds
the contact wherever a reload moved it. A reload that removed the contact makes the reference
dangle: that row fails, with the reason on its timeline, never silently and never to
somebody else's address (nor to another contact of the same person).

Pure: functions of the config's users and channels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from receiver.core.frozen import frozen
from receiver.escalation.keys import find_contact
from receiver.escalation.policy import Channel, User
from receiver.escalation.unreached import counted, found_once


@frozen(slots=True)
class Destination:
    """A reference resolved against the running config: where to send, and how."""

    url: str
    short: bool


def resolve(
    name: str,
    kind: str,
    index: int | None,
    users: Mapping[str, User],
    channels: Mapping[str, Channel],
    digest: str = "",
) -> Destination | str:
    """Where contact `index` of `name` (a user or a channel), whose URL has `digest`, goes
    now, or why it names none (safe to show: no URL). An empty digest (a row from before
    digests) goes by the index alone."""
    if index is None or index < 0:
        return f"the notification names no contact of {kind} {name}"
    if kind == "channel":
        channel = channels.get(name)
        if channel is None:
            return f"channel {name} is no longer configured"
        found = find_contact(channel.urls, index, digest)
        if found is None:
            return f"channel {name} no longer has url {index + 1}"
        return Destination(channel.urls[found], False)
    if kind == "user":
        user = users.get(name)
        if user is None:
            return f"user {name} is no longer configured"
        found = find_contact([c.url for c in user.contacts], index, digest)
        if found is None:
            return f"user {name} no longer has contact {index + 1}"
        contact = user.contacts[found]
        return Destination(contact.url, contact.short)
    return f"unknown recipient kind {kind!r}"


def unsendable(
    queued: Iterable[tuple[int, str, str, int | None, str]],
    users: Mapping[str, User],
    channels: Mapping[str, Channel],
) -> list[tuple[str, list[int]]]:
    """A line, with its incidents, for each reference queued in the outbox (incident,
    recipient, its kind, contact index, URL digest) that these users and channels no longer
    resolve: the person or channel is gone, or none of its contacts has the URL now (a
    changed URL is another contact). The dispatcher fails such a row when its turn comes, on
    its incident's timeline, and never sends it to another URL; the reload says so now. A row
    that names no contact fails whatever the config: it is left out."""
    found: dict[str, list[int]] = {}
    for number, name, kind, index, digest in queued:
        if index is None:
            continue
        why = resolve(name, kind, index, users, channels, digest)
        if isinstance(why, Destination):
            continue
        if name in (channels if kind == "channel" else users):
            why += " (removed, or its URL changed)"  # they are there: the contact is not
        found_once(found, f"have notification(s) queued that this config cannot send, as"
                   f" {why}: each fails at its turn, on its incident's timeline", number)
    return [(counted(line, numbers, "incident(s)"), numbers) for line, numbers in found.items()]


def index_of(
    url: str, name: str, kind: str, users: Mapping[str, User], channels: Mapping[str, Channel]
) -> int | None:
    """The index of `url` among the contacts of `name`, for rows written before references
    (schema migration 4); None if the config no longer has it."""
    if kind == "channel":
        channel = channels.get(name)
        urls = channel.urls if channel is not None else ()
    else:
        user = users.get(name)
        urls = tuple(c.url for c in user.contacts) if user is not None else ()
    return urls.index(url) if url in urls else None
