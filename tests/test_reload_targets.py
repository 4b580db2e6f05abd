"""A reload that renames or removes what an open incident's policy snapshot names (a schedule,
a layer, the team's lead), in-process on a fake clock: the incident still pages its team's
on-call person through the team's current schedule, and whatever reaches nobody says so in
the log, at the reload and at the step."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.config.model import TEAM_LEAD, TEAM_SCHEDULE, Team, bind_policy
from receiver.core.model import EventKind, IncidentState, TimelineEvent
from receiver.escalation.codec import state_from_dict, state_to_stored
from receiver.escalation.keys import contact_key
from receiver.escalation.plan import EscalationState, EscalationStatus
from receiver.escalation.policy import Policy, Step, Target, TargetKind
from receiver.escalation.targets import reach
from receiver.escalation.unreached import lost_contacts, reload_lines, step_lines
from receiver.store import NewIncident, Transaction
from receiver.store.base import Store
from receiver.store.codec import dumps, loads
from tests.test_api import Api, start_api
from tests.test_escalation import Sim, directory
from tests.test_store import store as store  # noqa: F401  (both stores, a fixture)

STEP = timedelta(minutes=5)
Edit = Callable[[str], str]


def renamed(text: str) -> str:
    """The schedule `payments` renamed `pay-eu`, both teams moved to it: the same people."""
    text = text.replace("  - name: payments\n    timezone", "  - name: pay-eu\n    timezone")
    return text.replace("schedule: payments", "schedule: pay-eu")


def without_secondary(text: str) -> str:
    """The schedule keeps only its primary layer, and the policy drops its secondary step
    (else the file is refused: a step that would page nobody)."""
    lines = [line for line in text.splitlines()
             if "name: secondary" not in line and "oncall: secondary" not in line]
    return "\n".join(lines) + "\n"


def lead_replaced(text: str) -> str:
    """cy, the teams' lead, leaves: removed from the users, ana leads both teams."""
    lines = [line for line in text.splitlines() if "name: cy," not in line]
    return "\n".join(lines).replace("lead: cy", "lead: ana") + "\n"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path, reloadable=True)
    yield started
    await started.daemon.stop()


def rewrite(path: Path, edit: Edit) -> None:
    path.write_text(edit(path.read_text()))


async def reload(api: Api, edit: Edit) -> None:
    rewrite(Path(str(api.daemon.config_path)), edit)
    assert api.daemon.reload()
    await api.settle()
    for task in list(api.daemon._tasks):  # the reload's look at the open incidents
        await task


async def steps(api: Api, number: int) -> list[dict[str, Any]]:
    status, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert status == 200, body
    return [e["detail"] for e in body["timeline"] if e["kind"] == "step_fired"]


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_a_renamed_schedule_still_pages_the_teams_on_call_person(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]
    caplog.set_level(logging.INFO)
    await reload(api, renamed)
    assert logged(caplog, logging.WARNING) == [
        f"1 open incident(s) name schedule payments, which this config removes: they page"
        f" team payments's schedule pay-eu instead (#{number})"]
    caplog.clear()

    api.clock.advance(STEP)
    assert await api.paged_once(2) == ["ana", "bo"]  # the secondary, not nobody then cy
    second = (await steps(api, number))[-1]
    assert (second["recipients"], second["unresolved"]) == (["bo"], [])
    assert second["rebound"] == ["schedule payments no longer exists: team payments's"
                                 " schedule pay-eu"]
    assert logged(caplog, logging.WARNING) == [
        f"incident #{number} step 2: schedule payments no longer exists: team payments's"
        f" schedule pay-eu"]
    api.clock.advance(STEP - timedelta(seconds=1))
    await api.settle()
    assert api.paged() == ["ana", "bo"]  # the lead's step waits its 5 minutes
    api.clock.advance(timedelta(seconds=1))
    assert await api.paged_once(3) == ["ana", "bo", "cy"]


