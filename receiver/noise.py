"""Noise control: what to do with the next page to one channel URL, given what it got lately.

A storm of incidents must not become a storm of messages on one phone. Two rules, per URL:

- Bundling: once a page went to a URL, further pages to it within `bundle_window` wait
  (DEFER) until the window closes and then go out together as one message.
- Rate limiting: at most `rate_limit` messages per sliding `rate_window`. Pages beyond that
  are held back (HOLD): they are counted, and once the window frees a slot one summary of
  what was held goes out. Summaries use a slot of the budget like any message, so the bound
  "at most rate_limit messages per URL in any rate_window" holds with them included.

Only pages (triggered, escalated, reminder, re_escalated) pass through the gate: the
acknowledged / resolved / stakeholder messages are few and end the noise, so they always go,
though they are recorded as sends and so count against the budget.

Pure: histories are frozen values, every function takes `now` and returns a new value. The
dispatcher keeps one ChannelHistory per URL in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

PAGE_REASONS = frozenset({"triggered", "escalated", "reminder", "re_escalated"})


def is_page(reason: str) -> bool:
    """Whether a message with this reason is a page (bundled and rate limited)."""
    return reason in PAGE_REASONS


class Verdict(StrEnum):
    SEND = "send"
    DEFER = "defer"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    until: datetime | None = None  # when a DEFERred page goes out with the others


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    """What one URL received lately and what is being held back from it."""

    sent: tuple[datetime, ...] = ()  # send times, oldest first, trimmed to the rate window
    last_send: datetime | None = None
    held: int = 0
    held_incidents: tuple[int, ...] = ()  # distinct ids, in the order they were first held
    held_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class NoiseGate:
    bundle_window: timedelta
    rate_limit: int
    rate_window: timedelta

    def __post_init__(self) -> None:
        if self.bundle_window < timedelta(0):
            raise ValueError(f"bundle_window must not be negative, got {self.bundle_window}")
        if self.rate_limit < 1:
            raise ValueError(f"rate_limit must be at least 1 message, got {self.rate_limit}")
        if self.rate_window <= timedelta(0):
            raise ValueError(f"rate_window must be positive, got {self.rate_window}")

    def recent(self, history: ChannelHistory, now: datetime) -> tuple[datetime, ...]:
        """Send times still inside the sliding rate window ending at `now`."""
        start = now - self.rate_window
        return tuple(t for t in history.sent if t > start)

    def decide(self, history: ChannelHistory, now: datetime) -> Decision:
        """SEND now, DEFER to bundle with what follows, or HOLD for the summary."""
        if len(self.recent(history, now)) >= self.rate_limit:
            return Decision(Verdict.HOLD)
        if history.last_send is not None:
            opens = history.last_send + self.bundle_window
            if now < opens:
                return Decision(Verdict.DEFER, opens)
        return Decision(Verdict.SEND)

    def record_sent(self, history: ChannelHistory, now: datetime) -> ChannelHistory:
        """One message (single, bundle or summary) went to the URL at `now`."""
        return replace(history, sent=(*self.recent(history, now), now), last_send=now)

    def record_held(
        self, history: ChannelHistory, now: datetime, incident_ids: tuple[int, ...], count: int
    ) -> ChannelHistory:
        """`count` pages about `incident_ids` were held back at `now`."""
        if count < 1:
            raise ValueError(f"a hold covers at least one page, got count={count}")
        known = set(history.held_incidents)
        fresh = tuple(dict.fromkeys(i for i in incident_ids if i not in known))
        return replace(
            history,
            held=history.held + count,
            held_incidents=history.held_incidents + fresh,
            held_since=history.held_since or now,
        )

    def summary_at(self, history: ChannelHistory, now: datetime) -> datetime | None:
        """When the summary of held pages can go: once the window has room for a message."""
        if not history.held:
            return None
        recent = self.recent(history, now)
        if len(recent) < self.rate_limit:
            return now
        # The slot frees when the oldest send that keeps the window full slides out of it.
        return recent[len(recent) - self.rate_limit] + self.rate_window

    def summary_due(self, history: ChannelHistory, now: datetime) -> bool:
        due = self.summary_at(history, now)
        return due is not None and due <= now

    def record_summary(self, history: ChannelHistory, now: datetime) -> ChannelHistory:
        """The summary went out: nothing is held any more, and it used a slot."""
        cleared = replace(history, held=0, held_incidents=(), held_since=None)
        return self.record_sent(cleared, now)

    def idle(self, history: ChannelHistory, now: datetime) -> bool:
        """Nothing held and nothing recent enough to matter: the history can be forgotten."""
        if history.held:
            return False
        if self.recent(history, now):
            return False
        return history.last_send is None or now >= history.last_send + self.bundle_window
