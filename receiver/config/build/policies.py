"""Escalation policies: their steps and targets, checked against the users, channels,
schedules and severities defined; the teams routed to a shared policy checked for what its
`oncall`/`lead` targets need; and each routed (policy, team) pair bound once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta

from receiver.config.build.builder import Builder
from receiver.config.model import TEAM_LEAD, TEAM_SCHEDULE, Team, bind_policy
from receiver.config.schema import ConfigSpec, PolicySpec, RouteSpecModel, TargetSpec
from receiver.config.yamlsource import Path as KeyPath
from receiver.config.yamlsource import render_path
from receiver.core.model import Severity
from receiver.escalation.policy import Channel, Policy, Step, StepMode, Target, TargetKind, User
from receiver.oncall.schedules import Schedule


def policies(
    b: Builder,
    users: Mapping[str, User],
    channels: Mapping[str, Channel],
    schedules: Mapping[str, Schedule],
    severities: Sequence[Severity],
) -> dict[str, Policy]:
    b.unique(("policies",), [p.name for p in b.spec.policies])
    known = {s.name for s in severities}
    return {
        p.name: _policy(b, ("policies", i), p, users, channels, schedules, known)
        for i, p in enumerate(b.spec.policies)
    }


def _policy(
    b: Builder,
    at: KeyPath,
    spec: PolicySpec,
    users: Mapping[str, User],
    channels: Mapping[str, Channel],
    schedules: Mapping[str, Schedule],
    severities: set[str],
) -> Policy:
    steps = []
    previous = timedelta(0)
    for k, s in enumerate(spec.steps):
        spath = (*at, "steps", k)
        for j, name in enumerate(s.severities or ()):
            if name not in severities:
                b.fail((*spath, "severities", j), f"unknown severity {name!r}")
        targets = tuple(
            _target(b, (*spath, "notify", j), t, users, channels, schedules)
            for j, t in enumerate(s.notify)
        )
        relative = s.delay is not None
        delay = s.delay if s.delay is not None else (s.after or timedelta(0))
        if not relative and k > 0 and delay < previous:
            b.fail((*spath, "after"), "steps must be in order of their `after` times")
        previous = delay if not relative else previous
        steps.append(
            Step(
                delay=delay,
                targets=targets,
                mode=StepMode(s.mode),
                relative_to_previous=relative,
                severities=frozenset(s.severities) if s.severities is not None else None,
            )
        )
    return Policy(
        name=spec.name,
        steps=tuple(steps),
        repeat=spec.repeat,
        repeat_after=spec.repeat_after,
        reack_after=spec.reack_after,
    )


def _target(
    b: Builder,
    at: KeyPath,
    t: TargetSpec,
    users: Mapping[str, User],
    channels: Mapping[str, Channel],
    schedules: Mapping[str, Schedule],
) -> Target:
    if t.schedule is not None:
        schedule = schedules.get(t.schedule)
        if schedule is None:
            b.fail((*at, "schedule"), f"unknown schedule {t.schedule!r}")
        elif t.layer not in {layer.name for layer in schedule.layers}:
            b.fail((*at, "layer"), f"schedule {t.schedule!r} has no layer {t.layer!r}")
        return Target(TargetKind.SCHEDULE, t.schedule, t.layer)
    if t.oncall is not None:
        return Target(TargetKind.SCHEDULE, TEAM_SCHEDULE, t.oncall)
    if t.user is not None:
        b.known_users((*at, "user"), [t.user], users)
        return Target(TargetKind.USER, t.user)
    if t.channel is not None:
        if t.channel not in channels:
            b.fail((*at, "channel"), f"unknown channel {t.channel!r}")
        return Target(TargetKind.CHANNEL, t.channel)
    return Target(TargetKind.USER, TEAM_LEAD)


def check_bindings(
    b: Builder, teams: Mapping[str, Team], schedules: Mapping[str, Schedule]
) -> None:
    """A shared policy's `oncall`/`lead` targets need every team routed to it to have a
    lead, a schedule, and in it the layer named: else the step pages nobody. Checked on the
    file's route tree (children inherit team and policy), so it runs whatever else is
    wrong in the file."""
    reported: set[tuple[KeyPath | None, str]] = set()
    for where, team_name, policy_name in _bindings(b.spec.route, ("route",)):
        team = teams.get(team_name)
        for at, spec in _policy_specs(b.spec, policy_name):
            if team is None:
                continue
            for path, message in _binding_problems(at, spec, team, schedules, where):
                if (path, message) not in reported:
                    reported.add((path, message))
                    b.fail(_team_path(b.spec, team.name) if path is None else path, message)


def team_policies(
    b: Builder, teams: Mapping[str, Team], policies: Mapping[str, Policy]
) -> dict[tuple[str, str], Policy]:
    """Each (policy, team) pair the route tree gives, bound to the team."""
    return {
        (policy, team): bind_policy(policies[policy], teams[team])
        for _, team, policy in _bindings(b.spec.route, ("route",))
        if policy in policies and team in teams
    }


def _policy_specs(spec: ConfigSpec, name: str) -> Iterator[tuple[KeyPath, PolicySpec]]:
    for i, policy in enumerate(spec.policies):
        if policy.name == name:
            yield ("policies", i), policy


def _bindings(
    r: RouteSpecModel, at: KeyPath, team: str | None = None, policy: str | None = None
) -> Iterator[tuple[KeyPath, str, str]]:
    """(route path, team, policy) for every route of the tree, with what it inherits."""
    team, policy = r.team or team, r.policy or policy
    if team is not None and policy is not None:
        yield at, team, policy
    for i, child in enumerate(r.routes):
        yield from _bindings(child, (*at, "routes", i), team, policy)


def _binding_problems(
    at: KeyPath,
    policy: PolicySpec,
    team: Team,
    schedules: Mapping[str, Schedule],
    route: KeyPath,
) -> Iterator[tuple[KeyPath | None, str]]:
    """What `team` lacks for `policy`: (None, ...) for the team's own key, else the target."""
    given = f"but {render_path(route)} gives it policy {policy.name!r}"
    for k, step in enumerate(policy.steps):
        for j, target in enumerate(step.notify):
            if target.lead and team.lead is None:
                yield None, f"team {team.name!r} has no lead, {given}, which pages the team's lead"
            if target.oncall is None:
                continue
            if team.schedule is None:
                yield None, (f"team {team.name!r} has no schedule, {given}, which pages the "
                             "team's schedule")
                continue
            schedule = schedules.get(team.schedule)
            if schedule is not None and target.oncall not in {x.name for x in schedule.layers}:
                yield (
                    (*at, "steps", k, "notify", j, "oncall"),
                    f"team {team.name!r} is on schedule {team.schedule!r}, which has no layer"
                    f" {target.oncall!r}: the step would page nobody"
                    f" ({given.removeprefix('but ')})",
                )


def _team_path(spec: ConfigSpec, name: str) -> KeyPath:
    for i, team in enumerate(spec.teams):
        if team.name == name:
            return ("teams", i)
    return ("teams",)
