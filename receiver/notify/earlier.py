"""Who a page's reader was paged after: the people (and channels) the earlier steps of the same
escalation run paged, read from the incident's timeline, so that bo, escalated to at step 2,
reads "ana (step 1) paged 5m ago" and can call ana or take it.

Pure: the renderer reads the timeline and hands it here with the page's run, cycle and step.
A step's `step_fired` event names whom it reached; a `page_suppressed` event of the same step
and instant says a maintenance window held that person's page, so they were not paged; the
delivery events (`notification_sent`, `notification_failed`) of the run's earlier steps say
whether any page to them went out. Steps of earlier runs (before an unacknowledgement, a
reassignment, a raised severity, a window's end) are another story and are left out.

Steps are numbered as the reports and drills number them (incidents.facts.step_fired): the
policy's own from 1, the person a reassignment put ahead of the policy (`ahead` on the run's
events) by no number, so the policy's first step behind them is still step 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from receiver.core.frozen import frozen
from receiver.core.model import EventKind, TimelineEvent
from receiver.incidents.facts import step_fired

# How many of the people paged before a page names (the latest first); the rest are counted.
SHOWN = 3


@frozen(slots=True)
class EarlierPage:
    """One person (or channel) an earlier step of the run paged: at which step and when first,
    how long before `now` that was (and the last page to them, if they were paged again), and
    whether every delivery to them failed so far (`failed`: none went out, one failed)."""

    name: str
    # The policy's own step, 1 for its first; None for the person a reassignment put ahead
    # of the policy's steps, whose steps behind them keep their own numbers.
    step: int | None
    at: datetime
    ago: timedelta
    again_ago: timedelta | None = None
    failed: bool = False


@frozen(slots=True)
class PagedBefore:
    """The people paged before, the latest first, at most SHOWN; `more`: how many others."""

    shown: tuple[EarlierPage, ...] = ()
    more: int = 0


NOBODY = PagedBefore()


def paged_before(
    events: Iterable[TimelineEvent], *, run: int, cycle: int, step: int, recipient: str,
    now: datetime, shown: int = SHOWN,
) -> PagedBefore:
    """The people the steps of `run` before (`cycle`, `step`) paged, but `recipient` (the
    reader), each once: when first paged in the run, at which step, and whether any page to
    them was delivered. The latest paged first; SHOWN of them, the others counted."""
    held: set[tuple[datetime, Any, str]] = set()
    fired: list[tuple[TimelineEvent, Mapping[str, Any]]] = []
    delivered: set[str] = set()
    failed: set[str] = set()
    for event in events:
        d = event.detail
        if event.kind is EventKind.PAGE_SUPPRESSED:
            held.add((event.at, d.get("step"), str(d.get("recipient"))))
        elif d.get("run") != run or not _before(d, cycle, step):
            continue
        elif event.kind is EventKind.STEP_FIRED:
            fired.append((event, d))
        elif event.kind is EventKind.NOTIFICATION_SENT:
            delivered.add(str(d.get("recipient")))
        elif event.kind is EventKind.NOTIFICATION_FAILED and d.get("recipient") is not None:
            # Escalation's account of a step whose every page failed names no recipient
            # (engine.delivery_failed): its pages' own events say whom.
            failed.add(str(d["recipient"]))
    first: dict[str, tuple[datetime, int | None]] = {}
    last: dict[str, datetime] = {}
    for event, d in fired:
        for name in (str(n) for n in d.get("recipients") or ()):
            if name == recipient or (event.at, d.get("step"), name) in held:
                continue
            first.setdefault(name, (event.at, step_fired(event).number))
            last[name] = event.at
    latest = sorted(first, key=lambda name: last[name], reverse=True)
    pages = tuple(
        EarlierPage(
            name=name, step=first[name][1], at=first[name][0], ago=now - first[name][0],
            again_ago=now - last[name] if last[name] != first[name][0] else None,
            failed=name in failed and name not in delivered,
        )
        for name in latest[:shown]
    )
    return PagedBefore(pages, max(0, len(latest) - shown))


def ahead_in_run(events: Iterable[TimelineEvent], run: int) -> int:
    """How many steps a reassignment put ahead of the policy's own in escalation run `run`
    (its `step_fired` events say; 0 when none fired yet, or none was put ahead)."""
    return next((int(e.detail.get("ahead", 0)) for e in events
                 if e.kind is EventKind.STEP_FIRED and e.detail.get("run") == run), 0)


def _before(detail: Mapping[str, Any], cycle: int, step: int) -> bool:
    """The event is of a step of the run that came before the page's own."""
    at_step = detail.get("step")
    if not isinstance(at_step, int):
        return False
    return (int(detail.get("cycle", 0)), at_step) < (cycle, step)
