"""What the web page shows, worked out from domain objects and `now`: pure functions, so the
templates only lay out values and the tests read them without a browser."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from receiver.config.model import Config
from receiver.core.frozen import frozen
from receiver.core.model import TimelineEvent
from receiver.incidents.reports import Share
from receiver.oncall.schedules import Schedule, next_change, on_call


def age(since: datetime, now: datetime) -> str:
    """A short duration for a phone's narrow column: 45s, 12m, 3h 4m, 2d 3h."""
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def stamp(at: datetime | None) -> str:
    """A UTC time to the second, as people read it on a timeline."""
    return "" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")


@frozen(slots=True)
class OnCallRow:
    team: str
    schedule: str
    layer: str
    who: str  # "" when nobody is on call in that layer now
    until: datetime | None  # None: it does not change


def on_call_now(
    config: Config, now: datetime, laid: Callable[[Schedule], Schedule] = lambda s: s
) -> list[OnCallRow]:
    """Who is on call now, for every team with a schedule, per layer, and until when;
    `laid` lays the run-time overrides and swaps over a schedule (the roster's)."""
    rows = []
    for team in config.teams.values():
        if team.schedule is None:
            continue
        schedule = laid(config.schedules[team.schedule])
        for layer in schedule.layers:
            rows.append(OnCallRow(
                team.name, schedule.name, layer.name, on_call(schedule, layer.name, now) or "",
                next_change(schedule, layer.name, now),
            ))
    return rows


def event_detail(event: TimelineEvent) -> str:
    """An event's detail on one line: key=value pairs, in the order the event recorded them."""
    return ", ".join(f"{key}={_value(value)}" for key, value in event.detail.items())


def _value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def seconds(value: float | None) -> str:
    """A report's figure in seconds, as people read it; "-" when there is none."""
    if value is None:
        return "-"
    return age(datetime.min, datetime.min + timedelta(seconds=round(value)))


def share(part: Share) -> str:
    if part.rate is None:
        return "-"
    return f"{part.part} of {part.whole} ({part.rate * 100:.1f}%)"
