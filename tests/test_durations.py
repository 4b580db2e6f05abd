from __future__ import annotations

from datetime import timedelta

import pytest

from receiver.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1w2d", timedelta(days=9)),
        ("500ms", timedelta(milliseconds=500)),
    ],
)
def test_parse_and_format_round_trip(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "5", "m5", "5m1h", "1h1h", "abc", "-5m", "1.5h", "5 m"])
def test_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["\u0661m", "\u00b2s", "\uff15m"])
def test_rejects_digits_outside_ascii(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["99999999999w", "1000000000d", "9" * 5000 + "s",
                                  "142857143w"])
def test_rejects_what_a_timedelta_cannot_hold_by_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration(text)


def test_the_longest_duration_is_read() -> None:
    assert parse_duration(f"{timedelta.max.days}d") == timedelta(days=timedelta.max.days)
