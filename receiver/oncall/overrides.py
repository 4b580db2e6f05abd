"""Run-time overrides and swaps: people changing who is on call without editing the config.

The config's schedule is the plan; what people change at run time is laid over it, after the
config's own overrides, so a run-time override wins where both apply (and says so: `applying`
lists the one it overruled). Everything here is pure: requests are read into `Leg`s, checked
against a schedule and the person asking, and turned into `schedules.Override`s.

Three requests, one shape (a leg: `user` on call from `start` to `end`, in one layer or all,
in place of `replaces` or of whoever is on call):
- an override: any leg, as written;
- "take my shift from X to Y": a leg whose `replaces` is the person giving the shift away;
- a swap of two shifts between two people: two legs, each person covering the other's shift.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from receiver.core.access import Scope
from receiver.core.errors import PayloadError
from receiver.core.frozen import frozen
from receiver.oncall.schedules import Override, Schedule, instant, next_change, on_call

__all__ = [
    "ADMIN",
    "Actor",
    "Change",
    "Leg",
    "RuntimeOverride",
    "Scope",
    "overruled",
    "idle_leg",
    "parse_change",
    "refusal",
    "with_runtime",
]


ADMIN = frozenset({Scope.READ, Scope.RESPOND, Scope.ADMIN})


@frozen
class Actor:
    """Who is asking: a person (their user name) or a named token, with its scopes."""

    name: str
    scopes: frozenset[Scope]


@frozen
class Leg:
    user: str
    start: datetime
    end: datetime
    layer: str | None = None
    replaces: str | None = None


@frozen
class Change:
    """What one request asks for: one leg, or the two legs of a swap."""

    legs: tuple[Leg, ...]
    swap: bool = False
    note: str = ""

    @property
    def people(self) -> frozenset[str]:
        return frozenset(p for leg in self.legs for p in (leg.user, leg.replaces) if p)


@frozen
class RuntimeOverride:
    """A stored leg: who made it and when; the two legs of a swap name each other."""

    id: int
    schedule: str
    leg: Leg
    created_by: str
    created_at: datetime
    swap_with: int | None = None
    note: str = ""

    def as_override(self) -> Override:
        leg = self.leg
        return Override(
            leg.start, leg.end, leg.user, leg.layer, leg.replaces,
            origin=f"run-time override #{self.id} by {self.created_by}",
        )


def with_runtime(schedule: Schedule, runtime: Iterable[RuntimeOverride]) -> Schedule:
    """The schedule people see: the config's plan with the run-time overrides laid last."""
    extra = tuple(o.as_override() for o in sorted(runtime, key=lambda o: o.id))
    return replace(schedule, overrides=schedule.overrides + extra) if extra else schedule


def overruled(schedule: Schedule, leg: Leg) -> list[Override]:
    """The config overrides `leg` overlaps in time and layer: where both apply, the leg wins."""
    return [
        o for o in schedule.overrides
        if o.origin is None and o.start < leg.end and leg.start < o.end
        and (o.layer is None or leg.layer is None or o.layer == leg.layer)
    ]


def idle_leg(schedule: Schedule, change: Change) -> PayloadError | None:
    """The error for the first leg that would change nothing: the person it replaces is never
    on call in its range (a swap naming a shift its person does not have, a typo in a time).
    `schedule` is as people see it now, run-time overrides included."""
    for i, leg in enumerate(change.legs):
        if leg.replaces is None or _ever_on_call(schedule, leg):
            continue
        field = f"swap[{i}]" if change.swap else "replaces"
        where = f"layer {leg.layer!r}" if leg.layer else "any layer"
        return PayloadError(field, f"{leg.replaces!r} is not on call in {where} from "
                                   f"{leg.start.isoformat()} to {leg.end.isoformat()}: "
                                   "nothing would change")
    return None


# A leg's range is walked this many changes at most; a longer one is taken as it is.
_MAX_WALK = 1000


def _ever_on_call(schedule: Schedule, leg: Leg) -> bool:
    for layer in [leg.layer] if leg.layer else [lay.name for lay in schedule.layers]:
        at = leg.start
        for _ in range(_MAX_WALK):
            if on_call(schedule, layer, at) == leg.replaces:
                return True
            change = next_change(schedule, layer, at)
            if change is None or change >= leg.end:
                break
            at = change
        else:
            return True
    return False


# -- who may change what ------------------------------------------------------------------


def refusal(actor: Actor, change: Change) -> Scope | None:
    """The scope `actor` lacks to make (or delete) `change`, or None when it may.

    People change their own shifts: with `respond`, a change must involve the actor (taking
    a shift, giving one away, one side of a swap). `admin` changes anyone's."""
    if Scope.ADMIN in actor.scopes:
        return None
    if Scope.RESPOND in actor.scopes and actor.name in change.people:
        return None
    return Scope.ADMIN if Scope.RESPOND in actor.scopes else Scope.RESPOND