async def test_a_removed_layer_is_named_at_the_reload_and_at_the_step(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]
    caplog.set_level(logging.INFO)
    await reload(api, without_secondary)
    assert logged(caplog, logging.WARNING) == [
        f"1 open incident(s) page nobody at a step of their policy after this config:"
        f" schedule payments has no layer secondary (#{number})"]
    caplog.clear()

    api.clock.advance(STEP)
    # Nobody to page at the secondary's step: the next step (the lead) at once, as before.
    assert await api.paged_once(2) == ["ana", "cy"]
    second = (await steps(api, number))[-2]
    assert (second["recipients"], second["unresolved"]) == (
        [], ["schedule payments has no layer secondary"])
    assert logged(caplog, logging.ERROR) == [
        f"incident #{number} step 2 paged nobody: schedule payments has no layer secondary"]


async def test_a_removed_lead_is_replaced_by_the_teams_current_lead(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]
    caplog.set_level(logging.INFO)
    await reload(api, lead_replaced)
    assert logged(caplog, logging.WARNING) == [
        f"1 open incident(s) name user cy, which this config removes: they page team"
        f" payments's lead ana instead (#{number})"]
    api.clock.advance(STEP)
    assert await api.paged_once(2) == ["ana", "bo"]
    api.clock.advance(STEP)
    assert await api.paged_once(3) == ["ana", "bo", "ana"]
    third = (await steps(api, number))[-1]
    assert third["rebound"] == ["user cy no longer exists: team payments's lead ana"]


