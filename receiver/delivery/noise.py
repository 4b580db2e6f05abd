"""Noise control: what to do with the next messages to one channel URL, given what it got lately.

A storm of incidents must not become a storm of messages on one phone or in one channel, and
a page must never wait for a message that only informs. Two kinds of message:

- pages (triggered, escalated, reminder, re_escalated, responder_added, reassigned,
  severity_raised: `MessageReason.is_page`) ask someone to act;
- notes (acknowledged, resolved, stakeholder_declared, stakeholder_resolved,
  stakeholder_exhausted, stale) tell what happened (model.MessageReason says which is which).

Every message passes the gate, per URL, by these rules:

1. Budget: at most `rate_limit` messages per sliding `rate_window`, whatever their kind (a
   bundle or a held-back summary is one message). Beyond it, messages are held back (HOLD):
   they are suppressed on their timelines, counted, and once the window has room one summary
   of what was held goes out, using a slot like any message. Notes, and summaries, leave the
   last slot of the window to a page (NOTE_RESERVE): a storm of resolutions must not spend
   what the next page needs. HOLD is checked first. A high-urgency page is never held back
   (a page is never dropped for noise): it counts against the budget like any message, so
   the notes and low-urgency pages after it are held sooner, but over the budget it is only
   bundled (rules 2 and 3: it waits at most `max_hold`). The low-urgency pages due beside it
   are held back as they would be alone (plan.py splits them off).
2. Bundling, each kind apart: a page goes at once (SEND) unless a page went to the URL within
   `bundle_window`; then it waits (DEFER) for the window to close and goes out together with
   every page that arrived meanwhile, as one message. Notes the same, after the last note. A
   note never delays a page, nor a page a note.
3. A high-urgency page waits at most `max_hold`: the pending bundle it joins goes out by then,
   the pages already in it too (their rows are moved to the earlier time: `reschedule`).
4. A wait that is over is over: once a pending bundle's time has come, its messages go (budget
   allowing), whatever was sent meanwhile. A page that waited for a bundle whose mates
   another pass already sent (two replicas' leases split the bundle's rows, or more were due
   than one pass takes) goes at once too (`overdue`), on its own: it does not wait for the
   next window, and a bundle waiting meanwhile keeps its time.

Retries are not gated: a message passed the gate once and counts once.

Past the gate, a replica sends one message per URL at a time; what queues for a URL behind
its send in progress goes as one message when it ends, pages first (plan.lane_bundle): each
message it joins was counted here, so the budget holds (a joined message may have spent
more than one slot).

Pure: histories are frozen values, every function takes `now` and returns a new value. The
store keeps one ChannelHistory per URL, shared by every replica (channels.py is the adapter).
A history keeps only what the rules read: the last `rate_limit` send times, the last page and
note, the pending bundles, what is held back.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum

from receiver.core.frozen import frozen
from receiver.core.model import MessageReason

NOTE_RESERVE = 1  # slots of each rate window that notes leave to pages


class Kind(StrEnum):
    PAGE = "page"
    NOTE = "note"


def kind_of(reason: MessageReason) -> Kind:
    return Kind.PAGE if reason.is_page else Kind.NOTE


class Verdict(StrEnum):
    SEND = "send"
    DEFER = "defer"
    HOLD = "hold"


@frozen(slots=True)
class Decision:
    verdict: Verdict
    until: datetime | None = None  # when a DEFERred message goes out with the others
    reschedule: tuple[int, ...] = ()  # rows already waiting that now go at `until` too


@frozen(slots=True)
class Pending:
    """Messages of one kind deferred to one URL, to go out together at `release`."""

    release: datetime
    urgent: bool = False  # holds a high-urgency page: `release` is capped and moves no more
    rows: tuple[int, ...] = ()  # outbox rows waiting; kept only while `release` may move


@frozen(slots=True)
class ChannelHistory:
    """What one URL received lately and what is waiting or held back from it."""

    sent: tuple[datetime, ...] = ()  # the last rate_limit send times in the window, oldest first
    last_page: datetime | None = None
    last_note: datetime | None = None
    pending_page: Pending | None = None
    pending_note: Pending | None = None
    held_back: int = 0
    held_back_reasons: tuple[tuple[str, int], ...] = ()  # (reason, count), first held first
    held_back_incidents: tuple[int, ...] = ()  # distinct ids, in the order they were first held
    held_back_since: datetime | None = None

    def last(self, kind: Kind) -> datetime | None:
        return self.last_page if kind is Kind.PAGE else self.last_note

    def pending(self, kind: Kind) -> Pending | None:
        return self.pending_page if kind is Kind.PAGE else self.pending_note

    def with_pending(self, kind: Kind, pending: Pending | None) -> ChannelHistory:
        if kind is Kind.PAGE:
            return replace(self, pending_page=pending)
        return replace(self, pending_note=pending)

    def with_sent(self, kind: Kind, at: datetime) -> ChannelHistory:
        """A message of `kind` went at `at`: it is the last, and the bundle it was goes no
        more; a bundle still waiting for a later time (an overdue page went on its own) keeps
        waiting."""
        pending = self.pending(kind)
        if pending is not None and pending.release <= at:
            pending = None
        if kind is Kind.PAGE:
            return replace(self, last_page=at, pending_page=pending)
        return replace(self, last_note=at, pending_note=pending)


@frozen(slots=True)
class NoiseGate:
    bundle_window: timedelta
    rate_limit: int
    rate_window: timedelta
    max_hold: timedelta = timedelta(seconds=5)

    def __post_init__(self) -> None:
        if self.bundle_window < timedelta(0):
            raise ValueError(f"bundle_window must not be negative, got {self.bundle_window}")
        if self.rate_limit < 1:
            raise ValueError(f"rate_limit must be at least 1 message, got {self.rate_limit}")
        if self.rate_window <= timedelta(0):
            raise ValueError(f"rate_window must be positive, got {self.rate_window}")
        if self.max_hold < timedelta(0):
            raise ValueError(f"max_hold must not be negative, got {self.max_hold}")

    def budget(self, kind: Kind) -> int:
        """How many messages of the window may be spent before one of this kind is held back."""
        if kind is Kind.NOTE and self.rate_limit > NOTE_RESERVE:
            return self.rate_limit - NOTE_RESERVE
        return self.rate_limit

    def over_budget(self, history: ChannelHistory, kind: Kind, now: datetime) -> bool:
        """The window's budget for `kind` is spent: what is not exempt is held back."""
        return len(self.recent(history, now)) >= self.budget(kind)

    def recent(self, history: ChannelHistory, now: datetime) -> tuple[datetime, ...]:
        """Send times still inside the sliding rate window ending at `now`."""
        start = now - self.rate_window
        return tuple(t for t in history.sent if t > start)

    def decide(
        self, history: ChannelHistory, kind: Kind, now: datetime, *, urgent: bool = False,
        overdue: bool = False,
    ) -> Decision:
        """SEND now, DEFER to bundle with what follows, or HOLD for the summary: for messages
        of `kind` due at `now` (`urgent`: at least one is a high-urgency page; `overdue`: at
        least one waited for a bundle already, whose time has come)."""
        if self.over_budget(history, kind, now) and not (urgent and kind is Kind.PAGE):
            return Decision(Verdict.HOLD)  # rule 1: a high-urgency page is never held
        if overdue and kind is Kind.PAGE:
            return Decision(Verdict.SEND)  # rule 4: its wait is over
        pending, last = history.pending(kind), history.last(kind)
        if pending is not None:
            if now >= pending.release:
                return Decision(Verdict.SEND)
            release = pending.release
        elif last is None or now >= last + self.bundle_window:
            return Decision(Verdict.SEND)
        else:
            release = last + self.bundle_window
        if urgent and kind is Kind.PAGE:
            release = min(release, now + self.max_hold)
        moved = pending.rows if pending is not None and release < pending.release else ()
        return Decision(Verdict.DEFER, release, moved)

    def record_deferred(
        self, history: ChannelHistory, kind: Kind, until: datetime, rows: tuple[int, ...],
        *, urgent: bool = False,
    ) -> ChannelHistory:
        """`rows` of `kind` wait until `until` (a DEFER decision's), with those already waiting."""
        before = history.pending(kind)
        urgent = (urgent and kind is Kind.PAGE) or (before is not None and before.urgent)
        # Only a bundle without a high-urgency page can be moved earlier; once capped, its
        # rows need not be remembered (and a storm's thousands of them are not copied).
        waiting = () if urgent else (before.rows if before is not None else ()) + rows
        return history.with_pending(kind, Pending(until, urgent, waiting))

    def record_sent(self, history: ChannelHistory, kind: Kind, now: datetime) -> ChannelHistory:
        """One message of `kind` (single or bundle) went to the URL at `now`."""
        return self._spend(history, now).with_sent(kind, now)

    def _spend(self, history: ChannelHistory, now: datetime) -> ChannelHistory:
        # The rules read at most the last rate_limit sends: keep no more, so one record costs
        # at most the budget, however many messages a storm offers.
        recent = self.recent(history, now)
        if len(recent) >= self.rate_limit:
            recent = recent[len(recent) - self.rate_limit + 1:]
        return replace(history, sent=(*recent, now))

    def record_held_back(
        self, history: ChannelHistory, kind: Kind, now: datetime,
        incident_ids: tuple[int, ...], reasons: tuple[str, ...],
    ) -> ChannelHistory:
        """Messages of `kind` with these `reasons` (one each) about `incident_ids` were held
        back at `now`."""
        if not reasons:
            raise ValueError("a hold covers at least one message")
        known = set(history.held_back_incidents)
        fresh = tuple(dict.fromkeys(i for i in incident_ids if i not in known))
        counts = dict(history.held_back_reasons)
        for reason in reasons:
            counts[reason] = counts.get(reason, 0) + 1
        after = replace(
            history,
            held_back=history.held_back + len(reasons),
            held_back_reasons=tuple(counts.items()),
            held_back_incidents=history.held_back_incidents + fresh,
            held_back_since=history.held_back_since or now,
        )
        pending = after.pending(kind)
        if pending is not None and now >= pending.release:
            after = after.with_pending(kind, None)  # the bundle's time came, and it was held back
        return after

    def summary_at(self, history: ChannelHistory, now: datetime) -> datetime | None:
        """When the summary of held-back messages can go: once the window has room for a note (a
        summary only informs, so it too leaves the last slot to a page)."""
        if not history.held_back:
            return None
        recent, budget = self.recent(history, now), self.budget(Kind.NOTE)
        if len(recent) < budget:
            return now
        # The slot frees when the oldest send that keeps the budget spent slides out of it.
        return recent[len(recent) - budget] + self.rate_window

    def summary_due(self, history: ChannelHistory, now: datetime) -> bool:
        due = self.summary_at(history, now)
        return due is not None and due <= now

    def record_summary(self, history: ChannelHistory, now: datetime) -> ChannelHistory:
        """The summary went out: nothing is held back any more, and it used a slot."""
        cleared = replace(history, held_back=0, held_back_reasons=(), held_back_incidents=(),
                          held_back_since=None)
        return self._spend(cleared, now)

    def expire(self, history: ChannelHistory, now: datetime) -> ChannelHistory:
        """After a pass at `now`: a pending bundle whose time has come is over. Its rows were
        due and handled (sent, held, or suppressed with their incident before reaching the
        gate); left in place, it would let the next message skip the bundle window."""
        for kind in Kind:
            pending = history.pending(kind)
            if pending is not None and now >= pending.release:
                history = history.with_pending(kind, None)
        return history

    def idle(self, history: ChannelHistory, now: datetime) -> bool:
        """Nothing held back, waiting or recent enough to matter: the history can be forgotten."""
        if history.held_back or history.pending_page or history.pending_note:
            return False
        if self.recent(history, now):
            return False
        return all(last is None or now >= last + self.bundle_window
                   for last in (history.last_page, history.last_note))