# -- reading a request --------------------------------------------------------------------


def parse_change(
    body: Any, schedule: Schedule, users: Collection[str], now: datetime | None = None
) -> Change:
    """A request body -> Change, or a PayloadError naming the field.

    {"user", "start", "end", "layer"?, "replaces"?, "note"?} is one leg; {"swap": [{"user",
    "start", "end"}, {"user", "start", "end"}], "layer"?, "note"?} swaps the first person's
    shift for the second's. Times are ISO 8601; without an offset they are local times in
    the schedule's zone, placed by the schedule's one rule (`schedules.instant`). A range
    that ended by `now` would change nothing: it is refused, naming its end."""
    if not isinstance(body, Mapping):
        raise PayloadError("body", "must be a JSON object")
    known = {"user", "start", "end", "layer", "replaces", "note", "swap"}
    for key in body:
        if key not in known:
            raise PayloadError(str(key), f"unknown field; known: {', '.join(sorted(known))}")
    layer = _layer(body.get("layer"), schedule)
    note = _text(body.get("note", ""), "note", required=False)
    if "swap" in body:
        for key in ("user", "start", "end", "replaces"):
            if key in body:
                raise PayloadError(key, "a swap names its people and times in swap[0], swap[1]")
        return Change(_swap_legs(body["swap"], layer, schedule, users, now), True, note)
    user = _user(body.get("user"), "user", users)
    replaces = body.get("replaces")
    if replaces is not None:
        replaces = _user(replaces, "replaces", users)
        if replaces == user:
            raise PayloadError("replaces", f"{user!r} cannot take over from themselves")
    start, end = _range(body, "", schedule, now)
    return Change((Leg(user, start, end, layer, replaces),), False, note)


def _swap_legs(
    raw: Any, layer: str | None, schedule: Schedule, users: Collection[str],
    now: datetime | None,
) -> tuple[Leg, Leg]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise PayloadError("swap", "must be a list of two shifts: [{user, start, end}, ...]")
    shifts = []
    for i, shift in enumerate(raw):
        where = f"swap[{i}]"
        if not isinstance(shift, Mapping):
            raise PayloadError(where, "must be an object with user, start and end")
        extra = set(shift) - {"user", "start", "end"}
        if extra:
            raise PayloadError(f"{where}.{sorted(extra)[0]}",
                               "unknown field; known: end, start, user")
        user = _user(shift.get("user"), f"{where}.user", users)
        shifts.append((user, *_range(shift, f"{where}.", schedule, now)))
    (first, s1, e1), (second, s2, e2) = shifts
    if first == second:
        raise PayloadError("swap[1].user", "a swap is between two different people")
    # Each takes the other's shift: the first's shift goes to the second, and back.
    return Leg(second, s1, e1, layer, first), Leg(first, s2, e2, layer, second)


def _layer(raw: Any, schedule: Schedule) -> str | None:
    if raw is None:
        return None
    names = [layer.name for layer in schedule.layers]
    if not isinstance(raw, str) or raw not in names:
        raise PayloadError(
            "layer", f"schedule {schedule.name!r} has no layer {raw!r}; it has: {', '.join(names)}"
        )
    return raw


def _user(raw: Any, field: str, users: Collection[str]) -> str:
    name = _text(raw, field, required=True)
    if name not in users:
        raise PayloadError(field, f"unknown user {name!r}")
    return name


def _text(raw: Any, field: str, *, required: bool) -> str:
    if raw is None and not required:
        return ""
    if not isinstance(raw, str) or (required and not raw):
        raise PayloadError(field, "must be a non-empty string" if required else "must be a string")
    if len(raw) > 1000:
        raise PayloadError(field, "must be at most 1000 characters")
    return raw


def _range(
    raw: Mapping[str, Any], prefix: str, schedule: Schedule, now: datetime | None
) -> tuple[datetime, datetime]:
    start = _time(raw.get("start"), prefix + "start", schedule)
    end = _time(raw.get("end"), prefix + "end", schedule)
    if end <= start:
        raise PayloadError(prefix + "end", f"must be after {prefix}start ({start.isoformat()})")
    if now is not None and end <= now:
        raise PayloadError(prefix + "end", f"is past (now is {now.isoformat()}): it would "
                           "change nothing")
    return start, end


def _time(raw: Any, field: str, schedule: Schedule) -> datetime:
    if not isinstance(raw, str):
        raise PayloadError(field, "must be an ISO 8601 time, e.g. 2026-12-01T09:00:00+01:00")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise PayloadError(field, f"not an ISO 8601 time: {raw[:64]!r}") from None
    try:
        if parsed.tzinfo is None:
            # The schedule's own rule for a local time, as its config overrides get.
            return instant(parsed, schedule.tz)
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise PayloadError(field, "must fall in the years 1 to 9999 in UTC") from None
