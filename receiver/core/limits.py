"""What one webhook may ask of the event loop: at most so many alerts, labels and groups.

Everything a webhook costs the loop grows with its alerts, their labels and the groups they
fall into: a body of 1 MiB opening 10,919 groups held the loop for 2.9 s, one alert with 31,000
labels for 125 ms, and every other webhook waited. The parse and the routing of a large body
run beside the loop (incidents.Incidents), and its store work is cut into slices that other
webhooks' writes come between; these limits bound what is left, the work one slice cannot
split, and refuse the rest with a 400 naming it. Alertmanager's own `max_alerts` (in the
receiver's webhook_config) truncates a group to that many alerts instead, and says so in
`truncatedAlerts`, which ackd records on the incident: set it at or under `webhook.max_alerts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from receiver.core.errors import PayloadError
from receiver.core.frozen import frozen

# Measured on a 2-core machine (bench/abuse.py): a new incident's alerts cost the loop about
# 20 µs each in its store job, and as much again when its page is rendered; 500 alerts of 20
# labels keep each of those steps near 10 ms, a fifth of the 50 ms an ordinary webhook may
# wait, and 500 new incidents' pages are what the dispatcher then has to render. A body past
# them is refused after its decoding (1 to 10 ms for 1 MiB), before any alert is read.
DEFAULT_MAX_ALERTS = 500
DEFAULT_MAX_LABELS = 10_000
DEFAULT_MAX_GROUPS = 500


@frozen(slots=True)
class WebhookLimits:
    """`webhook.max_alerts`, `webhook.max_labels` (all alerts together) and
    `webhook.max_groups` (incident groups one webhook reaches)."""

    max_alerts: int = DEFAULT_MAX_ALERTS
    max_labels: int = DEFAULT_MAX_LABELS
    max_groups: int = DEFAULT_MAX_GROUPS

    def check_alerts(self, alerts: int, labels: Iterable[int]) -> None:
        """PayloadError naming the first thing past a limit in a webhook of `alerts` alerts
        whose label counts are `labels`. Called by the parser as soon as the document is
        read, before any alert is: a body refused here costs its decoding and no more."""
        if alerts > self.max_alerts:
            raise PayloadError(
                "alerts",
                f"{alerts} alerts in one webhook, more than webhook.max_alerts "
                f"({self.max_alerts}); set max_alerts in Alertmanager's webhook_config",
            )
        total = 0
        for number, count in enumerate(labels):
            total += count
            if total > self.max_labels:
                raise PayloadError(
                    f"alerts[{number}].labels",
                    f"more than webhook.max_labels ({self.max_labels}) labels in one webhook",
                )

    def check_groups(self, groups: Mapping[str, object]) -> None:
        if len(groups) > self.max_groups:
            raise PayloadError(
                "alerts",
                f"these alerts fall into {len(groups)} incident groups, more than "
                f"webhook.max_groups ({self.max_groups})",
            )


# What the parser checks when it is given no limits (tests, tools): nothing.
UNLIMITED = WebhookLimits(2**63, 2**63, 2**63)
