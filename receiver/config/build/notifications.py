"""Notifications: delivery settings, and the message templates compiled and tried now, so a
typo fails `ackd check-config` instead of a page at 3 AM."""

from __future__ import annotations

from receiver.config.build.builder import Builder
from receiver.notify.messages import Templates
from receiver.notify.notifier import NotificationSettings

Overrides = dict[str, dict[str, str]]


def template_overrides(b: Builder) -> Overrides:
    """The overrides, each compiled and tried on a sample incident; each failure a problem."""
    overrides = {
        reason: {part: text for part, text in t.model_dump().items() if text is not None}
        for reason, t in b.spec.notifications.templates.items()
    }
    for key, message in Templates.check(overrides):
        b.fail(("notifications", "templates", *key.split(".")), message)
    return overrides


def settings(b: Builder, overrides: Overrides) -> NotificationSettings:
    n = b.spec.notifications
    return NotificationSettings(
        workers=n.workers,
        timeout=n.timeout,
        retry_attempts=n.retry.attempts,
        retry_backoff=n.retry.backoff,
        retry_max_backoff=n.retry.max_backoff,
        bundle_window=n.bundle_window,
        rate_limit=n.rate_limit.max,
        rate_window=n.rate_limit.window,
        templates=overrides,
        max_hold=n.max_hold,
    )
