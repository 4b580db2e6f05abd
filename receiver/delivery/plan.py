"""One dispatcher pass decided purely: which due rows go now (alone or bundled), which wait,
which are suppressed, and the held-back summaries due, as a PassPlan the loop applies; what
of the messages queued behind a URL's send in progress goes next, as one (lane_bundle); and
the backoff between attempts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from receiver.core.frozen import frozen
from receiver.core.model import IncidentState, MessageReason
from receiver.delivery.noise import ChannelHistory, Kind, NoiseGate, Verdict, kind_of
from receiver.store.records import IncidentFacts, OutboxMessage, OutboxRow


@frozen(slots=True)
class Addressed:
    """A due outbox row with the URL its contact has in the running config, and the message
    with that contact's `short` (in memory only: nothing writes them back to the row)."""

    row: OutboxRow
    message: OutboxMessage
    url: str

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def incident_id(self) -> int:
        return self.row.incident_id

    @property
    def attempts(self) -> int:
        return self.row.attempts

    @property
    def waited(self) -> bool:
        """The row was due later than it was made: it waited for a bundle already (or was
        given back after a pass that failed), and that wait is over."""
        return self.row.next_attempt_at > self.row.created_at


@frozen(slots=True)
class Send:
    """A message the plan sends to one URL, with the rows it delivers (several when bundled)
    and what the pass read of their incidents."""

    url: str
    items: tuple[tuple[Addressed, IncidentFacts], ...]


@frozen(slots=True)
class Outgoing:
    """One message to one URL and the outbox rows it delivers, with their incidents, as the
    pass hands it to a send: whole (an Incident) for the rows its text shows (render.shown_of:
    a bundle's first few), what the pass read of them for the others (counted, coloured and
    listed by id, never read whole: a storm's bundle carries hundreds)."""

    url: str
    items: tuple[tuple[Addressed, IncidentFacts], ...]


@frozen(slots=True)
class Summary:
    """The one message that tells a URL what the rate limit held back from it."""

    url: str
    count: int
    incident_ids: tuple[int, ...]
    addressee: OutboxMessage | None  # one of the held-back messages: to whom they were
    reasons: tuple[tuple[str, int], ...] = ()  # how many of each reason were held back


@dataclass(slots=True)
class PassPlan:
    histories: dict[str, ChannelHistory]
    addressees: dict[str, OutboxMessage]
    sends: list[Send] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    deferred: list[tuple[int, datetime]] = field(default_factory=list)  # first attempts' ids
    suppressed: list[tuple[Addressed, IncidentFacts | None, str]] = field(
        default_factory=list)

    @property
    def bookkeeping(self) -> bool:
        return bool(self.deferred or self.suppressed)


def plan_pass(
    gate: NoiseGate,
    histories: Mapping[str, ChannelHistory],
    addressees: Mapping[str, OutboxMessage],
    due: Iterable[tuple[Addressed, IncidentFacts | None]],
    now: datetime,
    urgent: Callable[[IncidentFacts], bool] = lambda incident: False,
) -> PassPlan:
    """What to do with the due rows at `now`, and the URL histories that follow from it.
    `urgent` says whether an incident's pages are high urgency (they wait at most max_hold)."""
    plan = PassPlan(dict(histories), dict(addressees))
    _plan_summaries(gate, plan, now)  # a freed slot goes first to what waited longest
    # Pages and notes to one URL are gated, and bundled, apart: a note never delays a page.
    fresh: dict[tuple[str, Kind], list[tuple[Addressed, IncidentFacts]]] = {}
    retries: dict[tuple[str, Kind], list[tuple[Addressed, IncidentFacts]]] = {}
    for row, incident in due:
        url, kind = row.url, kind_of(row.message.reason)
        why = _unwanted(row, incident)
        if why is not None:
            plan.suppressed.append((row, incident, why))
        else:
            assert incident is not None
            # A retry was let through the gate on its first attempt: it is not counted again;
            # nor is a message sent again because its result was never written.
            (retries if row.attempts or row.row.gated else fresh).setdefault(
                (url, kind), []).append((row, incident))
    plan.sends.extend(Send(url, tuple(items)) for (url, _), items in retries.items())
    for (url, kind), items in fresh.items():
        _gate_rows(gate, plan, url, kind, items, now, urgent)
    expired = {u: gate.expire(h, now) for u, h in plan.histories.items()}
    plan.histories = {u: h for u, h in expired.items() if not gate.idle(h, now)}
    plan.addressees = {u: h for u, h in plan.addressees.items() if u in plan.histories}
    return plan


def _history(plan: PassPlan, url: str) -> ChannelHistory:
    return plan.histories.get(url) or ChannelHistory()


def _plan_summaries(gate: NoiseGate, plan: PassPlan, now: datetime) -> None:
    for url, history in list(plan.histories.items()):
        if gate.summary_due(history, now):
            addressee = plan.addressees.get(url)
            plan.summaries.append(Summary(url, history.held_back, history.held_back_incidents,
                                          addressee, history.held_back_reasons))
            plan.histories[url] = gate.record_summary(history, now)


