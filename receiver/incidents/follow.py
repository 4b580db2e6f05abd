"""A person the incident layer messages (a status reminder, a responder paged in) is reached as
a step's page reaches them: on each immediate contact at once, and on each delayed one (SMS
after push, a call after SMS) once its delay passed, unless they answered meanwhile. Pure: the
desk arms one `follow` deadline per delayed contact and asks `wanted` when it comes due; one
a reload took away (the contact or the person) is recorded as `lost`, never dropped unsaid.

What counts as an answer depends on why they were messaged:
- a status reminder: a status update posted since, by anyone (what it asked for came);
- a responder paged in: anything the person did on the incident since (a note, a role, an
  acknowledgement), which says they joined.
Either way a resolved incident wants nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import msgspec

from receiver.core.frozen import frozen
from receiver.core.model import EventKind, MessageReason, TimelineEvent
from receiver.escalation.keys import contact_digest, find_contact
from receiver.escalation.policy import User
from receiver.escalation.unreached import counted, found_once
from receiver.store.records import OutboxMessage


@frozen(slots=True)
class FollowUp:
    """One delayed contact still to message: the deadline's key says all of it, so a restart
    in between changes nothing, and a reload that moves the contact among the person's
    contacts nothing either (its URL's digest finds it)."""

    reason: MessageReason  # status_due or responder_added
    name: str  # the person
    contact: int  # the index in their contacts
    since: datetime  # when the first message went: answers count from here
    actor: str = ""  # responder_added: who asked them to join
    digest: str = ""  # the contact's URL's digest; "" in keys armed before digests

    def key(self) -> str:
        return msgspec.json.encode([self.reason.value, self.name, self.contact,
                                    self.since.isoformat(), self.actor, self.digest]).decode()

    @classmethod
    def from_key(cls, key: str) -> FollowUp:
        reason, name, contact, since, actor, *digest = msgspec.json.decode(key)
        return cls(MessageReason(reason), str(name), int(contact),
                   datetime.fromisoformat(since), str(actor), str(digest[0]) if digest else "")


@frozen(slots=True)
class Reach:
    """The messages for now and the follow-ups for later, each with its due time."""

    now: list[OutboxMessage]
    later: list[tuple[datetime, FollowUp]]


def reach(user: User, reason: MessageReason, now: datetime, *, actor: str = "",
          status_every: float | None = None) -> Reach:
    """Every contact of `user`: the immediate ones now, the delayed ones as follow-ups. A
    person whose every contact is delayed gets the first at once: a message that waits for
    nothing must not wait."""
    delayed = {i for i, c in enumerate(user.contacts) if c.delay > timedelta(0)}
    if len(delayed) == len(user.contacts) and user.contacts:
        delayed.discard(0)
    messages = [
        OutboxMessage(recipient=user.name, recipient_kind="user", contact=i,
                      url_digest=contact_digest(c.url), reason=reason, short=c.short,
                      status_every=status_every, actor=actor)
        for i, c in enumerate(user.contacts) if i not in delayed
    ]
    later = [(now + user.contacts[i].delay,
              FollowUp(reason, user.name, i, now, actor, contact_digest(user.contacts[i].url)))
             for i in sorted(delayed)]
    return Reach(messages, later)


def wanted(follow: FollowUp, open_: bool, events: Iterable[TimelineEvent]) -> bool:
    """Whether the delayed contact should still be messaged, given the incident's events
    since the first message."""
    if not open_:
        return False
    if follow.reason is MessageReason.STATUS_DUE:
        return not any(e.kind is EventKind.STATUS_UPDATE for e in events)
    return not any(e.actor == follow.name for e in events)


def lost(follow: FollowUp, user: User | None, now: datetime) -> TimelineEvent:
    """The timeline's record of a follow-up that cannot go: a reload removed its contact, or
    the person. A `notification_failed` event, as escalation records a step's delayed contact
    a reload removed: whom, which message (`reason`) and which contact (from 1), and why."""
    why = (f"user {follow.name} is no longer configured" if user is None
           else f"user {follow.name} no longer has contact {follow.contact + 1}")
    detail = {"recipient": follow.name, "recipient_kind": "user", "reason": follow.reason.value,
              "step": None, "contact": follow.contact + 1, "since": follow.since.isoformat(),
              "error": why}
    return TimelineEvent(now, EventKind.NOTIFICATION_FAILED, detail=detail)


def message(follow: FollowUp, user: User, status_every: float | None) -> OutboxMessage | None:
    """The delayed contact's message, or None if a reload took the contact away (one that
    moved it is followed: the message names it where it is now)."""
    found = find_contact([c.url for c in user.contacts], follow.contact, follow.digest)
    if found is None:
        return None
    contact = user.contacts[found]
    return OutboxMessage(
        recipient=user.name, recipient_kind="user", contact=found,
        url_digest=contact_digest(contact.url), reason=follow.reason, short=contact.short,
        status_every=status_every, actor=follow.actor)


def lost_at_reload(
    waiting: Iterable[tuple[int, str]], users: Mapping[str, User]
) -> list[tuple[str, list[int]]]:
    """A line, with its incidents, for each follow-up still waiting (open incident, its
    FOLLOW deadline's key) that a config with these `users` cannot send: its person is gone,
    or none of their contacts has its URL now (`message` finds none). When it comes due it is
    recorded as `lost`; the reload says so now. A key this release cannot read is left out:
    it is not sent either way, and the config changes nothing of it."""
    found: dict[str, list[int]] = {}
    for number, key in waiting:
        try:
            later = FollowUp.from_key(key)
        except (ValueError, TypeError, msgspec.DecodeError):
            continue
        what = f"the {later.reason.value} message"
        user = users.get(later.name)
        if user is None:
            line = (f"wait to send {later.name}, whom this config removes, {what} through a"
                    " delayed contact")
        elif find_contact([c.url for c in user.contacts], later.contact, later.digest) is None:
            line = (f"wait to send {later.name} {what} through a delayed contact (contact"
                    f" {later.contact + 1}) that this config removes or gives another URL")
        else:
            continue
        found_once(found, line + ": it will not be sent", number)
    return [(counted(line, numbers), numbers) for line, numbers in found.items()]
