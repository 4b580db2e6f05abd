"""Numbers and JSON text from outside, read so that every bad one is a PayloadError naming it.

Python reads more than a client should send: `int()` takes any script's digits (`"²"` passes
`isdigit()` and then fails, `"١"` is 1), has no upper bound (SQLite's integers stop at 2^63-1
and fail the query late), and refuses integers of more than 4,300 digits with a ValueError;
`json.loads` raises RecursionError on deep nesting. Each of those was a 500. Here they are
refusals, decided before anything else looks at the input.
"""

from __future__ import annotations

import json
from typing import Any

from receiver.core.errors import PayloadError

MAX_INTEGER = 2**63 - 1  # SQLite keeps integers in 64 signed bits
_MAX_DIGITS = len(str(MAX_INTEGER))


def whole_number(raw: str, name: str, low: int = 0, high: int = MAX_INTEGER) -> int:
    """`raw` as an integer from `low` to `high`, written in ASCII digits, or a PayloadError."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_DIGITS) or not (
        low <= int(raw) <= high
    ):
        raise PayloadError(name, f"must be a whole number from {low} to {high}")
    return int(raw)


def parse_json(text: str) -> Any:
    """JSON text -> Python values; PayloadError("body", ...) for text that is not JSON or nests
    too deeply. Integers too long for a 64-bit column become floats (`inf` past 308 digits):
    whatever reads a field then refuses them as out of range, by name, and an integer under a
    key nobody reads costs nothing. The standard parser is kept because it names the line of
    a syntax error; msgspec does not."""
    try:
        return json.loads(text, parse_int=_integer)
    except RecursionError:
        raise PayloadError("body", "JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise PayloadError("body", f"invalid JSON: {exc.msg} at line {exc.lineno}") from None


def _integer(text: str) -> int | float:
    # One digit more than 2^63-1 has: that much still reads as the int it is, so a range
    # check can say it is too large, and int() never meets a number long enough to be slow.
    return int(text) if len(text) <= _MAX_DIGITS + 1 else float(text)
