"""A reload (or a start) whose route tree groups open incidents' alerts under other keys says
so in the log: which incidents, what their alerts' next resends do, what to do about it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from receiver.alertmanager.matchers import parse_matcher
from receiver.alertmanager.webhook import fingerprint_of
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import Alert, AlertStatus, IncidentState
from receiver.ingest.regroup import regroup_line, regrouped
from receiver.routing.tree import RouteSpec, build, route
from receiver.store import Transaction
from receiver.store.base import Store
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import write_config
from tests.test_api import LABELS, Api, start_api
from tests.test_reload_targets import NOW, Edit, logged, new_incident, reload, rewrite
from tests.test_store import store as store  # noqa: F401  (both stores, a fixture)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path, reloadable=True)
    yield started
    await started.daemon.stop()


def by_alertname(text: str) -> str:
    """The root route groups by alertname alone (the payments route inherits it)."""
    return text.replace("group_by: [alertname, cluster]", "group_by: [alertname]")


def other_matchers(text: str) -> str:
    """The payments route takes a second team's alerts too: another route id."""
    return text.replace("""['team="payments"']""", """['team=~"payments|pay"']""")


def without_payments_route(text: str) -> str:
    """The payments route removed: its alerts fall to the root route (team platform)."""
    route = """  routes:\n    - matchers: ['team="payments"']\n      team: payments\n"""
    return text.replace(route, "")


def warned(numbers: str) -> str:
    return regroup_line([int(n) for n in numbers.split()])


@pytest.mark.parametrize("edit", [by_alertname, other_matchers, without_payments_route],
                         ids=["group_by", "matchers", "route-removed"])
async def test_a_reload_that_regroups_an_open_incidents_alerts_names_it(
    api: Api, caplog: pytest.LogCaptureFixture, edit: Edit
) -> None:
    number = await api.fire()
    other = await api.fire({**LABELS, "alertname": "LedgerLag"})
    caplog.set_level(logging.INFO)
    await reload(api, edit)
    said = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "config_regrouped"]
    assert said == [warned(f"{number} {other}")]
    assert f"(#{number}, #{other})" in said[0]
    # Without its route, team payments is reached by no alert: the file's own warning.
    unrouted = "warning: no route leads to team 'payments'"
    expected = [warned(f"{number} {other}")] + [line for line in logged(
        caplog, logging.WARNING) if unrouted in line and edit is without_payments_route]
    assert sorted(logged(caplog, logging.WARNING)) == sorted(expected)
    assert len(expected) == 1 + (edit is without_payments_route)

    # What the line foretells: the same alert, resent, opens a second incident.
    assert await api.fire() not in (number, other)