async def test_a_reload_that_changes_nobody_an_incident_pages_says_nothing(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    await api.fire()
    await api.paged_once(1)
    caplog.set_level(logging.INFO)
    await reload(api, lambda text: text.replace("bundle_window: 0s", "bundle_window: 1s"))
    assert logged(caplog, logging.WARNING) == []


# -- the pure parts: targets through the team, the snapshot, the log lines --------------------

NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def team_target(name: str, layer: str = "secondary") -> Target:
    """`{oncall: LAYER}` of team payments, bound to the schedule `name` when it opened."""
    return Target(TargetKind.SCHEDULE, name, layer, team="payments")


REACH = [
    # (target, recipients, unresolved, rebound)
    (team_target("payments"), ["bo"], [], []),
    (team_target("pay-old"), ["bo"], [],
     ["schedule pay-old no longer exists: team payments's schedule payments"]),
    (Target(TargetKind.SCHEDULE, "pay-old", "secondary"), [], ["unknown schedule pay-old"], []),
    (team_target("payments", "tertiary"), [], ["schedule payments has no layer tertiary"], []),
    (team_target("pay-old", "tertiary"), [],
     ["schedule pay-old no longer exists: team payments's schedule payments, where schedule"
      " payments has no layer tertiary"], []),
    (replace(team_target("pay-old"), team="gone"), [], ["unknown schedule pay-old"], []),
    (Target(TargetKind.USER, "zed", team="payments"), ["dee"], [],
     ["user zed no longer exists: team payments's lead dee"]),
    (Target(TargetKind.USER, "zed"), [], ["unknown user zed"], []),
]


@pytest.mark.parametrize(("target", "recipients", "unresolved", "rebound"), REACH,
                         ids=["bound", "renamed", "named-removed", "layer-removed",
                              "renamed-layer-removed", "team-removed", "lead-removed",
                              "user-removed"])
def test_a_team_target_whose_name_is_gone_reaches_the_teams_current_one(
    target: Target, recipients: list[str], unresolved: list[str], rebound: list[str]
) -> None:
    found, dead, notes = reach([target], directory(), NOW)
    assert ([r.name for r in found], dead, notes) == (recipients, unresolved, rebound)


def test_a_gap_in_the_rota_is_still_nobody_on_call() -> None:
    gap = directory(on_call_table={("payments", "primary"): "ana"})
    assert reach([team_target("payments")], gap, NOW)[1] == [
        "schedule payments layer secondary: nobody on call"]


def test_the_step_fired_event_says_what_was_reached_through_the_team() -> None:
    policy = Policy("standard", (Step(timedelta(0), (team_target("pay-old", "primary"),)),))
    sim = Sim.open(policy=policy)
    sim.fire_next()
    [fired] = [d for _, k, d in sim.events if k is EventKind.STEP_FIRED]
    assert (fired["recipients"], fired["rebound"]) == (
        ["ana"], ["schedule pay-old no longer exists: team payments's schedule payments"])


def test_a_bound_policy_keeps_its_team_in_the_snapshot() -> None:
    shared = Policy("standard", (
        Step(timedelta(0), (Target(TargetKind.SCHEDULE, TEAM_SCHEDULE, "primary"),
                            Target(TargetKind.SCHEDULE, "db", "primary"))),
        Step(timedelta(0), (Target(TargetKind.USER, TEAM_LEAD), Target(TargetKind.USER, "cy"))),
    ))
    bound = bind_policy(shared, Team("payments", schedule="pay-eu", lead="dee"))
    assert [t for s in bound.steps for t in s.targets] == [
        Target(TargetKind.SCHEDULE, "pay-eu", "primary", team="payments"),
        Target(TargetKind.SCHEDULE, "db", "primary"),
        Target(TargetKind.USER, "dee", team="payments"),
        Target(TargetKind.USER, "cy"),
    ]
    state = EscalationState(bound, EscalationStatus.ACTIVE)
    stored = loads(dumps(state_to_stored(state)))
    assert state_from_dict(stored).policy == bound
    # Targets of no team are written as before; a snapshot written before, read as no team's.
    targets = stored["policy"]["steps"][0]["targets"]
    assert [sorted(t) for t in targets] == [
        ["kind", "layer", "name", "team"], ["kind", "layer", "name"]]
    del targets[0]["team"]
    older = state_from_dict(stored).policy
    assert older.steps[0].targets[0] == Target(TargetKind.SCHEDULE, "pay-eu", "primary")


def new_incident(key: str) -> NewIncident:
    return NewIncident(
        group_key=key, route_id="{}", team="payments", severity="SEV1", policy="standard",
        group_labels={"alertname": key}, opened_at=NOW, external_url="", summary="")


def fired(**detail: Any) -> TimelineEvent:
    return TimelineEvent(NOW, EventKind.STEP_FIRED, detail={
        "step": 1, "number": 2, "cycle": 0, "recipients": [], "unresolved": [], **detail})


STEP_LINES = [
    ([fired(recipients=["bo"])], []),
    ([fired(unresolved=["unknown user zed"])],
     [(logging.ERROR, "incident #7 step 2 paged nobody: unknown user zed")]),
    ([fired(recipients=["bo"], unresolved=["unknown channel x", "unknown user zed"], cycle=1)],
     [(logging.WARNING, "incident #7 step 2 (cycle 2) paged bo but not: unknown channel x;"
       " unknown user zed")]),
    ([fired(recipients=["bo"], rebound=["schedule a no longer exists: team t's schedule b"])],
     [(logging.WARNING, "incident #7 step 2: schedule a no longer exists: team t's"
       " schedule b")]),
    ([TimelineEvent(NOW, EventKind.NOTIFICATION_FAILED, detail={
        "recipient": "ana", "step": 0, "error": "user ana no longer has contact 2"})],
     [(logging.WARNING, "incident #7 step 1: user ana no longer has contact 2: not paged")]),
    ([TimelineEvent(NOW, EventKind.NOTIFICATION_FAILED, detail={"escalating_early": True})], []),
    ([TimelineEvent(NOW, EventKind.NOTIFICATION_FAILED, detail={
        "escalating_early": True, "step": 0, "cycle": 0, "unreachable": ["ana", "bo"]})],
     [(logging.ERROR, "incident #7 step 1: every page to ana, bo failed, nobody it paged"
       " can be reached: escalating now")]),
    ([TimelineEvent(NOW, EventKind.NOTIFICATION_FAILED, detail={
        "escalating_early": False, "step": 2, "cycle": 1, "unreachable": ["dee"],
        "repeat_at": "2026-01-05T10:30:00+00:00"})],
     [(logging.ERROR, "incident #7 step 3 (cycle 2): every page to dee failed, nobody it"
       " paged can be reached; the repeat keeps its time (2026-01-05T10:30:00+00:00): it"
       " reminds those the earlier steps paged")]),
    ([fired(unresolved=["unknown user zed"],
            not_paged={"user": "ana", "why": "raised the severity"})],
     [(logging.WARNING, "incident #7 step 2 paged nobody (ana, who raised the severity, was"
       " not paged) and missed: unknown user zed")]),
]


@pytest.mark.parametrize(("events", "lines"), STEP_LINES,
                         ids=["reached", "nobody", "some", "rebound", "contact-gone", "failed",
                              "unreachable-early", "unreachable-repeat", "raiser-not-paged"])
def test_a_step_that_misses_anyone_is_a_log_line(
    events: list[TimelineEvent], lines: list[tuple[int, str]]
) -> None:
    assert step_lines(7, events) == lines


def test_a_reload_line_counts_the_incidents_and_names_the_first_ones() -> None:
    removed = Policy("standard", (Step(timedelta(0), (team_target("payments", "tertiary"),
                                                      team_target("pay-old"))),))
    renamed_ = Policy("standard", (Step(timedelta(0), (team_target("pay-old", "primary"),
                                                       team_target("pay-old"))),))
    fine = Policy("standard", (Step(timedelta(0), (team_target("payments"),)),))
    open_ = [(n, removed) for n in range(1, 13)] + [(13, renamed_), (14, fine)]
    assert reload_lines(open_, directory()) == [
        "13 open incident(s) name schedule pay-old, which this config removes: they page"
        " team payments's schedule payments instead (#1, #2, #3, #4, #5, #6, #7, #8, #9, #10"
        " and 3 more)",
        "12 open incident(s) page nobody at a step of their policy after this config:"
        " schedule payments has no layer tertiary (#1, #2, #3, #4, #5, #6, #7, #8, #9, #10"
        " and 2 more)",
    ]


async def test_a_reload_that_drops_a_waiting_delayed_contact_answers_and_logs_it(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """ana's SMS follows her push by 10 minutes; a reload that changes its URL while it
    waits means it is not sent: the reload's answer and log say so then, not 10 minutes on."""
    push = 'contacts: [{url: "json://127.0.0.1:9/ana"}'
    path = Path(str(api.daemon.config_path))
    rewrite(path, lambda text: text.replace(
        push, push + ', {url: "json://127.0.0.1:9/ana-sms", delay: 10m}'))
    assert (await api.call("POST", "/-/reload"))[1]["warnings"] == []
    number = await api.fire()
    assert await api.paged_once(1) == ["ana"]
    rewrite(path, lambda text: text.replace("/ana-sms", "/ana-new-sms"))
    caplog.set_level(logging.INFO)
    status, body = await api.call("POST", "/-/reload")
    assert status == 200, body
    line = ("1 open incident(s) wait to page ana through a delayed contact (contact 2) that"
            f" this config removes or gives another URL: it will not be sent (#{number})")
    assert body["warnings"] == [{
        "kind": "config_contact_lost", "file": str(path), "line": None,
        "key": "(open incidents)", "message": line, "incidents": [number],
        "incident_count": 1}]
    assert logged(caplog, logging.WARNING) == [line]

    api.clock.advance(timedelta(minutes=10))  # as foretold
    await api.settle()
    assert api.paged().count("ana") == 1  # her push; no SMS (bo's step came at 5 minutes)
    _, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    assert [e["detail"]["error"] for e in incident["timeline"]
            if e["kind"] == "notification_failed"] == ["user ana no longer has contact 2"]


SMS = "json://pager/ana-sms"  # ana's second contact in test_escalation's directory, delayed


@pytest.mark.parametrize(("key", "runs", "lines"), [
    # Her delayed contact is still hers (at its place, or moved: the digest finds it).
    (contact_key(0, 0, 0, "ana", 1, SMS), {7: 0}, []),
    (contact_key(0, 0, 0, "ana", 4, SMS), {7: 0}, []),
    # Its URL changed, or the contact was removed: the digest finds none.
    (contact_key(0, 0, 0, "ana", 1, "json://pager/ana-old-sms"), {7: 0}, [
        "1 open incident(s) wait to page ana through a delayed contact (contact 2) that this"
        " config removes or gives another URL: it will not be sent (#7)"]),
    # Her person removed.
    (contact_key(0, 0, 0, "zed", 0, SMS), {7: 0}, [
        "1 open incident(s) wait to page zed, whom this config removes, through a delayed"
        " contact: it will not be sent (#7)"]),
    # An earlier run's contact, or an escalation that no longer waits: it does nothing anyway.
    (contact_key(0, 0, 0, "ana", 1, "json://pager/ana-old-sms"), {7: 1}, []),
    (contact_key(0, 0, 0, "ana", 1, "json://pager/ana-old-sms"), {}, []),
    # Armed before digests: named by index, as the engine reads it.
    ("0:0:0:ana:1", {7: 0}, []),
    ("0:0:0:ana:2", {7: 0}, [
        "1 open incident(s) wait to page ana through a delayed contact (contact 3) that this"
        " config removes or gives another URL: it will not be sent (#7)"]),
    ("not a contact key", {7: 0}, []),
])
def test_a_waiting_delayed_contact_the_config_drops_is_named(
    key: str, runs: dict[int, int], lines: list[str],
) -> None:
    assert [line for line, _ in lost_contacts([(7, key)], runs, directory())] == lines


def test_lost_contacts_count_each_incident_once() -> None:
    gone = contact_key(0, 0, 1, "ana", 1, "json://pager/ana-old-sms")
    waiting = [(7, gone), (7, contact_key(0, 0, 2, "ana", 1, "json://pager/ana-old-sms")),
               (8, gone)]
    [(line, numbers)] = lost_contacts(waiting, {7: 0, 8: 0}, directory())
    assert numbers == [7, 8]
    assert line.startswith("2 open incident(s) wait to page ana")
    assert line.endswith("(#7, #8)")


# -- what a reload reads: the open incidents' escalation states, on both stores ---------------


async def test_the_store_gives_every_open_incidents_escalation_state(store: Store) -> None:
    state = state_to_stored(EscalationState(
        Policy("standard", (Step(timedelta(0), (team_target("payments"),)),)),
        EscalationStatus.ACTIVE))

    async def job(tx: Transaction) -> list[int]:
        numbers = []
        for key in ("a", "b", "c", "d"):
            numbers.append(await tx.insert_incident(new_incident(key), None))
        for number in numbers[:3]:
            await tx.set_escalation(number, state)
        await tx.update_incident(numbers[1], NOW, state=IncidentState.RESOLVED,
                                 resolved_at=NOW, resolved_by="ana")
        return numbers

    a, _, c, _ = await store.write(job)
    assert await store.open_escalations() == [(a, loads(dumps(state))), (c, loads(dumps(state)))]


async def test_the_store_gives_the_delayed_contacts_of_triggered_incidents(
    store: Store,  # noqa: F811
) -> None:
    later = NOW + timedelta(minutes=10)

    async def job(tx: Transaction) -> list[int]:
        numbers = [await tx.insert_incident(new_incident(k), None) for k in ("a", "b", "c", "d")]
        for number in numbers:
            await tx.arm(number, [(later, "contact", f"0:0:0:ana:1.{number}"),
                                  (later, "step", "0:0:1")])
        await tx.arm(numbers[0], [(later, "contact", "0:0:0:bo:1.x")])
        await tx.update_incident(numbers[1], NOW, state=IncidentState.RESOLVED,
                                 resolved_at=NOW, resolved_by="ana")
        await tx.update_incident(numbers[2], NOW, state=IncidentState.ACKNOWLEDGED,
                                 acknowledged_at=NOW, acknowledged_by="ana")
        return numbers

    a, _, _, d = await store.write(job)
    assert await store.open_contacts() == [
        (a, f"0:0:0:ana:1.{a}"), (a, "0:0:0:bo:1.x"), (d, f"0:0:0:ana:1.{d}")]
