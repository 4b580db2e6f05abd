"""The route tree: which team, policy and severity an alert gets, and which group it joins.

It reads like Alertmanager's route tree and dispatches the same way (depth first, the first
matching child wins unless it says `continue`), so that whoever knows their alertmanager.yml
can predict where an alert lands. `build` resolves inheritance once, at config load, into
`Route`s that carry every setting; `route` is then a pure function of the tree and the labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from types import MappingProxyType

from receiver.alertmanager.matchers import Matcher, quote
from receiver.core.durations import format_duration
from receiver.core.frozen import frozen
from receiver.escalation.staleness import StaleAction, StaleRule

# Alertmanager's special `group_by` value: one group per distinct label set.
GROUP_BY_ALL = "..."


@frozen
class SeverityRule:
    """Severity read from a label of the alert, e.g. `severity: critical` -> SEV1."""

    label: str
    map: Mapping[str, str]
    default: str

    def __post_init__(self) -> None:
        # A private read-only copy: the caller's dict must not change a built route later.
        object.__setattr__(self, "map", MappingProxyType(dict(self.map)))

    def severity(self, labels: Mapping[str, str]) -> str:
        return self.map.get(labels.get(self.label, ""), self.default)


@frozen
class RouteSpec:
    """A route as written in the configuration: unset fields are inherited from the parent."""

    matchers: tuple[Matcher, ...] = ()
    name: str | None = None
    team: str | None = None
    policy: str | None = None
    severity: str | None = None
    severity_rule: SeverityRule | None = None
    group_by: tuple[str, ...] | None = None
    continue_: bool = False
    routes: tuple[RouteSpec, ...] = ()
    stale_after: timedelta | None = None
    stale_action: StaleAction | None = None


@frozen
class Route:
    """A resolved route: every setting filled in; exactly one of severity and severity_rule."""

    id: str
    name: str | None
    matchers: tuple[Matcher, ...]
    team: str
    policy: str
    severity: str | None
    severity_rule: SeverityRule | None
    group_by: tuple[str, ...]
    group_by_all: bool
    continue_: bool
    routes: tuple[Route, ...] = ()
    # The labels that decide where an alert lands at or below this route and what it gets
    # there; None when some route groups by every label ('...').
    decides_on: tuple[str, ...] | None = ()
    stale: StaleRule | None = None  # when its open incidents count as forgotten

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def severity_for(self, labels: Mapping[str, str]) -> str:
        if self.severity_rule is not None:
            return self.severity_rule.severity(labels)
        assert self.severity is not None, "build() gives every route a severity decision"
        return self.severity

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if self.group_by_all:
            return dict(labels)
        # Labels the alert lacks are left out, as Alertmanager does, rather than set to "".
        return {name: labels[name] for name in self.group_by if name in labels}


@frozen
class Match:
    """One route an alert landed on, with everything decided for it there."""

    route: Route
    team: str
    policy: str
    severity: str
    group_labels: Mapping[str, str]
    group_key: str


@frozen
class _Settings:
    """What a route passes down to its children."""

    team: str
    policy: str
    severity: str | None
    severity_rule: SeverityRule | None
    group_by: tuple[str, ...]
    group_by_all: bool
    stale_after: timedelta | None = None
    stale_action: StaleAction = StaleAction.NOTIFY


def build(spec: RouteSpec) -> Route:
    """Resolve a route tree; the root must set team, policy and severity for all to inherit."""
    missing = [key for key in ("team", "policy") if getattr(spec, key) is None]
    if spec.severity is None and spec.severity_rule is None:
        missing.append("severity or severity_from")
    if missing:
        raise ValueError(
            f"the root route must set {' and '.join(missing)}, which its children inherit"
        )
    nothing = _Settings("", "", None, None, (), group_by_all=False)
    return _resolve(spec, nothing, _matcher_set(spec.matchers))


def walk(root: Route) -> Iterator[Route]:
    """Every route of the tree, depth first, in the file's order."""
    yield root
    for child in root.routes:
        yield from walk(child)


def route(root: Route, labels: Mapping[str, str]) -> list[Match]:
    """Every route the alert lands on (at least one: the root takes what no child takes)."""
    return [_match(r, labels) for r in _dispatch(root, labels)]


def route_all(root: Route, label_sets: Sequence[Mapping[str, str]]) -> list[list[Match]]:
    """`route` for each label set. The alerts of one webhook mostly differ only in labels the
    tree never looks at (instance, pod), so those that agree on the rest share one answer."""
    if root.decides_on is None:
        return [route(root, labels) for labels in label_sets]
    names = root.decides_on
    seen: dict[tuple[str | None, ...], list[Match]] = {}
    found = []
    for labels in label_sets:
        key = tuple([labels.get(name) for name in names])
        matches = seen.get(key)
        if matches is None:
            matches = seen[key] = route(root, labels)
        found.append(matches)
    return found


