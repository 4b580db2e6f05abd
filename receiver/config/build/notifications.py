"""Notifications: delivery settings, and the message templates compiled and tried now, so a
typo fails `ackd check-config` instead of a page at 3 AM; a template that numbers the step
its own way is a warning (`template_step_number`)."""

from __future__ import annotations

import re

from receiver.config.build.builder import Builder
from receiver.config.yamlsource import Located
from receiver.core.errors import ConfigProblem
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


# `step + 1` (`step+1`, `(step +1)`) on the template variable itself, not on another's
# attribute (`p.step`, `loop.step`), nor `step + 10`.
_STEP_PLUS_ONE = re.compile(r"(?<![\w.])step\s*\+\s*1(?![\w.])")


def step_plus_one(source: Located) -> list[ConfigProblem]:
    """A warning for each template that prints `step + 1`: the page's place in its
    escalation run, which is not the step the reports, drills and the default pages name
    once a reassignment to a person put them ahead of the policy (the policy's first step
    behind them is step 1 there, and step + 1 says 2). `number` is that step. A warning,
    not an error: the template still renders as it did. `source` is the document the config
    was built from: what a template says is the document's."""
    notifications = source.data.get("notifications") or {}
    found = []
    for reason, parts in (notifications.get("templates") or {}).items():
        for part, text in (parts or {}).items():
            if isinstance(text, str) and _STEP_PLUS_ONE.search(text):
                found.append(source.problem(
                    ("notifications", "templates", reason, part),
                    "warning: this template prints step + 1, the page's place in its "
                    "escalation run, which is not the step the reports, drills and default "
                    "pages name after a reassignment to a person; use {{ number }}, the "
                    "policy's own step from 1 (none for the reassigned person's own page)"))
    return found
