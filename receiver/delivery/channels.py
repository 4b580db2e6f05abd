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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from receiver.delivery.noise import ChannelHistory, NoiseGate
from receiver.delivery.plan import PassPlan
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


def held(records: Iterable[ChannelRecord], urls: Iterable[str], contact_url: ContactUrl) -> Held:
    """The records read for a pass, by URL: that of the pass's rows whose digest it is, else
    the one its summary's addressee has now. A summary whose contact is gone, or has another
    URL now, cannot go: its record is dropped (and the messages it held are on their
    timelines as suppressed)."""
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
                log.warning("dropped the summary of %d held-back message(s) to a contact no"
                            " longer configured", record.history.held_back)
            found.lost.append(record.channel)
            continue
        found.records[url] = record
        found.histories[url] = record.history
        if record.addressee is not None:
            found.addressees[url] = record.addressee
    return found


def changes(
    gate: NoiseGate, before: Held, plan: PassPlan, now: datetime
) -> tuple[list[ChannelRecord], list[str]]:
    """The records to write (those the pass changed) and the channels to forget (those
    whose history went idle, or whose summary has nowhere to go)."""
    save: list[ChannelRecord] = []
    for url, history in plan.histories.items():
        record = ChannelRecord(channel_key(url), history, plan.addressees.get(url),
                               gate.summary_at(history, now))
        if before.records.get(url) != record:
            save.append(record)
    drop = [r.channel for url, r in before.records.items() if url not in plan.histories]
    return save, [*drop, *before.lost]