def describe(matches: Sequence[Match]) -> str:
    """One line per match, like `amtool config routes test`."""
    return "\n".join(_describe(m) for m in matches)


def group_key(route_id: str, group_labels: Mapping[str, str]) -> str:
    """The route id and the group's labels: distinct routes never share a group."""
    return f"{route_id}:{_label_set(group_labels)}"


def _resolve(spec: RouteSpec, parent: _Settings, route_id: str) -> Route:
    own = _inherit(spec, parent, route_id)
    children = tuple(
        _resolve(child, own, f"{route_id}/{_matcher_set(child.matchers)}/{i}")
        for i, child in enumerate(spec.routes)
    )
    return Route(
        id=route_id,
        name=spec.name,
        matchers=spec.matchers,
        team=own.team,
        policy=own.policy,
        severity=own.severity,
        severity_rule=own.severity_rule,
        group_by=own.group_by,
        group_by_all=own.group_by_all,
        continue_=spec.continue_,
        routes=children,
        decides_on=_decides_on(spec.matchers, own, children),
        stale=StaleRule(own.stale_after, own.stale_action) if own.stale_after else None,
    )


def _decides_on(
    matchers: Sequence[Matcher], own: _Settings, children: Sequence[Route]
) -> tuple[str, ...] | None:
    if own.group_by_all or any(child.decides_on is None for child in children):
        return None
    names = {m.name for m in matchers} | set(own.group_by)
    if own.severity_rule is not None:
        names.add(own.severity_rule.label)
    for child in children:
        names.update(child.decides_on or ())
    return tuple(sorted(names))


def _inherit(spec: RouteSpec, parent: _Settings, route_id: str) -> _Settings:
    if spec.severity is not None and spec.severity_rule is not None:
        raise ValueError(f"route {route_id} sets both severity and severity_from: keep one")
    severity, rule = parent.severity, parent.severity_rule
    if spec.severity is not None:
        severity, rule = spec.severity, None
    elif spec.severity_rule is not None:
        severity, rule = None, spec.severity_rule
    group_by, group_by_all = parent.group_by, parent.group_by_all
    if spec.group_by is not None:
        group_by, group_by_all = _group_by(spec.group_by, route_id)
    return _Settings(
        team=spec.team if spec.team is not None else parent.team,
        policy=spec.policy if spec.policy is not None else parent.policy,
        severity=severity,
        severity_rule=rule,
        group_by=group_by,
        group_by_all=group_by_all,
        stale_after=spec.stale_after if spec.stale_after is not None else parent.stale_after,
        stale_action=spec.stale_action or parent.stale_action,
    )


def _group_by(names: tuple[str, ...], route_id: str) -> tuple[tuple[str, ...], bool]:
    if GROUP_BY_ALL not in names:
        return names, False
    if len(names) > 1:
        raise ValueError(
            f"route {route_id} has group_by {list(names)}: '...' already groups by every label,"
            " so list it alone"
        )
    return (), True


def _dispatch(node: Route, labels: Mapping[str, str]) -> list[Route]:
    """Alertmanager's Route.Match below a route already known to match."""
    found: list[Route] = []
    for child in node.routes:
        if not child.matches(labels):
            continue
        found.extend(_dispatch(child, labels))
        if not child.continue_:
            break
    return found or [node]


def _match(node: Route, labels: Mapping[str, str]) -> Match:
    group_labels = node.group_labels(labels)
    return Match(
        route=node,
        team=node.team,
        policy=node.policy,
        severity=node.severity_for(labels),
        group_labels=group_labels,
        group_key=group_key(node.id, group_labels),
    )


def _describe(match: Match) -> str:
    node = match.route
    name = f" ({node.name})" if node.name else ""
    group_by = GROUP_BY_ALL if node.group_by_all else ",".join(node.group_by)
    stale = ""
    if node.stale is not None:
        after = format_duration(node.stale.after)
        stale = f" stale_after={after} stale_action={node.stale.action.value}"
    return (
        f"route {node.id}{name}: team={match.team} severity={match.severity}"
        f" policy={match.policy} group_by=[{group_by}]{stale}"
        f" group={_label_set(match.group_labels)}"
    )


def _matcher_set(matchers: Sequence[Matcher]) -> str:
    return "{" + ",".join(str(m) for m in matchers) + "}"


def _label_set(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f"{k}={quote(v)}" for k, v in sorted(labels.items())) + "}"
