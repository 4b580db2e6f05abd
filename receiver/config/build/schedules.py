"""On call: schedules (layers of rotations, overrides, each in its time zone) and teams (a
schedule, a lead, working hours); and the warning for a layer with nobody on call."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from receiver.config.build.builder import Builder
from receiver.config.model import Config, Team
from receiver.config.schema import RestrictionSpec, ScheduleSpec, WorkingHoursSpec
from receiver.config.yamlsource import Located
from receiver.config.yamlsource import Path as KeyPath
from receiver.config.yamlsource import load as load_yaml
from receiver.core.errors import ConfigProblem
from receiver.escalation.policy import User
from receiver.oncall import schedules as sched
from receiver.routing.tree import walk

GAP_LOOKAHEAD = timedelta(weeks=4)
_SHIFT_UNITS = {s.value: s for s in sched.ShiftUnit}


def schedules(b: Builder, users: Mapping[str, User]) -> dict[str, sched.Schedule]:
    b.unique(("schedules",), [s.name for s in b.spec.schedules])
    built = {}
    for i, spec in enumerate(b.spec.schedules):
        schedule = _schedule(b, ("schedules", i), spec, users)
        if schedule is not None:
            built[spec.name] = schedule
    return built


def _schedule(
    b: Builder, at: KeyPath, spec: ScheduleSpec, users: Mapping[str, User]
) -> sched.Schedule | None:
    found = b.attempt((*at, "timezone"), lambda: zone(spec.timezone))
    # Without its zone the schedule is not built, but the rest of it is still checked
    # (on UTC as a stand-in), so its other problems show in this run, not the next.
    tz = found or ZoneInfo("UTC")
    b.unique((*at, "layers"), [layer.name for layer in spec.layers])
    layers = []
    for li, layer in enumerate(spec.layers):
        rotations = []
        for ri, rot in enumerate(layer.rotations):
            rpath = (*at, "layers", li, "rotations", ri)
            b.known_users((*rpath, "users"), rot.users, users)
            # Follow the sun: a rotation may keep its own clock, not the schedule's.
            own = None
            if rot.timezone is not None:
                own = b.attempt((*rpath, "timezone"), partial(zone, rot.timezone))
            restrictions = [
                b.attempt((*rpath, "restrictions", k, "days"), partial(_restriction, r))
                for k, r in enumerate(rot.restrictions)
            ]
            rotations.append(
                sched.Rotation(
                    users=tuple(rot.users),
                    shift_length=int(rot.shift[:-1]),
                    shift_unit=_SHIFT_UNITS[rot.shift[-1]],
                    start=_local(rot.start, own or tz),
                    restrictions=tuple(r for r in restrictions if r is not None),
                    name=rot.name,
                    tz=own,
                )
            )
        layers.append(sched.Layer(layer.name, tuple(rotations)))
    layer_names = {layer.name for layer in spec.layers}
    overrides = []
    for k, o in enumerate(spec.overrides):
        opath = (*at, "overrides", k)
        b.known_users((*opath, "user"), [o.user], users)
        if o.replaces is not None:
            b.known_users((*opath, "replaces"), [o.replaces], users)
        if o.layer is not None and o.layer not in layer_names:
            b.fail((*opath, "layer"), f"schedule {spec.name!r} has no layer {o.layer!r}")
        start, end = _aware(o.start, tz), _aware(o.end, tz)
        if end <= start:
            b.fail((*opath, "end"), "an override must end after it starts")
        overrides.append(sched.Override(start, end, o.user, o.layer, o.replaces))
    if found is None:
        return None
    return sched.Schedule(
        spec.name, tz, tuple(layers), tuple(overrides), spec.handoff_notices)


def teams(b: Builder, users: Mapping[str, User]) -> dict[str, Team]:
    b.unique(("teams",), [t.name for t in b.spec.teams])
    built = {}
    for i, t in enumerate(b.spec.teams):
        # Compare with every schedule defined, built or not: a schedule that failed to
        # build has its own error already, and a second one here would mislead.
        if t.schedule is not None and t.schedule not in {s.name for s in b.spec.schedules}:
            b.fail(("teams", i, "schedule"), f"unknown schedule {t.schedule!r}")
        if t.lead is not None:
            b.known_users(("teams", i, "lead"), [t.lead], users)
        hours = None
        if t.working_hours is not None:
            hours = _working_hours(b, ("teams", i, "working_hours"), t.working_hours)
        built[t.name] = Team(t.name, t.schedule, t.lead, hours)
    return built


def coverage_gaps(
    config: Config, since: datetime, within: timedelta = GAP_LOOKAHEAD,
    source: Located | None = None,
) -> list[ConfigProblem]:
    """A warning for each schedule layer with nobody on call for part of `within` from
    `since`, naming the layer's file and line and its first uncovered span. Not an error: a
    hole may be meant (office hours only), but it is rarely meant silently. `source` is the
    document `config` was built from (else config.source is read again for its lines)."""
    data = source or located(config)
    warnings = []
    for si, spec in enumerate(data.data.get("schedules") or []):
        schedule = config.schedules[spec["name"]]
        for li, layer in enumerate(spec["layers"]):
            gap = sched.first_gap(schedule, layer["name"], since, since + within)
            if gap is not None:
                warnings.append(data.problem(
                    ("schedules", si, "layers", li),
                    _gap_message(schedule, layer["name"], gap, within),
                ))
    return warnings


def unrouted_teams(config: Config, source: Located | None = None) -> list[ConfigProblem]:
    """A warning for each team no route leads to: no alert reaches it, and declaring an
    incident or starting a drill for it is refused at run time ("no route leads to team"),
    likely the night it is needed. A warning, not an error: a team may be added before its
    route."""
    routed = {r.team for r in walk(config.route)}
    data = source or located(config)
    return [data.problem(("teams", i, "name"), f"warning: no route leads to team "
                         f"{spec['name']!r}: no alert reaches it, and an incident declared "
                         "or a drill started for it is refused")
            for i, spec in enumerate(data.data.get("teams") or [])
            if spec["name"] not in routed]


def located(config: Config) -> Located:
    """The document `config` was built from, read again (for the lines of its warnings)."""
    text = Path(config.source).read_text(encoding="utf-8")
    return load_yaml(config.source, text, collect=[])


def _gap_message(
    schedule: sched.Schedule, layer: str, gap: tuple[datetime, datetime | None],
    within: timedelta,
) -> str:
    start, end = (t.astimezone(schedule.tz).isoformat() if t else None for t in gap)
    span = f"from {start} to {end}" if end else f"from {start} on"
    return (f"warning: nobody is on call in layer {layer!r} of schedule {schedule.name!r} "
            f"{span} (the first uncovered span in the next {within.days} days)")


def _restriction(spec: RestrictionSpec) -> sched.Restriction:
    return sched.Restriction(sched.parse_weekdays(spec.days), spec.start, spec.end)


def _working_hours(b: Builder, at: KeyPath, spec: WorkingHoursSpec) -> sched.WorkingHours | None:
    # Each part at its own key, as a schedule's timezone and a restriction's days are: a
    # misspelt zone read "teams[0].working_hours: unknown IANA time zone ...".
    tz = b.attempt((*at, "timezone"), partial(zone, spec.timezone))
    days = b.attempt((*at, "days"), partial(sched.parse_weekdays, spec.days))
    if tz is None or days is None:
        return None
    return b.attempt(at, lambda: sched.WorkingHours(tz, days, spec.start, spec.end))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc


def _local(value: datetime, tz: ZoneInfo) -> datetime:
    """A rotation starts at a local wall-clock time: keep it naive, in the rotation's zone."""
    if value.tzinfo is not None:
        return value.astimezone(tz).replace(tzinfo=None)
    return value


def _aware(value: datetime, tz: ZoneInfo) -> datetime:
    """An override's naive time is placed by the schedule's one rule, as a handoff is."""
    return sched.instant(value, tz) if value.tzinfo is None else value