async def test_a_reload_that_keeps_every_group_says_nothing(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    number = await api.fire()
    caplog.set_level(logging.INFO)
    # A child route added after the payments route takes nothing the payments route took,
    # and a policy's delay changes no group.
    await reload(api, lambda text: text.replace("delay: 5m", "delay: 4m") + (
        "    - matchers: ['team=\"ledger\"']\n      team: payments\n"))
    assert logged(caplog, logging.WARNING) == []
    assert await api.fire() == number


async def test_a_start_on_a_file_that_regroups_names_the_incidents(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9", step_delay="5m")

    def daemon() -> Daemon:
        loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
        return Daemon(loaded, clock=clock, notifier=RecordingNotifier(), config_path=path)

    clock = FakeClock()
    first = daemon()
    await first.start()
    running = Api(first, RecordingNotifier(), clock)
    number = await running.fire()
    await running.settle()  # its page sent: none in flight at the stop
    await first.stop()
    rewrite(path, by_alertname)  # changed while ackd was down
    caplog.set_level(logging.INFO)
    second = daemon()
    await second.start()
    try:
        for task in list(second._tasks):  # the start's look at the open incidents
            await task
        assert logged(caplog, logging.WARNING) == [warned(str(number))]
    finally:
        await second.stop()


# -- the pure part: which incidents, and the line ------------------------------------------------


def tree(group_by: tuple[str, ...], *children: RouteSpec) -> RouteSpec:
    return RouteSpec(team="platform", policy="standard", severity="SEV2", group_by=group_by,
                     routes=children)


PAY = RouteSpec(matchers=(parse_matcher('team="payments"'),), team="payments")
LEDGER = RouteSpec(matchers=(parse_matcher('team="payments"'),), team="ledger", continue_=True)
A = {"alertname": "Down", "cluster": "eu1", "team": "payments"}
B = {"alertname": "Down", "cluster": "us1", "team": "payments"}
C = {"alertname": "Lag", "cluster": "eu1", "team": "platform"}


def key(spec: RouteSpec, labels: dict[str, str]) -> str:
    """Where `spec`'s tree groups `labels` (its first match)."""
    return route(build(spec), labels)[0].group_key


def test_only_incidents_whose_alerts_land_elsewhere_are_named() -> None:
    old = tree(("alertname",), PAY)
    new = tree(("alertname", "cluster"), PAY)
    firing = [
        (1, key(old, A), A), (1, key(old, B), B),  # split in two by the new group_by
        (2, key(old, C), C),  # grouped by alertname alone before, and by cluster now
        (3, key(new, A), A),  # already under the new key (opened after a first reload)
    ]
    assert regrouped(firing, build(new)) == [1, 2]
    assert regrouped(firing[:2] + firing[3:], build(old)) == [3]


def test_an_incident_keeps_an_alert_that_any_of_its_routes_gives_it() -> None:
    # A `continue` route before PAY: each payments alert has two groups, one incident each.
    both = tree(("alertname",), LEDGER, PAY)
    keys = [m.group_key for m in route(build(both), A)]
    assert len(keys) == 2
    assert regrouped([(1, keys[0], A), (2, keys[1], A)], build(both)) == []
    # The continue route now takes one cluster only: the ledger incident loses its alert.
    eu_only = replace(LEDGER, matchers=(parse_matcher('cluster="us1"'),))
    assert regrouped([(1, keys[0], A), (2, keys[1], A)],
                     build(tree(("alertname",), eu_only, PAY))) == [1]


def test_a_route_inserted_before_its_siblings_regroups_theirs() -> None:
    # A route's id holds its place among its siblings: one put first moves every later one.
    old = tree(("alertname",), PAY)
    new = tree(("alertname",), RouteSpec(matchers=(parse_matcher('team="ledger"'),)), PAY)
    assert regrouped([(1, key(old, A), A)], build(new)) == [1]
    assert regrouped([(1, key(old, A), A)], build(tree(("alertname",), PAY, new.routes[0]))) == []


def test_incidents_no_route_made_are_left_out() -> None:
    gone = tree(("cluster",))
    firing = [(1, "drill:payments:1", A), (2, "declared:payments:1:ab", A),
              (3, 'heartbeat/nightly:{heartbeat="nightly"}', A)]
    assert regrouped(firing, build(gone)) == []


def test_the_line_counts_the_incidents_and_names_the_first_ten() -> None:
    line = regroup_line(list(range(1, 13)))
    assert line.startswith("12 open incident(s) hold firing alerts this config groups under"
                           " another key")
    assert "opens a new incident, paging again" in line
    assert line.endswith("(#1, #2, #3, #4, #5, #6, #7, #8, #9, #10 and 2 more)")


# -- what a reload reads: the open incidents' firing alerts, on both stores ---------------------


def alert(labels: dict[str, str], status: AlertStatus = AlertStatus.FIRING) -> Alert:
    starts = NOW - timedelta(minutes=1)
    return Alert(fingerprint_of(labels), status, labels, {}, starts,
                 NOW if status is AlertStatus.RESOLVED else None)


async def test_the_store_gives_every_open_incidents_firing_alerts(store: Store) -> None:  # noqa: F811
    async def job(tx: Transaction) -> list[int]:
        numbers = [await tx.insert_incident(new_incident(k), None) for k in ("a", "b", "c")]
        await tx.write_alerts(numbers[0], [alert(A), alert(B, AlertStatus.RESOLVED)], NOW)
        await tx.write_alerts(numbers[1], [alert(C)], NOW)
        await tx.write_alerts(numbers[2], [alert(A), alert(C)], NOW)
        await tx.update_incident(numbers[1], NOW, state=IncidentState.RESOLVED,
                                 resolved_at=NOW, resolved_by="ana")
        return numbers

    a, _, c = await store.write(job)
    found = await store.open_firing_alerts()
    assert found[0] == (a, "a", A)
    assert sorted(map(str, found[1:])) == sorted(map(str, [(c, "c", A), (c, "c", C)]))
    assert len(found) == 3
