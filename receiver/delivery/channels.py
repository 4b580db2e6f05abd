"""Noise control's histories as the store keeps them: one record per channel URL, shared by
every replica, so that three replicas spend one budget, not three.

Pure: the dispatcher locks the records of a pass's URLs (and of the summaries due) in the
store, hands the histories to plan_pass, and writes back only what the plan changed, in the
transaction that records the pass's verdicts. A record is keyed by a digest of its URL (the
URL holds credentials and never reaches the store); the URL of a held-back summary whose
URL no row of the pass names comes from the contact its `addressee` names, through the
running config, as an outbox row's does.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from receiver.delivery.noise import ChannelHistory, NoiseGate
from receiver.delivery.plan import PassPlan
from receiver.escalation.policy import Channel, User
from receiver.escalation.unreached import counted, found_once
from receiver.notify.contacts import Destination, resolve
from receiver.store.records import ChannelRecord, OutboxMessage

log = logging.getLogger(__name__)

# The URL the contact an addressee names has now, or None if it has none.
ContactUrl = Callable[[OutboxMessage], str | None]


def channel_key(url: str) -> str:
    """What the store knows a URL by: its SHA-256, so no credential in it is stored."""
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(slots=True)
class Held:
    """The histories a pass gates against, by URL, and the records they came from."""

    histories: dict[str, ChannelHistory] = field(default_factory=dict)
    addressees: dict[str, OutboxMessage] = field(default_factory=dict)
    records: dict[str, ChannelRecord] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # channels whose summary has no URL now
    dropped: list[int] = field(default_factory=list)  # what each lost summary held back


def held(records: Iterable[ChannelRecord], urls: Iterable[str], contact_url: ContactUrl) -> Held:
    """The records read for a pass, by URL: that of the pass's rows whose digest it is, else
    the one its summary's addressee has now. A summary whose contact is gone, or has another
    URL now, cannot go: its record is dropped (and the messages it held are on their
    timelines as suppressed), and how many it held is in `dropped`, for log_dropped."""
    known = {channel_key(url): url for url in urls}
    found = Held()
    for record in records:
        url = known.get(record.channel)
        if url is None and record.addressee is not None:
            url = contact_url(record.addressee)
            if url is not None and channel_key(url) != record.channel:
                url = None
        if url is None:
            if record.history.held_back:
                found.dropped.append(record.history.held_back)
            found.lost.append(record.channel)
            continue
        found.records[url] = record
        found.histories[url] = record.history
        if record.addressee is not None:
            found.addressees[url] = record.addressee
    return found


def log_dropped(dropped: Iterable[int]) -> None:
    """Log the summaries a pass dropped (Held.dropped), after its commit: the pass's job may
    run more than once before it (Store.write), and only the committed run's are true."""
    for count in dropped:
        log.warning("dropped the summary of %d held-back message(s) to a contact no longer"
                    " configured", count)


def lost_summaries(
    summaries: Iterable[tuple[int, str, OutboxMessage]],
    users: Mapping[str, User],
    channels: Mapping[str, Channel],
) -> list[tuple[str, list[int]]]:
    """A line, with its incidents, for each reason these users and channels cannot send the
    held-back summaries waiting (incident held back, channel, addressee: Waiting.summaries):
    the addressee's contact is gone, or has another URL now than the channel's, so that at
    its turn the summary is dropped (`held`), never sent to the new URL. For a reload to say
    so beforehand, as it names the queued notifications it cannot send."""
    found: dict[str, list[int]] = {}
    for number, channel, addressee in summaries:
        name, kind = addressee.recipient, addressee.recipient_kind
        why = resolve(name, kind, addressee.contact, users, channels, addressee.url_digest)
        if isinstance(why, Destination):
            if channel_key(why.url) == channel:
                continue
            why = f"{kind} {name} has another URL for contact {(addressee.contact or 0) + 1}"
        elif name in (channels if kind == "channel" else users):
            why += " (removed, or its URL changed)"  # they are there: the contact is not
        found_once(found, f"have notification(s) held back by the rate limit whose summary"
                   f" this config cannot send, as {why}: the summary is dropped at its turn",
                   number)
    return [(counted(line, numbers, "incident(s)"), numbers) for line, numbers in found.items()]


def fill_held_back(before: Held, held_back: dict[str, list[int]]) -> None:
    """Put the incidents held back from these channels (read only for the summaries due:
    nothing else reads them) into their histories."""
    for url, history in before.histories.items():
        ids = held_back.get(channel_key(url))
        if ids:
            before.histories[url] = replace(history, held_back_incidents=tuple(ids))


@dataclass(slots=True)
class Changes:
    """What a pass changed in the store's records."""

    save: list[ChannelRecord] = field(default_factory=list)  # records the pass changed
    drop: list[str] = field(default_factory=list)  # idle, or their summary has no URL now
    forget: list[str] = field(default_factory=list)  # their summary went
    hold: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # newly held back


def changes(gate: NoiseGate, before: Held, plan: PassPlan, now: datetime) -> Changes:
    """The records to write, forget, and the incidents newly held back. A history is stored
    without its held-back incidents: those go to a list of their own, one row each, so a
    storm that holds back thousands does not rewrite them all on every pass."""
    found = Changes()
    summarised = {summary.url for summary in plan.summaries}
    for url, history in plan.histories.items():
        channel = channel_key(url)
        if url in summarised:
            found.forget.append(channel)
            added = history.held_back_incidents
        else:
            was = before.histories.get(url)
            added = history.held_back_incidents[
                len(was.held_back_incidents) if was is not None else 0:]
        if added:
            found.hold.append((channel, added))
        record = ChannelRecord(channel, _stored(history), plan.addressees.get(url),
                               gate.summary_at(history, now))
        if before.records.get(url) != record:
            found.save.append(record)
    found.drop = [r.channel for url, r in before.records.items() if url not in plan.histories]
    found.drop.extend(before.lost)
    return found


def _stored(history: ChannelHistory) -> ChannelHistory:
    """The history as its record keeps it: the held-back incidents are a list of their own,
    and a note bundle's rows are dropped (only a page bundle can be moved earlier, by a
    high-urgency page: the gate reads no note bundle's rows)."""
    note = history.pending_note
    if note is not None and note.rows:
        note = replace(note, rows=())
    return replace(history, held_back_incidents=(), pending_note=note)
