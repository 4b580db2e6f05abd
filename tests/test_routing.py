"""The route tree: inheritance at build time, Alertmanager's dispatch order, ids and group keys."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.alertmanager.matchers import Matcher, parse_matcher
from receiver.escalation.staleness import StaleAction, StaleRule
from receiver.routing.tree import (
    Match,
    Route,
    RouteSpec,
    SeverityRule,
    build,
    describe,
    route,
    route_all,
)


def _m(*texts: str) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(t) for t in texts)


BY_SEVERITY = SeverityRule("severity", {"critical": "SEV1", "warning": "SEV3"}, "SEV4")
BY_PRIORITY = SeverityRule("priority", {"p1": "SEV1"}, "SEV5")

# Ids of the tree below, named so the tables read.
ROOT = "{}"
PAY = '{}/{team="payments"}/0'
PAY_DOWN = PAY + '/{alertname=~"Payment.*Down",env="prod"}/0'
PAY_STAGING = PAY + '/{env="staging"}/1'
KUBE = '{}/{namespace=~"kube-.*|monitoring"}/1'
KUBE_WATCHDOG = KUBE + '/{alertname="Watchdog"}/0'
MON = '{}/{namespace="monitoring"}/2'
DB = '{}/{db!=""}/3'

TREE = RouteSpec(
    team="ops",
    policy="standard",
    severity_rule=BY_SEVERITY,
    group_by=("alertname", "cluster"),
    routes=(
        RouteSpec(
            name="payments",
            matchers=_m('team="payments"'),
            team="payments",
            routes=(
                RouteSpec(
                    matchers=_m('alertname=~"Payment.*Down"', 'env="prod"'),
                    severity="SEV1",
                    policy="critical",
                ),
                RouteSpec(
                    matchers=_m('env="staging"'),
                    policy="quiet",
                    group_by=("...",),
                ),
            ),
        ),
        RouteSpec(
            matchers=_m('namespace=~"kube-.*|monitoring"'),
            team="platform",
            severity="SEV2",
            continue_=True,
            routes=(
                RouteSpec(
                    name="watchdog",
                    matchers=_m('alertname="Watchdog"'),
                    severity_rule=BY_PRIORITY,
                ),
            ),
        ),
        RouteSpec(
            matchers=_m('namespace="monitoring"'),
            team="observability",
            group_by=("namespace",),
        ),
        RouteSpec(matchers=_m('db!=""'), team="dba", policy="db"),
    ),
)


@pytest.fixture(scope="module")
def tree() -> Route:
    return build(TREE)


def _walk(node: Route) -> Iterator[Route]:
    yield node
    for child in node.routes:
        yield from _walk(child)


def test_ids_follow_alertmanager(tree: Route) -> None:
    assert [r.id for r in _walk(tree)] == [
        ROOT, PAY, PAY_DOWN, PAY_STAGING, KUBE, KUBE_WATCHDOG, MON, DB,
    ]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param({}, [(ROOT, "ops", "SEV4", "standard")], id="no-child-root-default"),
        pytest.param(
            {"severity": "critical"}, [(ROOT, "ops", "SEV1", "standard")], id="root-rule-map"
        ),
        pytest.param(
            {"team": "payments", "alertname": "PaymentAPIDown", "env": "prod"},
            [(PAY_DOWN, "payments", "SEV1", "critical")],
            id="nested-child-overrides-rule-with-severity",
        ),
        pytest.param(
            {"team": "payments", "alertname": "PaymentAPIDown", "env": "dev",
             "severity": "warning"},
            [(PAY, "payments", "SEV3", "standard")],
            id="no-grandchild-parent-matches-inherits-rule-and-policy",
        ),
        pytest.param(
            {"team": "payments", "alertname": "PaymentAPIDownSoon", "env": "prod"},
            [(PAY, "payments", "SEV4", "standard")],
            id="regex-anchored-at-end",
        ),
        pytest.param(
            {"team": "payments", "env": "staging", "severity": "critical"},
            [(PAY_STAGING, "payments", "SEV1", "quiet")],
            id="grandchild-inherits-team-from-parent-and-rule-from-root",
        ),
        pytest.param(
            {"team": "payments", "namespace": "monitoring", "db": "orders"},
            [(PAY, "payments", "SEV4", "standard")],
            id="first-matching-child-wins",
        ),
        pytest.param(
            {"namespace": "monitoring", "severity": "critical"},
            [(KUBE, "platform", "SEV2", "standard"), (MON, "observability", "SEV1", "standard")],
            id="continue-yields-two-matches",
        ),
        pytest.param(
            {"namespace": "monitoring", "db": "x"},
            [(KUBE, "platform", "SEV2", "standard"), (MON, "observability", "SEV4", "standard")],
            id="continue-stops-at-next-non-continue-match",
        ),
        pytest.param(
            {"namespace": "kube-system", "alertname": "Watchdog", "priority": "p1"},
            [(KUBE_WATCHDOG, "platform", "SEV1", "standard")],
            id="child-rule-overrides-parent-severity",
        ),
        pytest.param(
            {"namespace": "kube-system", "alertname": "Watchdog", "db": "x"},
            [(KUBE_WATCHDOG, "platform", "SEV5", "standard"), (DB, "dba", "SEV4", "db")],
            id="continue-on-parent-applies-after-its-subtree",
        ),
        pytest.param(
            {"namespace": "kube-system", "severity": "critical"},
            [(KUBE, "platform", "SEV2", "standard")],
            id="child-severity-overrides-root-rule",
        ),
        pytest.param(
            {"namespace": "xkube-system"}, [(ROOT, "ops", "SEV4", "standard")],
            id="regex-anchored-at-start",
        ),
        pytest.param({"db": ""}, [(ROOT, "ops", "SEV4", "standard")], id="empty-label-is-unset"),
        pytest.param({"db": "orders"}, [(DB, "dba", "SEV4", "db")], id="not-empty-matcher"),
    ],
)
def test_route(
    tree: Route, labels: dict[str, str], expected: list[tuple[str, str, str, str]]
) -> None:
    matches = route(tree, labels)
    assert [(m.route.id, m.team, m.severity, m.policy) for m in matches] == expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param(
            {"alertname": "X", "cluster": "eu1", "pod": "a"},
            [({"alertname": "X", "cluster": "eu1"}, '{}:{alertname="X",cluster="eu1"}')],
            id="root-group-by",
        ),
        pytest.param(
            {"alertname": "X", "pod": "a"},
            [({"alertname": "X"}, '{}:{alertname="X"}')],
            id="absent-group-label-left-out",
        ),
        pytest.param({"pod": "a"}, [({}, "{}:{}")], id="no-group-labels"),
        pytest.param(
            {"team": "payments", "cluster": "eu1", "alertname": "X"},
            [({"alertname": "X", "cluster": "eu1"}, PAY + ':{alertname="X",cluster="eu1"}')],
            id="child-inherits-group-by",
        ),
        pytest.param(
            {"team": "payments", "env": "staging", "pod": 'a"b\\c\n'},
            [(
                {"team": "payments", "env": "staging", "pod": 'a"b\\c\n'},
                PAY_STAGING + ':{env="staging",pod="a\\"b\\\\c\\n",team="payments"}',
            )],
            id="group-by-all-sorted-and-escaped",
        ),
        pytest.param(
            {"namespace": "monitoring", "alertname": "X"},
            [
                ({"alertname": "X"}, KUBE + ':{alertname="X"}'),
                ({"namespace": "monitoring"}, MON + ':{namespace="monitoring"}'),
            ],
            id="child-own-group-by",
        ),
    ],
)
def test_group_labels_and_keys(
    tree: Route, labels: dict[str, str], expected: list[tuple[dict[str, str], str]]
) -> None:
    assert [(dict(m.group_labels), m.group_key) for m in route(tree, labels)] == expected


def test_resolved_settings(tree: Route) -> None:
    staging = tree.routes[0].routes[1]
    assert (staging.group_by, staging.group_by_all) == ((), True)
    assert (tree.group_by, tree.group_by_all) == (("alertname", "cluster"), False)
    watchdog = tree.routes[1].routes[0]
    assert (watchdog.severity, watchdog.severity_rule) == (None, BY_PRIORITY)
    assert (tree.routes[1].severity, tree.routes[1].severity_rule) == ("SEV2", None)
    assert [r.continue_ for r in tree.routes] == [False, True, False, False]


def test_same_matchers_under_different_parents_get_distinct_ids() -> None:
    # Alertmanager's ID() carries the parent's position too, so group keys never collide.
    leaf = RouteSpec(matchers=_m("a=b"))
    twin = RouteSpec(matchers=_m("x=y"), continue_=True, routes=(leaf,))
    root = build(RouteSpec(team="t", policy="p", severity="S", routes=(twin, twin)))
    assert [m.route.id for m in route(root, {"x": "y", "a": "b"})] == [
        '{}/{x="y"}/0/{a="b"}/0',
        '{}/{x="y"}/1/{a="b"}/0',
    ]


def test_severity_rule_keeps_its_own_copy_of_the_map() -> None:
    table = {"critical": "SEV1"}
    rule = SeverityRule("severity", table, "SEV4")
    table["critical"] = "SEV9"
    assert rule.severity({"severity": "critical"}) == "SEV1"
    assert rule.severity({}) == "SEV4"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            RouteSpec(policy="p", severity="S"),
            "the root route must set team, which its children inherit",
            id="no-team",
        ),
        pytest.param(
            RouteSpec(team="t", severity_rule=BY_SEVERITY),
            "the root route must set policy, which its children inherit",
            id="no-policy",
        ),
        pytest.param(
            RouteSpec(team="t", policy="p"),
            "the root route must set severity or severity_from, which its children inherit",
            id="no-severity",
        ),
        pytest.param(
            RouteSpec(),
            "the root route must set team and policy and severity or severity_from,",
            id="nothing",
        ),
        pytest.param(
            RouteSpec(team="t", policy="p", severity="S", routes=(
                RouteSpec(matchers=_m("a=b"), severity="S", severity_rule=BY_SEVERITY),
            )),
            'route {}/{a="b"}/0 sets both severity and severity_from: keep one',
            id="both-severities",
        ),
        pytest.param(
            RouteSpec(team="t", policy="p", severity="S", group_by=("...", "alertname")),
            "route {} has group_by ['...', 'alertname']: '...' already groups by every label",
            id="group-by-all-mixed",
        ),
    ],
)
def test_build_errors(spec: RouteSpec, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        build(spec)


def test_describe(tree: Route) -> None:
    matches: list[Match] = route(tree, {"namespace": "kube-system", "alertname": "Watchdog",
                                        "db": "x", "cluster": "eu1"})
    assert describe(matches) == "\n".join([
        f"route {KUBE_WATCHDOG} (watchdog): team=platform severity=SEV5 policy=standard"
        ' group_by=[alertname,cluster] group={alertname="Watchdog",cluster="eu1"}',
        f"route {DB}: team=dba severity=SEV4 policy=db"
        ' group_by=[alertname,cluster] group={alertname="Watchdog",cluster="eu1"}',
    ])


def test_describe_group_by_all(tree: Route) -> None:
    line = describe(route(tree, {"team": "payments", "env": "staging"}))
    assert line == (
        f"route {PAY_STAGING}: team=payments severity=SEV4 policy=quiet group_by=[...]"
        ' group={env="staging",team="payments"}'
    )


# TREE without its group_by: ['...'] route, so that route_all may share answers.
NAMED_TREE = replace(
    TREE, routes=(replace(TREE.routes[0], routes=TREE.routes[0].routes[:1]), *TREE.routes[1:])
)
LABEL_NAMES = ["team", "alertname", "env", "namespace", "db", "cluster", "severity",
               "priority", "instance", "pod"]
LABEL_VALUES = ["", "payments", "PaymentApiDown", "Watchdog", "prod", "staging", "kube-system",
                "monitoring", "orders", "critical", "warning", "p1", "eu1", "a"]
label_sets = st.lists(
    st.dictionaries(st.sampled_from(LABEL_NAMES), st.sampled_from(LABEL_VALUES), max_size=6),
    max_size=12,
)


def test_decides_on_names_every_label_the_tree_reads() -> None:
    assert build(TREE).decides_on is None  # a group_by ['...'] route reads every label
    assert build(NAMED_TREE).decides_on == (
        "alertname", "cluster", "db", "env", "namespace", "priority", "severity", "team"
    )


@given(label_sets)
def test_route_all_answers_as_route_does(sets: list[dict[str, str]]) -> None:
    for spec in (TREE, NAMED_TREE):
        root = build(spec)
        assert route_all(root, sets) == [route(root, labels) for labels in sets]


def test_route_all_shares_one_answer_across_labels_the_tree_ignores() -> None:
    root = build(NAMED_TREE)
    pods = [{"alertname": "X", "cluster": "eu1", "pod": str(i)} for i in range(3)]
    first, *rest = route_all(root, [*pods, {"alertname": "X", "cluster": "eu2"}])
    assert rest[0] is first
    assert rest[1] is first
    assert rest[2] != first


def test_stale_after_and_its_action_are_inherited_like_alertmanager_timers() -> None:
    resolving = RouteSpec(matchers=_m("a=b"), stale_action=StaleAction.RESOLVE,
                          routes=(RouteSpec(matchers=_m("c=d")),))
    shorter = RouteSpec(matchers=_m("x=y"), stale_after=timedelta(minutes=30))
    root = build(RouteSpec(team="t", policy="p", severity="S",
                           stale_after=timedelta(hours=3), routes=(resolving, shorter)))
    assert root.stale == StaleRule(timedelta(hours=3), StaleAction.NOTIFY)
    assert root.routes[0].stale == StaleRule(timedelta(hours=3), StaleAction.RESOLVE)
    assert root.routes[0].routes[0].stale == StaleRule(timedelta(hours=3), StaleAction.RESOLVE)
    assert root.routes[1].stale == StaleRule(timedelta(minutes=30), StaleAction.NOTIFY)
    assert build(RouteSpec(team="t", policy="p", severity="S")).stale is None  # off by default


def test_describe_shows_a_stale_rule() -> None:
    leaf = RouteSpec(matchers=_m("a=b"), stale_after=timedelta(minutes=90),
                     stale_action=StaleAction.RESOLVE)
    root = build(RouteSpec(team="t", policy="p", severity="S", group_by=("a",), routes=(leaf,)))
    assert describe(route(root, {"a": "b"})) == (
        'route {}/{a="b"}/0: team=t severity=S policy=p group_by=[a]'
        ' stale_after=1h30m stale_action=resolve group={a="b"}'
    )
    assert "stale" not in describe(route(root, {"a": "c"}))
