"""Deadline keys: each names its run and cycle (and a delayed contact its person and contact),
so a deadline left over from an earlier run is recognised as stale and does nothing.
"""

from __future__ import annotations


def step_key(run: int, cycle: int, index: int) -> str:
    return f"{run}:{cycle}:{index}"


def contact_key(run: int, cycle: int, index: int, user: str, contact_index: int) -> str:
    return f"{contact_prefix(run, cycle, index)}{user}:{contact_index}"


def contact_prefix(run: int, cycle: int, index: int) -> str:
    """What the keys of every delayed contact of one step of one run and cycle begin with."""
    return f"{run}:{cycle}:{index}:"


def parse_contact_key(key: str) -> tuple[int, int, int, str, int]:
    try:
        run, cycle, index, rest = key.split(":", 3)
        user, contact_index = rest.rsplit(":", 1)
        return int(run), int(cycle), int(index), user, int(contact_index)
    except ValueError as exc:
        raise ValueError(
            f"contact deadline key {key!r} is not RUN:CYCLE:STEP:USER:CONTACT"
        ) from exc