def _gate_rows(
    gate: NoiseGate,
    plan: PassPlan,
    url: str,
    kind: Kind,
    items: list[tuple[Addressed, IncidentFacts]],
    now: datetime,
    urgent: Callable[[IncidentFacts], bool],
) -> None:
    """First attempts of one kind to one URL: one message, a deferral, or held back, for all;
    except that over the budget the high-urgency pages go on (bundled) and the low-urgency
    ones beside them are held back, as they would be without them."""
    history = _history(plan, url)
    hurry = kind is Kind.PAGE and any(urgent(incident) for _, incident in items)
    if hurry and gate.over_budget(history, kind, now):
        low = [item for item in items if not urgent(item[1])]
        if low:
            _hold(gate, plan, url, kind, low, now)
            items = [item for item in items if urgent(item[1])]
            history = _history(plan, url)
    overdue = any(row.waited for row, _ in items)
    decision = gate.decide(history, kind, now, urgent=hurry, overdue=overdue)
    if decision.verdict is Verdict.SEND:
        plan.sends.append(Send(url, tuple(items)))
        plan.histories[url] = gate.record_sent(history, kind, now)
    elif decision.verdict is Verdict.DEFER:
        until = decision.until
        assert until is not None
        plan.deferred.extend((row_id, until) for row_id in decision.reschedule)
        plan.deferred.extend((row.id, until) for row, _ in items)
        rows = tuple(row.id for row, _ in items)
        plan.histories[url] = gate.record_deferred(history, kind, until, rows, urgent=hurry)
    else:
        _hold(gate, plan, url, kind, items, now)


def _hold(
    gate: NoiseGate, plan: PassPlan, url: str, kind: Kind,
    items: list[tuple[Addressed, IncidentFacts]], now: datetime,
) -> None:
    """These messages are held back by the rate limit, for the URL's summary."""
    plan.suppressed.extend((row, incident, "rate limited") for row, incident in items)
    ids = tuple(incident.id for _, incident in items)
    reasons = tuple(row.message.reason.value for row, _ in items)
    plan.histories[url] = gate.record_held_back(_history(plan, url), kind, now, ids, reasons)
    plan.addressees[url] = items[0][0].message


def _unwanted(row: Addressed, incident: IncidentFacts | None) -> str | None:
    """Why the row is not to be sent (the reason it is suppressed with), or None: its
    incident is gone, or it is a page and someone handled the incident since."""
    if incident is None:
        return "incident not found"
    if kind_of(row.message.reason) is Kind.PAGE and not _page_wanted(row.message.reason,
                                                                     incident.state):
        return f"incident {incident.state.value}"
    return None


def unwanted_pages(
    items: Iterable[tuple[Addressed, IncidentFacts]], now: Mapping[int, IncidentFacts],
) -> list[tuple[Addressed, IncidentFacts | None, str]]:
    """Of a message's rows as its turn in its URL's lane comes, the pages no longer wanted,
    by their incidents `now` (by id; one missing is gone): acknowledged, taken or resolved
    while the message waited behind the send in progress, as the pass would have found
    them. Notes go: they tell of what happened."""
    found = []
    for row, _ in items:
        if kind_of(row.message.reason) is Kind.PAGE:
            incident = now.get(row.incident_id)
            why = _unwanted(row, incident)
            if why is not None:
                found.append((row, incident, why))
    return found


def _page_wanted(reason: MessageReason, state: IncidentState) -> bool:
    """A page asks for an acknowledgement, so it goes only while none came; a person paged
    into an incident that others already work is wanted until it is resolved."""
    if reason is MessageReason.RESPONDER_ADDED:
        return state is not IncidentState.RESOLVED
    return state is IncidentState.TRIGGERED


def lane_bundle(queued: Sequence[Outgoing]) -> tuple[int, ...]:
    """Which of the messages queued for one URL (oldest first) go out as its next message when
    its lane frees: every page queued, as one bundle, so a page waits at most for the send in
    progress and its own, however many queued beside it; when no page waits, every note.
    Pages and notes go apart, as the gate bundles them, and pages first: a note never delays
    a page. Each passed the gate, and was counted against the URL's budget, in its own pass;
    together they are one message, so the budget is never exceeded (it may be spent early)."""
    pages = tuple(n for n, outgoing in enumerate(queued)
                  if kind_of(outgoing.items[0][0].message.reason) is Kind.PAGE)
    return pages or tuple(range(len(queued)))


def joined(outgoings: Sequence[Outgoing]) -> Outgoing:
    """One message to their URL that delivers every row of `outgoings`, in their order."""
    if not outgoings or len({outgoing.url for outgoing in outgoings}) != 1:
        raise ValueError("a joined message needs messages to one URL")
    if len(outgoings) == 1:
        return outgoings[0]
    return Outgoing(outgoings[0].url,
                    tuple(item for outgoing in outgoings for item in outgoing.items))


def backoff(base: timedelta, cap: timedelta, attempts: int) -> timedelta:
    """The wait before the next attempt after `attempts` failed ones (doubling, capped)."""
    doublings = min(max(attempts - 1, 0), 32)  # beyond this the cap has long won
    return min(base * (1 << doublings), cap)
