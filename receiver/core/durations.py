"""Prometheus-style durations: `30s`, `5m`, `1h30m`, `2d`, `1w`, `500ms`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w)")
_UNIT = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_ORDER = list(_UNIT)[::-1]
# What a timedelta holds; no count of any unit below it needs more digits than this.
_MAX_DAYS = timedelta.max.days
_MAX_DIGITS = len(str(timedelta.max // timedelta(milliseconds=1)))


def parse_duration(text: str) -> timedelta:
    """Parse a duration; units must appear from largest to smallest, each at most once."""
    if text == "0":
        return timedelta(0)
    position, total, last = 0, timedelta(0), -1
    for match in _PART.finditer(text):
        unit_rank = _ORDER.index(match.group(2))
        if match.start() != position or unit_rank <= last:
            break
        total = _add(total, match.group(1), match.group(2), text)
        position, last = match.end(), unit_rank
    if position != len(text) or not text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h30m, 2d)")
    return total


def _add(total: timedelta, digits: str, unit: str, text: str) -> timedelta:
    too_long = f"too long: {text[:40]!r} (at most {_MAX_DAYS} days)"
    if len(digits) > _MAX_DIGITS:  # int() refuses 4,300 digits, and is slow long before
        raise ValueError(too_long)
    try:
        return total + int(digits) * _UNIT[unit]
    except OverflowError:
        raise ValueError(too_long) from None


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
