"""Rendering: the message one delivery carries, built from its rows, their incidents and alerts,
and the running config's templates and link secret (a bundle of pages, or of notes, when it
carries several rows)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from receiver.alertmanager.webhook import silence_url
from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.errors import NotFound, StoreUnavailable
from receiver.core.frozen import frozen
from receiver.core.model import Action, EventKind, Incident, IncidentState, MessageReason
from receiver.delivery.plan import Addressed, Outgoing, Summary
from receiver.incidents import facts
from receiver.incidents.facts import LetGo
from receiver.notify.earlier import NOBODY, PagedBefore, ahead_in_run, paged_before
from receiver.notify.links import Links
from receiver.notify.messages import (
    BUNDLE_SHOWN,
    HELD_BACK_SHOWN,
    NOTES_SHOWN,
    HeldIncident,
    MessageContext,
    Unshown,
    held_pages,
    render_bundle,
    render_held_back,
    render_notes,
    summary,
)
from receiver.notify.notifier import Message, mask
from receiver.store import OutboxMessage, Store
from receiver.store.records import IncidentFacts

log = logging.getLogger(__name__)


class Renderer:
    def __init__(self, store: Store, clock: Clock, config: Callable[[], Config]) -> None:
        self._store = store
        self._clock = clock
        self._config = config

    async def render(self, outgoing: Outgoing) -> Message | None:
        """The message for `outgoing`, or None if it cannot be built (a failed delivery, so
        it is retried and, in the end, escalates). Store trouble raises: nothing was tried."""
        config = self._config()
        now = self._clock.now()
        short = outgoing.items[0][0].message.short
        # A bundle's text names only its first few incidents (shown): only theirs are worth
        # reading whole and signing links for (a storm's bundle carries hundreds of rows;
        # each entry's incident is a row to decode, its alerts a query, its links four
        # signatures); the others are counted, coloured and listed by their incident's id.
        shown = shown_of(outgoing.items)
        # Whom the run paged before: only a message of its own says so (a bundle's entries
        # have no room for it; a short text, in what room its summary and link leave).
        alone = len(outgoing.items) == 1
        try:
            contexts = [await self._context(row, await self._whole(incident), config, now,
                                            earlier=alone)
                        for row, incident in outgoing.items[:shown]]
            unshown = [Unshown(incident.id, row.message.reason,
                               config.severity(incident.severity))
                       for row, incident in outgoing.items[shown:]]
            if alone:
                return config.templates.render(contexts[0], short)
            if contexts[0].reason.is_page:
                return render_bundle(contexts, short, unshown)
            return render_notes(contexts, short, unshown)
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("rendering a message for %s failed", mask(outgoing.url))
            return None

    async def _whole(self, incident: IncidentFacts) -> Incident:
        """The whole incident (a pass reads it whole for the entries a message shows:
        dispatch._whole; read here should one come without)."""
        if isinstance(incident, Incident):
            return incident
        return await self._store.incident(incident.id)

    async def held_back(self, held: Summary) -> Message:
        """The summary of what the rate limit held back from one URL: the count, and for each
        of the first incidents its severity and headline, with the acknowledge link while it
        waits for one if pages of it were held. Store trouble raises: nothing was tried."""
        config = self._config()
        now = self._clock.now()
        links = Links(config.link_secret, config.external_url, config.link_ttl)
        recipient = held.addressee.recipient if held.addressee is not None else None
        paged = held_pages(held.reasons)
        incidents: list[HeldIncident] = []
        for incident_id in list(dict.fromkeys(held.incident_ids))[:HELD_BACK_SHOWN]:
            try:
                incident = await self._store.incident(incident_id)
            except NotFound:
                continue
            alerts = () if incident.summary else await self._store.alerts(incident_id)
            ack = (links.url(incident_id, Action.ACK, recipient, now)
                   if paged and recipient and incident.state is IncidentState.TRIGGERED
                   else None)
            incidents.append(HeldIncident(incident_id, config.severity(incident.severity).name,
                                          incident.team, summary(incident, alerts), ack))
        window = config.notifications.rate_window
        short = held.addressee is not None and held.addressee.short
        return render_held_back(held.count, window, held.incident_ids, held.reasons, incidents,
                                short)

    async def _context(
        self, row: Addressed, incident: Incident, config: Config, now: datetime, *,
        earlier: bool = False,
    ) -> MessageContext:
        """The message's context; if `earlier`, whom the earlier steps of a page's run paged
        and the steps a reassignment put ahead of the policy's in it (`_run`)."""
        m = row.message
        recipient = m.recipient
        links = Links(config.link_secret, config.external_url, config.link_ttl)
        run = await self._run(m, incident.id, now) if earlier else _FIRST
        return MessageContext(
            reason=m.reason,
            incident=incident,
            severity=config.severity(incident.severity),
            alerts=await self._store.alerts(incident.id),
            ack_url=links.url(incident.id, Action.ACK, recipient, now),
            resolve_url=links.url(incident.id, Action.RESOLVE, recipient, now),
            incident_url=_incident_url(links, config, incident.id, m, now),
            silence_url=silence_url(incident.external_url, incident.group_labels),
            actor=m.actor,
            changed_to=m.changed_to,
            recipient=recipient,
            step=m.step,
            cycle=m.cycle,
            ahead=run.ahead,
            stale_after=None if m.stale_after is None else timedelta(seconds=m.stale_after),
            status_every=None if m.status_every is None else timedelta(seconds=m.status_every),
            paged_before=run.before,
            paged=await self._exhausted_paged(m, incident.id),
            let_go=run.let_go,
        )

    async def _exhausted_paged(self, message: OutboxMessage, incident_id: int) -> list[str]:
        """Whom an escalation that ran out paged, for its stakeholders' note: from its
        `escalation_exhausted` event (the latest), read only for that note (the outbox row
        does not carry it: a key more in every page's payload)."""
        if message.reason is not MessageReason.STAKEHOLDER_EXHAUSTED:
            return []
        timeline = await self._store.timeline(incident_id)
        ran_out = next((e for e in reversed(timeline)
                        if e.kind is EventKind.ESCALATION_EXHAUSTED), None)
        return [] if ran_out is None else [str(p) for p in ran_out.detail.get("paged", ())]

    async def _run(self, message: OutboxMessage, incident_id: int, now: datetime) -> Run:
        """What the timeline says of the page's run: whom its steps before the page's own
        paged, how many steps a reassignment to a person put ahead of the policy's own in it
        (so the page numbers its step as the reports do), and for a re-escalation whose
        acknowledgement it let go (`facts.let_go`). A first page has no earlier step, and only
        a reassignment puts anyone ahead, in a later run (its own, and those that keep its
        policy: a raised severity, an unack by someone else, a snooze's or a window's end):
        the timeline is read only for the first page of a later run and the later pages (an
        escalated page, a reminder, a later step of a run a person or a window began), which
        are few beside the first pages of a storm (run 0)."""
        step, run, reason = message.step, message.run, message.reason
        if not reason.is_page or step is None or run is None or reason is MessageReason.TRIGGERED:
            return _FIRST
        first = (step, message.cycle) == (0, 0)
        if first and run == 0:
            return _FIRST
        timeline = await self._store.timeline(incident_id)
        ahead = ahead_in_run(timeline, run)
        let_go = (facts.let_go(timeline, run) if reason is MessageReason.RE_ESCALATED
                  else None)
        if first:
            return Run(NOBODY, ahead, let_go)
        return Run(paged_before(timeline, run=run, cycle=message.cycle, step=step,
                                recipient=message.recipient, now=now), ahead, let_go)


@frozen(slots=True)
class Run:
    """What a page says of its escalation run (`Renderer._run`)."""

    before: PagedBefore
    ahead: int
    let_go: LetGo | None = None


# A run's first page, or a page in a bundle: no timeline read.
_FIRST = Run(NOBODY, 0)


def shown_of(items: Sequence[tuple[Addressed, IncidentFacts]]) -> int:
    """How many of a message's rows its text shows: a message of its own, its one; a bundle,
    its first BUNDLE_SHOWN (pages) or NOTES_SHOWN (notes)."""
    if len(items) == 1:
        return 1
    return BUNDLE_SHOWN if items[0][0].message.reason.is_page else NOTES_SHOWN


def _incident_url(
    links: Links, config: Config, incident_id: int, message: OutboxMessage, now: datetime
) -> str:
    """A page to a user links to the incident page signed for them (it opens with a short
    session, so the phone that was paged can act at once); a channel's message, read by many,
    links to the plain page, which asks for a token."""
    recipient = message.recipient
    if message.recipient_kind == "user" and recipient in config.users:
        return links.url(incident_id, "open", recipient, now)
    return f"{config.external_url}/incidents/{incident_id}"
