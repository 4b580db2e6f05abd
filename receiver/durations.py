"""Prometheus-style durations: `30s`, `5m`, `1h30m`, `2d`, `1w`, `500ms`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNIT = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_ORDER = list(_UNIT)[::-1]


def parse_duration(text: str) -> timedelta:
    """Parse a duration; units must appear from largest to smallest, each at most once."""
    if text == "0":
        return timedelta(0)
    position, total, last = 0, timedelta(0), -1
    for match in _PART.finditer(text):
        unit_rank = _ORDER.index(match.group(2))
        if match.start() != position or unit_rank <= last:
            break
        total += int(match.group(1)) * _UNIT[match.group(2)]
        position, last = match.end(), unit_rank
    if position != len(text) or not text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m, 2d)")
    return total


def format_duration(value: timedelta) -> str:
    remaining = value // timedelta(milliseconds=1)
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit in _ORDER:
        size = _UNIT[unit] // timedelta(milliseconds=1)
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
