"""The route tree: matchers parsed, each route's team, policy and severity checked against
what the file defines, then the tree built by receiver.routing (as Alertmanager's dispatch
builds its routes from config.Route)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

from receiver.alertmanager.matchers import parse_matcher
from receiver.config.build.builder import Builder
from receiver.config.model import Team
from receiver.config.schema import RouteSpecModel
from receiver.config.yamlsource import Path as KeyPath
from receiver.core.model import Severity
from receiver.escalation.policy import Policy
from receiver.escalation.staleness import StaleAction
from receiver.routing.tree import Route, RouteSpec, SeverityRule, build


def route(
    b: Builder,
    teams: Mapping[str, Team],
    policies: Mapping[str, Policy],
    severities: Sequence[Severity],
) -> Route | None:
    root = b.spec.route
    if root.matchers:
        b.fail(("route", "matchers"), "the root route matches everything: no matchers")
    for key in ("team", "policy"):
        if getattr(root, key) is None:
            b.fail(("route", key), "the root route must set it (children inherit it)")
    if root.severity is None and root.severity_from is None:
        b.fail(("route",), "the root route must set severity or severity_from")
    known = {s.name for s in severities}
    spec = _route_spec(b, ("route",), root, teams, policies, known)
    _check_stale(b, ("route",), root, inherited=False)
    if b.problems:
        return None
    return b.attempt(("route",), lambda: build(spec))


def _route_spec(
    b: Builder,
    at: KeyPath,
    r: RouteSpecModel,
    teams: Mapping[str, Team],
    policies: Mapping[str, Policy],
    severities: set[str],
) -> RouteSpec:
    matchers = [
        b.attempt((*at, "matchers", i), partial(parse_matcher, text))
        for i, text in enumerate(r.matchers)
    ]
    if r.team is not None and r.team not in teams:
        b.fail((*at, "team"), f"unknown team {r.team!r}")
    if r.policy is not None and r.policy not in policies:
        b.fail((*at, "policy"), f"unknown policy {r.policy!r}")
    if r.severity is not None and r.severity not in severities:
        b.fail((*at, "severity"), f"unknown severity {r.severity!r}")
    rule = None
    if r.severity_from is not None:
        rule = _severity_rule(b, (*at, "severity_from"), r, severities)
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
            _route_spec(b, (*at, "routes", i), child, teams, policies, severities)
            for i, child in enumerate(r.routes)
        ),
        stale_after=r.stale_after,
        stale_action=StaleAction(r.stale_action) if r.stale_action is not None else None,
    )


def _check_stale(b: Builder, at: KeyPath, r: RouteSpecModel, inherited: bool) -> None:
    """A stale_action needs a stale_after on its route or above: alone it does nothing."""
    has_after = inherited or r.stale_after is not None
    if r.stale_action is not None and not has_after:
        b.fail((*at, "stale_action"), "stale_action needs stale_after on this route or a parent")
    for i, child in enumerate(r.routes):
        _check_stale(b, (*at, "routes", i), child, has_after)


def _severity_rule(
    b: Builder, at: KeyPath, r: RouteSpecModel, severities: set[str]
) -> SeverityRule:
    assert r.severity_from is not None
    rule = r.severity_from
    for value, name in rule.map.items():
        if name not in severities:
            b.fail((*at, "map", value), f"unknown severity {name!r}")
    if rule.default not in severities:
        b.fail((*at, "default"), f"unknown severity {rule.default!r}")
    return SeverityRule(rule.label, dict(rule.map), rule.default)
