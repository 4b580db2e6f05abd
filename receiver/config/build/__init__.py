"""From the validated schema to runtime objects, checking what spans the whole file.

Every check appends a ConfigProblem (file, line, key, message) and carries on, so one run
reports every problem. Cross-references are checked here: a route naming a team or policy
that does not exist, a policy target naming an unknown user, schedule, layer or channel, a
severity that is not defined, an Apprise URL that Apprise cannot load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from receiver.alertmanager.matchers import parse_matcher
from receiver.config.schema import (
    ConfigSpec,
    ContactSpec,
    PolicySpec,
    RestrictionSpec,
    RouteSpecModel,
    ScheduleSpec,
    TargetSpec,
    WorkingHoursSpec,
)
from receiver.config.storage import PostgresSettings, dsn_problem
from receiver.config.yamlsource import Located, render_path
from receiver.config.yamlsource import Path as KeyPath
from receiver.config.yamlsource import load as load_yaml
from receiver.core.access import Principal, PrincipalKind, Scope
from receiver.core.errors import ConfigProblem
from receiver.core.limits import WebhookLimits
from receiver.core.model import Severity
from receiver.escalation.engine import (
    Channel,
    Contact,
    Policy,
    Step,
    StepMode,
    Target,
    TargetKind,
    User,
)
from receiver.escalation.staleness import StaleAction
from receiver.notify.messages import Templates
from receiver.notify.notifier import NotificationSettings, validate_url
from receiver.oncall import schedules as sched
from receiver.routing.tree import Route, RouteSpec, SeverityRule, build

if TYPE_CHECKING:
    from receiver.config.model import Config, Team

T = TypeVar("T")
TEAM_SCHEDULE = "@team"
TEAM_LEAD = "@lead"
GAP_LOOKAHEAD = timedelta(weeks=4)
_SHIFT_UNITS = {s.value: s for s in sched.ShiftUnit}


def bind_policy(policy: Policy, team: Team) -> Policy:
    """Fill a shared policy's `oncall`/`lead` targets with this team's schedule and lead."""

    def bind(target: Target) -> Target:
        if target.name == TEAM_SCHEDULE and team.schedule is not None:
            return replace(target, name=team.schedule)
        if target.name == TEAM_LEAD and team.lead is not None:
            return replace(target, name=team.lead)
        return target

    steps = tuple(replace(s, targets=tuple(bind(t) for t in s.targets)) for s in policy.steps)
    return replace(policy, steps=steps)


class Builder:
    def __init__(
        self,
        located: Located,
        spec: ConfigSpec,
        base_dir: Path,
        origin: Callable[[KeyPath], KeyPath] | None = None,
    ) -> None:
        self.located = located
        self.spec = spec
        self.base_dir = base_dir
        # The spec may be built from the file less the parts that broke the schema
        # (configproblems.Pruned): `origin` turns its paths back into the file's.
        self.origin = origin or (lambda path: path)
        self.problems: list[ConfigProblem] = []

    def fail(self, path: KeyPath, message: str) -> None:
        self.problems.append(self.located.problem(self.origin(path), message))

    def attempt(self, path: KeyPath, make: Callable[[], T]) -> T | None:
        try:
            return make()
        except KeyError as exc:
            self.fail(path, str(exc.args[0]) if exc.args else "missing key")
            return None
        except (ValueError, OSError) as exc:
            self.fail(path, str(exc))
            return None

    # -- the whole file -------------------------------------------------------------------

    def build(self) -> Config | None:
        from receiver.config.model import Config, WebhookAuth

        spec = self.spec
        listen = self.attempt(("listen",), lambda: parse_listen(spec.listen))
        severities = self._severities()
        users = self._users()
        channels = self._channels()
        schedules = self._schedules(users)
        teams = self._teams(schedules, users)
        policies = self._policies(users, channels, schedules, severities)
        self._check_bindings(teams, schedules)
        route = self._route(teams, policies, severities)
        auth = WebhookAuth(
            self._secret(("webhook",), "bearer_token", spec.webhook.bearer_token,
                         spec.webhook.bearer_token_file),
            spec.webhook.basic_auth.username if spec.webhook.basic_auth else None,
            self._basic_password(),
        )
        tokens = self._api_tokens()
        link = self._secret(("links",), "secret", spec.links.secret, spec.links.secret_file)
        self._stakeholders(severities, channels)
        templates = self._templates()
        postgres = self._postgres(link)
        if self.problems or listen is None or route is None:
            return None
        n = spec.notifications
        return Config(
            source=self.located.file,
            listen_host=listen[0],
            listen_port=listen[1],
            external_url=spec.external_url.rstrip("/"),
            data_dir=Path(spec.data_dir),
            db_file=spec.storage.path,
            synchronous=spec.storage.synchronous.upper(),
            webhook_auth=auth,
            max_body_bytes=spec.webhook.max_body_bytes,
            memo_bytes=spec.webhook.memo_bytes,
            limits=WebhookLimits(
                spec.webhook.max_alerts, spec.webhook.max_labels, spec.webhook.max_groups
            ),
            api_tokens=tokens,
            link_secret=(link or "").encode(),
            link_ttl=spec.links.ttl,
            notifications=NotificationSettings(
                n.workers, n.timeout, n.retry.attempts, n.retry.backoff, n.retry.max_backoff,
                n.bundle_window, n.rate_limit.max, n.rate_limit.window, templates,
                max_hold=n.max_hold,
            ),
            severities=severities,
            stakeholders={s.name: tuple(s.stakeholders) for s in spec.severities or ()},
            users=users,
            channels=channels,
            schedules=schedules,
            teams=teams,
            policies=policies,
            route=route,
            postgres=postgres,
        )

    # -- secrets --------------------------------------------------------------------------

    def _secret(self, at: KeyPath, key: str, inline: str | None, file: str | None) -> str | None:
        if inline is not None and file is not None:
            self.fail((*at, f"{key}_file"), f"give {key} or {key}_file, not both")
            return None
        if file is None:
            return inline
        path = (self.base_dir / file) if not Path(file).is_absolute() else Path(file)
        return self.attempt((*at, f"{key}_file"), lambda: _read_secret(path))

    def _postgres(self, link_secret: str | None) -> PostgresSettings | None:
        spec = self.spec.storage.postgres
        if spec is None:
            return None
        at: KeyPath = ("storage", "postgres")
        dsn = self._secret(at, "dsn", spec.dsn, spec.dsn_file)
        if dsn is None:
            if spec.dsn is None and spec.dsn_file is None:
                self.fail(at, "needs dsn or dsn_file")
            return None
        problem = dsn_problem(dsn)
        if problem is not None:
            self.fail((*at, "dsn" if spec.dsn_file is None else "dsn_file"), problem)
            return None
        if link_secret is None:
            # Without one, each replica would sign links with a random secret of its own,
            # and a link signed by one would be refused by the others.
            self.fail(at, "needs links.secret or links.secret_file beside it: every replica"
                      " must sign and check links with the same secret")
        return PostgresSettings(dsn, spec.pool_size)

    def _basic_password(self) -> str | None:
        basic = self.spec.webhook.basic_auth
        if basic is None:
            return None
        password = self._secret(
            ("webhook", "basic_auth"), "password", basic.password, basic.password_file
        )
        if password is None:
            self.fail(("webhook", "basic_auth"), "needs password or password_file")
        return password

    def _api_tokens(self) -> dict[str, Principal]:
        """Every API token -> who it acts as: the users' own, then the scripts' named ones."""
        tokens: dict[str, Principal] = {}
        users = {u.name for u in self.spec.users}
        for i, user in enumerate(self.spec.users):
            value = self._secret(("users", i), "token", user.token, user.token_file)
            if value is not None:
                self._add_token(tokens, ("users", i), value,
                                Principal(user.name, Scope(user.scope), PrincipalKind.USER))
        for i, token in enumerate(self.spec.api.tokens):
            value = self._secret(("api", "tokens", i), "token", token.token, token.token_file)
            if value is None:
                self.fail(("api", "tokens", i), "needs token or token_file")
                continue
            if token.name in users:
                # The timeline names the actor: a script must not pass for a person.
                self.fail(("api", "tokens", i, "name"),
                          f"{token.name!r} is a user's name; give the script its own")
                continue
            self._add_token(tokens, ("api", "tokens", i), value,
                            Principal(token.name, Scope(token.scope), PrincipalKind.TOKEN))
        return tokens

    def _add_token(
        self, tokens: dict[str, Principal], at: KeyPath, value: str, principal: Principal
    ) -> None:
        if not value:
            self.fail((*at, "token"), "is empty")
        elif value in tokens:
            self.fail(at, f"the same token is given twice (also {tokens[value].describe()})")
        else:
            tokens[value] = principal

    def _templates(self) -> dict[str, dict[str, str]]:
        """Message template overrides, compiled and tried on a sample incident now, so a typo
        fails `ackd check-config` instead of a page at 3 AM."""
        overrides = {
            reason: {part: text for part, text in t.model_dump().items() if text is not None}
            for reason, t in self.spec.notifications.templates.items()
        }
        for key, message in Templates.check(overrides):
            self.fail(("notifications", "templates", *key.split(".")), message)
        return overrides

    # -- people and channels --------------------------------------------------------------

    def _severities(self) -> tuple[Severity, ...]:
        from receiver.config.model import DEFAULT_SEVERITIES

        specs = self.spec.severities
        if specs is None:
            return DEFAULT_SEVERITIES
        self._unique(("severities",), [s.name for s in specs])
        if not specs:
            self.fail(("severities",), "define at least one severity")
            return DEFAULT_SEVERITIES
        return tuple(Severity(s.name, i, s.description, s.urgency) for i, s in enumerate(specs))

    def _stakeholders(self, severities: Sequence[Severity], channels: Mapping[str, Any]) -> None:
        for i, s in enumerate(self.spec.severities or ()):
            for j, name in enumerate(s.stakeholders):
                if name not in channels:
                    self.fail(("severities", i, "stakeholders", j), f"unknown channel {name!r}")

    def _contacts(self, at: KeyPath, specs: Sequence[ContactSpec]) -> tuple[Contact, ...]:
        contacts = []
        for j, c in enumerate(specs):
            url = self._secret((*at, j), "url", c.url, c.url_file)
            if url is None:
                self.fail((*at, j), "needs url or url_file")
                continue
            problem = validate_url(url)
            if problem is not None:
                self.fail((*at, j, "url"), problem)
                continue
            contacts.append(Contact(url, c.delay, c.short))
        return tuple(contacts)

    def _users(self) -> dict[str, User]:
        self._unique(("users",), [u.name for u in self.spec.users])
        return {
            u.name: User(u.name, self._contacts(("users", i, "contacts"), u.contacts))
            for i, u in enumerate(self.spec.users)
        }

    def _channels(self) -> dict[str, Channel]:
        self._unique(("channels",), [c.name for c in self.spec.channels])
        channels = {}
        for i, c in enumerate(self.spec.channels):
            contacts = self._contacts(("channels", i, "urls"), c.urls)
            channels[c.name] = Channel(c.name, tuple(x.url for x in contacts))
        return channels

    # -- schedules and teams --------------------------------------------------------------

    def _schedules(self, users: Mapping[str, User]) -> dict[str, sched.Schedule]:
        self._unique(("schedules",), [s.name for s in self.spec.schedules])
        built = {}
        for i, spec in enumerate(self.spec.schedules):
            schedule = self._schedule(("schedules", i), spec, users)
            if schedule is not None:
                built[spec.name] = schedule
        return built

    def _schedule(
        self, at: KeyPath, spec: ScheduleSpec, users: Mapping[str, User]
    ) -> sched.Schedule | None:
        found = self.attempt((*at, "timezone"), lambda: zone(spec.timezone))
        # Without its zone the schedule is not built, but the rest of it is still checked
        # (on UTC as a stand-in), so its other problems show in this run, not the next.
        tz = found or ZoneInfo("UTC")
        self._unique((*at, "layers"), [layer.name for layer in spec.layers])
        layers = []
        for li, layer in enumerate(spec.layers):
            rotations = []
            for ri, rot in enumerate(layer.rotations):
                rpath = (*at, "layers", li, "rotations", ri)
                self._known_users((*rpath, "users"), rot.users, users)
                # Follow the sun: a rotation may keep its own clock, not the schedule's.
                own = None
                if rot.timezone is not None:
                    own = self.attempt((*rpath, "timezone"), partial(zone, rot.timezone))
                restrictions = [
                    self.attempt(
                        (*rpath, "restrictions", k, "days"),
                        partial(_restriction, r),
                    )
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
            self._known_users((*opath, "user"), [o.user], users)
            if o.replaces is not None:
                self._known_users((*opath, "replaces"), [o.replaces], users)
            if o.layer is not None and o.layer not in layer_names:
                self.fail((*opath, "layer"), f"schedule {spec.name!r} has no layer {o.layer!r}")
            start, end = _aware(o.start, tz), _aware(o.end, tz)
            if end <= start:
                self.fail((*opath, "end"), "an override must end after it starts")
            overrides.append(sched.Override(start, end, o.user, o.layer, o.replaces))
        if found is None:
            return None
        return sched.Schedule(
            spec.name, tz, tuple(layers), tuple(overrides), spec.handoff_notices)

    def _teams(
        self, schedules: Mapping[str, sched.Schedule], users: Mapping[str, User]
    ) -> dict[str, Team]:
        from receiver.config.model import Team

        self._unique(("teams",), [t.name for t in self.spec.teams])
        teams = {}
        for i, t in enumerate(self.spec.teams):
            # Compare with every schedule defined, built or not: a schedule that failed to
            # build has its own error already, and a second one here would mislead.
            if t.schedule is not None and t.schedule not in {s.name for s in self.spec.schedules}:
                self.fail(("teams", i, "schedule"), f"unknown schedule {t.schedule!r}")
            if t.lead is not None:
                self._known_users(("teams", i, "lead"), [t.lead], users)
            hours = None
            if t.working_hours is not None:
                hours = self.attempt(
                    ("teams", i, "working_hours"),
                    partial(_working_hours, t.working_hours),
                )
            teams[t.name] = Team(t.name, t.schedule, t.lead, hours)
        return teams

    # -- policies -------------------------------------------------------------------------

    def _policies(
        self,
        users: Mapping[str, User],
        channels: Mapping[str, Channel],
        schedules: Mapping[str, sched.Schedule],
        severities: Sequence[Severity],
    ) -> dict[str, Policy]:
        self._unique(("policies",), [p.name for p in self.spec.policies])
        known = {s.name for s in severities}
        policies = {}
        for i, p in enumerate(self.spec.policies):
            policies[p.name] = self._policy(("policies", i), p, users, channels, schedules, known)
        return policies

    def _policy(
        self,
        at: KeyPath,
        spec: PolicySpec,
        users: Mapping[str, User],
        channels: Mapping[str, Channel],
        schedules: Mapping[str, sched.Schedule],
        severities: set[str],
    ) -> Policy:
        steps = []
        previous = timedelta(0)
        for k, s in enumerate(spec.steps):
            spath = (*at, "steps", k)
            for j, name in enumerate(s.severities or ()):
                if name not in severities:
                    self.fail((*spath, "severities", j), f"unknown severity {name!r}")
            targets = tuple(
                self._target((*spath, "notify", j), t, users, channels, schedules)
                for j, t in enumerate(s.notify)
            )
            relative = s.delay is not None
            delay = s.delay if s.delay is not None else (s.after or timedelta(0))
            if not relative and k > 0 and delay < previous:
                self.fail((*spath, "after"), "steps must be in order of their `after` times")
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
        self,
        at: KeyPath,
        t: TargetSpec,
        users: Mapping[str, User],
        channels: Mapping[str, Channel],
        schedules: Mapping[str, sched.Schedule],
    ) -> Target:
        if t.schedule is not None:
            schedule = schedules.get(t.schedule)
            if schedule is None:
                self.fail((*at, "schedule"), f"unknown schedule {t.schedule!r}")
            elif t.layer not in {layer.name for layer in schedule.layers}:
                self.fail((*at, "layer"), f"schedule {t.schedule!r} has no layer {t.layer!r}")
            return Target(TargetKind.SCHEDULE, t.schedule, t.layer)
        if t.oncall is not None:
            return Target(TargetKind.SCHEDULE, TEAM_SCHEDULE, t.oncall)
        if t.user is not None:
            self._known_users((*at, "user"), [t.user], users)
            return Target(TargetKind.USER, t.user)
        if t.channel is not None:
            if t.channel not in channels:
                self.fail((*at, "channel"), f"unknown channel {t.channel!r}")
            return Target(TargetKind.CHANNEL, t.channel)
        return Target(TargetKind.USER, TEAM_LEAD)

    # -- routes ---------------------------------------------------------------------------

    def _route(
        self,
        teams: Mapping[str, Team],
        policies: Mapping[str, Policy],
        severities: Sequence[Severity],
    ) -> Route | None:
        root = self.spec.route
        if root.matchers:
            self.fail(("route", "matchers"), "the root route matches everything: no matchers")
        for key in ("team", "policy"):
            if getattr(root, key) is None:
                self.fail(("route", key), "the root route must set it (children inherit it)")
        if root.severity is None and root.severity_from is None:
            self.fail(("route",), "the root route must set severity or severity_from")
        known = {s.name for s in severities}
        spec = self._route_spec(("route",), root, teams, policies, known)
        self._check_stale(("route",), root, inherited=False)
        if self.problems:
            return None
        return self.attempt(("route",), lambda: build(spec))

    def _route_spec(
        self,
        at: KeyPath,
        r: RouteSpecModel,
        teams: Mapping[str, Team],
        policies: Mapping[str, Policy],
        severities: set[str],
    ) -> RouteSpec:
        matchers = [
            self.attempt((*at, "matchers", i), partial(parse_matcher, text))
            for i, text in enumerate(r.matchers)
        ]
        if r.team is not None and r.team not in teams:
            self.fail((*at, "team"), f"unknown team {r.team!r}")
        if r.policy is not None and r.policy not in policies:
            self.fail((*at, "policy"), f"unknown policy {r.policy!r}")
        if r.severity is not None and r.severity not in severities:
            self.fail((*at, "severity"), f"unknown severity {r.severity!r}")
        rule = None
        if r.severity_from is not None:
            rule = self._severity_rule((*at, "severity_from"), r, severities)
        return RouteSpec(
            matchers=tuple(m for m in matchers if m is not None),
            name=r.name,
            team=r.team,
            policy=r.policy,
            severity=r.severity,
            severity_rule=rule,
            group_by=tuple(r.group_by) if r.group_by is not None else None,
            continue_=r.continue_,
            routes=tuple(
                self._route_spec((*at, "routes", i), child, teams, policies, severities)
                for i, child in enumerate(r.routes)
            ),
            stale_after=r.stale_after,
            stale_action=StaleAction(r.stale_action) if r.stale_action is not None else None,
        )

    def _check_stale(self, at: KeyPath, r: RouteSpecModel, inherited: bool) -> None:
        """A stale_action needs a stale_after on its route or above: alone it does nothing."""
        has_after = inherited or r.stale_after is not None
        if r.stale_action is not None and not has_after:
            self.fail((*at, "stale_action"),
                      "stale_action needs stale_after on this route or a parent")
        for i, child in enumerate(r.routes):
            self._check_stale((*at, "routes", i), child, has_after)

    def _severity_rule(
        self, at: KeyPath, r: RouteSpecModel, severities: set[str]
    ) -> SeverityRule:
        assert r.severity_from is not None
        rule = r.severity_from
        for value, name in rule.map.items():
            if name not in severities:
                self.fail((*at, "map", value), f"unknown severity {name!r}")
        if rule.default not in severities:
            self.fail((*at, "default"), f"unknown severity {rule.default!r}")
        return SeverityRule(rule.label, dict(rule.map), rule.default)

    def _check_bindings(
        self, teams: Mapping[str, Team], schedules: Mapping[str, sched.Schedule]
    ) -> None:
        """A shared policy's `oncall`/`lead` targets need every team routed to it to have a
        lead, a schedule, and in it the layer named: else the step pages nobody. Checked on the
        file's route tree (children inherit team and policy), so it runs whatever else is
        wrong in the file."""
        reported: set[tuple[KeyPath | None, str]] = set()
        for where, team_name, policy_name in _bindings(self.spec.route, ("route",)):
            team = teams.get(team_name)
            for at, spec in self._policy_specs(policy_name):
                if team is None:
                    continue
                for path, message in _binding_problems(at, spec, team, schedules, where):
                    if (path, message) not in reported:
                        reported.add((path, message))
                        self.fail(_team_path(self.spec, team.name) if path is None else path,
                                  message)

    def _policy_specs(self, name: str) -> Iterator[tuple[KeyPath, PolicySpec]]:
        for i, policy in enumerate(self.spec.policies):
            if policy.name == name:
                yield ("policies", i), policy

    # -- small checks ---------------------------------------------------------------------

    def _unique(self, at: KeyPath, names: Sequence[str]) -> None:
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                self.fail((*at, i, "name"), f"{name!r} is defined twice")
            seen.add(name)

    def _known_users(self, at: KeyPath, names: Sequence[str], users: Mapping[str, User]) -> None:
        for j, name in enumerate(names):
            if name not in users:
                self.fail((*at, j) if len(names) > 1 or at[-1] == "users" else at,
                          f"unknown user {name!r}")


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
    schedules: Mapping[str, sched.Schedule],
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


def coverage_gaps(
    config: Config, since: datetime, within: timedelta = GAP_LOOKAHEAD
) -> list[ConfigProblem]:
    """A warning for each schedule layer with nobody on call for part of `within` from
    `since`, naming the layer's file and line and its first uncovered span. Not an error: a
    hole may be meant (office hours only), but it is rarely meant silently."""
    text = Path(config.source).read_text(encoding="utf-8")
    data = load_yaml(config.source, text, collect=[])
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


def _working_hours(spec: WorkingHoursSpec) -> sched.WorkingHours:
    return sched.WorkingHours(zone(spec.timezone), sched.parse_weekdays(spec.days), spec.start,
                              spec.end)


def _read_secret(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


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


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen must be HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
