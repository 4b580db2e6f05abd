"""The timeline events of deliveries: sent or failed (with the attempt and the result),
suppressed (and why), and the held-back summary. The URL is always masked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.core.model import EventKind, TimelineEvent
from receiver.delivery.plan import Addressed, Summary
from receiver.notify.notifier import (
    Delivery,
    mask,
    scheme,
)
from receiver.store.records import OutboxMessage

HELD_BACK_SUMMARY = "held_back_summary"


def _channel_detail(message: OutboxMessage | None, url: str) -> dict[str, Any]:
    """The message's facts, with the URL masked: the raw URL never reaches an event."""
    detail = {
        "recipient": message.recipient if message else None,
        "recipient_kind": message.recipient_kind if message else None,
        "reason": message.reason.value if message else None,
        "step": message.step if message else None,
        "cycle": message.cycle if message else 0,
        "url": mask(url) if url else None,  # none: the contact could not be resolved
        "scheme": scheme(url),
    }
    if message is not None and message.run is not None:
        # A page's run: with its step, it names the step_fired event that sent it (a drill's
        # report tells a reassigned person's page from the policy's first step by it).
        detail["run"] = message.run
    return detail


def delivery_event(
    message: OutboxMessage | None, url: str, attempts: int, delivery: Delivery, bundled: int,
    now: datetime,
) -> TimelineEvent:
    """The result of attempt number `attempts + 1` of a message to `url`."""
    detail = _channel_detail(message, url)
    detail.update(
        attempt=attempts + 1,
        result=delivery.status.value,
        error=delivery.error,
        seconds=round(delivery.seconds, 3),
    )
    if bundled > 1:
        detail["bundled"] = bundled
    kind = EventKind.NOTIFICATION_SENT if delivery.ok else EventKind.NOTIFICATION_FAILED
    return TimelineEvent(now, kind, "ackd", detail)


def suppressed_event(row: Addressed, why: str, now: datetime) -> TimelineEvent:
    detail = _channel_detail(row.message, row.url)
    # "reason" says why it was not sent; the page's own reason is kept beside it.
    detail.update(reason=why, message_reason=row.message.reason.value)
    return TimelineEvent(now, EventKind.NOTIFICATION_SUPPRESSED, "ackd", detail)


def summary_event(summary: Summary, delivery: Delivery, now: datetime) -> TimelineEvent:
    detail = _channel_detail(summary.addressee, summary.url)
    detail.update(
        reason=HELD_BACK_SUMMARY, step=None, cycle=0, held=summary.count, attempt=1,
        result=delivery.status.value, error=delivery.error, seconds=round(delivery.seconds, 3),
    )
    kind = EventKind.NOTIFICATION_SENT if delivery.ok else EventKind.NOTIFICATION_FAILED
    return TimelineEvent(now, kind, "ackd", detail)
