"""Maintenance windows, pure: which window covers an incident at `now`.

A window names a team, matchers, or both, and a span [start, end). It covers an incident at
`now` when `now` is inside the span, the incident is the team's (if a team is named), and every
firing alert of the incident matches every matcher (if any are named): Alertmanager mutes a
group only when all its alerts are silenced, and so does ackd. While a window covers an
incident, its pages are not sent but recorded on its timeline as suppressed, and its escalation
waits; when no window covers it any more and it is still triggered, it escalates from its first
step (escalation.engine.resume). Windows come from the config (`maintenance:`, by name) or
from the API (`POST /api/v1/maintenance`, by number, kept in the store).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from datetime import datetime

from receiver.alertmanager.matchers import Matcher
from receiver.core.frozen import frozen


@frozen
class Window:
    """A maintenance window. `id` is its number for the API's windows, `name` for the
    config's (the config's have no number: they change only with the file)."""

    starts_at: datetime
    ends_at: datetime
    team: str | None = None
    matchers: tuple[Matcher, ...] = ()
    comment: str = ""
    created_by: str = "config"
    id: int | None = None
    name: str | None = None
    created_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.ends_at <= self.starts_at:
            raise ValueError("end must be after start")
        if self.team is None and not self.matchers:
            raise ValueError("a window needs a team, matchers, or both")

    @property
    def label(self) -> str:
        """How the timeline and the API name it: `#3` or the config's name."""
        return f"#{self.id}" if self.id is not None else str(self.name)

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def covers(self, team: str, firing: Sequence[Mapping[str, str]], now: datetime) -> bool:
        if not self.active(now):
            return False
        if self.team is not None and self.team != team:
            return False
        if not self.matchers:
            return True
        # With matchers, an incident with no firing alert left is not the window's to hold.
        return bool(firing) and all(
            all(m.matches(labels) for m in self.matchers) for labels in firing
        )


def active(windows: Iterable[Window], now: datetime) -> list[Window]:
    return [w for w in windows if w.active(now)]


def covering(
    windows: Iterable[Window], team: str, firing: Sequence[Mapping[str, str]], now: datetime
) -> Window | None:
    """The covering window that ends last (the escalation waits for it), or None."""
    found = [w for w in windows if w.covers(team, firing, now)]
    return max(found, key=lambda w: w.ends_at) if found else None


def needs_alerts(windows: Iterable[Window], team: str, now: datetime) -> bool:
    """Whether a window active now might cover an incident of `team` once its alerts are
    read: the store is asked for them only then."""
    return any(w.active(now) and (w.team is None or w.team == team) for w in windows)


def current(windows: Iterable[Window], now: datetime) -> list[Window]:
    """Windows not over yet (active or to come), soonest first: what the API lists."""
    return sorted((w for w in windows if w.ends_at > now), key=lambda w: (w.starts_at, w.label))
