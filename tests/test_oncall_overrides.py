"""Run-time overrides and swaps through the API, in-process on a fake clock: stored, listed,
deleted, kept across a restart and a config reload, winning over the config's overrides
visibly, and used by escalation. Errors name the field (400), the schedule (404), the scope
(403)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.oncall.calendar import MAX_EVENTS, calendar
from receiver.oncall.overrides import Actor, Change, Leg, Scope, refusal
from receiver.oncall.schedules import Layer, Rotation, Schedule, ShiftUnit
from receiver.testing import FakeClock, RecordingNotifier
from tests.harness import ANA_TOKEN, BO_TOKEN, CY_TOKEN, write_config
from tests.test_api import Api, run_cli, start_api

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # the fake clock's start: ana is primary


def iso(delta: timedelta) -> str:
    return (T0 + delta).isoformat()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


async def override(api: Api, body: dict[str, Any], schedule: str = "payments") -> Any:
    status, answer = await api.call("POST", f"/api/v1/schedules/{schedule}/overrides", body)
    assert status == 201, answer
    return answer["overrides"]


async def who(api: Api, at: timedelta = timedelta(0)) -> dict[str, Any]:
    status, answer = await api.call(
        "GET", f"/api/v1/schedules/payments/oncall?at={iso(at).replace('+', '%2B')}")
    assert status == 200, answer
    return {layer["layer"]: layer for layer in answer["layers"]}


async def test_an_override_is_listed_answered_and_deleted(api: Api) -> None:
    [made] = await override(api, {"user": "cy", "start": iso(timedelta(hours=1)),
                                  "end": iso(timedelta(hours=3)), "layer": "primary",
                                  "note": "ana at the dentist"})
    assert (made["user"], made["layer"], made["created_by"]) == ("cy", "primary", "e2e")
    status, listing = await api.call("GET", "/api/v1/schedules/payments/overrides")
    assert status == 200
    assert [o["id"] for o in listing["overrides"]] == [made["id"]]
    assert (await who(api))["primary"]["user"] == "ana"
    inside = await who(api, timedelta(hours=2))
    assert inside["primary"]["user"] == "cy"
    assert inside["primary"]["by"] == f"run-time override #{made['id']} by e2e"
    assert inside["primary"]["until"] == "2026-01-05T12:00:00Z"
    assert inside["secondary"]["user"] == "bo"

    status, gone = await api.call("DELETE", f"/api/v1/schedules/payments/overrides/{made['id']}")
    assert (status, gone["deleted"]) == (200, [made["id"]])
    assert (await who(api, timedelta(hours=2)))["primary"]["user"] == "ana"
    status, listing = await api.call("GET", "/api/v1/schedules/payments/overrides")
    assert listing["overrides"] == []


async def test_a_swap_gives_each_the_others_shift_and_is_deleted_whole(api: Api) -> None:
    # ana is primary and bo secondary all week: in every layer, ana's hour goes to bo and
    # bo's later hour to ana.
    legs = await override(api, {"swap": [
        {"user": "ana", "start": iso(timedelta(hours=1)), "end": iso(timedelta(hours=2))},
        {"user": "bo", "start": iso(timedelta(hours=5)), "end": iso(timedelta(hours=6))},
    ]})
    assert [(leg["user"], leg["replaces"]) for leg in legs] == [("bo", "ana"), ("ana", "bo")]
    assert legs[0]["swap_with"] == legs[1]["id"]
    assert legs[1]["swap_with"] == legs[0]["id"]
    first = await who(api, timedelta(hours=1, minutes=30))
    assert (first["primary"]["user"], first["secondary"]["user"]) == ("bo", "bo")
    second = await who(api, timedelta(hours=5, minutes=30))
    assert (second["primary"]["user"], second["secondary"]["user"]) == ("ana", "ana")
    assert (await who(api, timedelta(hours=3)))["primary"]["user"] == "ana"
    status, gone = await api.call(
        "DELETE", f"/api/v1/schedules/payments/overrides/{legs[1]['id']}")
    assert (status, sorted(gone["deleted"])) == (200, sorted(leg["id"] for leg in legs))


async def test_a_leg_that_would_change_nothing_is_refused(api: Api) -> None:
    # cy is on call nowhere: a swap naming a shift of cy's is a mistake, said with its leg.
    status, answer = await api.call("POST", "/api/v1/schedules/payments/overrides", {
        "layer": "primary", "swap": [
            {"user": "ana", "start": iso(timedelta(hours=1)), "end": iso(timedelta(hours=2))},
            {"user": "cy", "start": iso(timedelta(hours=5)), "end": iso(timedelta(hours=6))}]})
    assert (status, answer["field"]) == (400, "swap[1]"), answer
    assert "'cy' is not on call in layer 'primary'" in answer["error"]
    status, answer = await api.call("POST", "/api/v1/schedules/payments/overrides", {
        "user": "cy", "replaces": "bo", "layer": "primary",
        "start": iso(timedelta(hours=1)), "end": iso(timedelta(hours=2))})
    assert (status, answer["field"]) == (400, "replaces"), answer
    _, listing = await api.call("GET", "/api/v1/schedules/payments/overrides")
    assert listing["overrides"] == []


async def test_escalation_pages_whoever_the_override_put_on_call(api: Api) -> None:
    await override(api, {"user": "cy", "start": iso(timedelta(0)),
                         "end": iso(timedelta(hours=1)), "replaces": "ana"})
    await api.fire()
    await api.settle()
    assert api.paged() == ["cy"]


async def test_overrides_survive_a_restart_and_a_reload(tmp_path: Path) -> None:
    first = await start_api(tmp_path)
    try:
        [made] = await override(first, {"user": "bo", "start": iso(timedelta(0)),
                                        "end": iso(timedelta(days=1)), "layer": "primary"})
    finally:
        await first.daemon.stop()
    again = await start_api(tmp_path)
    try:
        status, listing = await again.call("GET", "/api/v1/schedules/payments/overrides")
        assert [o["id"] for o in listing["overrides"]] == [made["id"]]
        # A reload brings new schedule objects: the run-time overrides are laid over them.
        # (another file than the running one: the same file again is not swapped in)
        path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9", step_delay="5m")
        path.write_text(path.read_text() + "# reloaded\n")
        before = again.daemon.config
        assert again.daemon.reload(path)
        assert again.daemon.config is not before
        assert (await who(again))["primary"]["user"] == "bo"
        await again.fire()
        await again.settle()
        assert again.paged() == ["bo"]
    finally:
        await again.daemon.stop()


async def test_run_time_wins_over_a_config_override_and_says_so(tmp_path: Path) -> None:
    path = write_config(tmp_path / "planned.yaml", "127.0.0.1:9", step_delay="5m")
    # The config's own override: cy on primary all day.
    path.write_text(path.read_text().replace(
        "teams:",
        "    overrides:\n      - {user: cy, layer: primary, start: 2026-01-05T00:00:00,"
        " end: 2026-01-06T00:00:00}\nteams:", 1))
    api = await start_api(tmp_path)
    try:
        assert api.daemon.reload(path)
        assert (await who(api))["primary"]["user"] == "cy"
        [made] = await override(api, {"user": "bo", "start": iso(timedelta(0)),
                                      "end": iso(timedelta(hours=2)), "layer": "primary"})
        assert [(c["source"], c["user"]) for c in made["overrules"]] == [("config", "cy")]
        answer = (await who(api))["primary"]
        assert answer["user"] == "bo"
        assert [c["user"] for c in answer["overrules"]] == ["cy"]
        assert (await who(api, timedelta(hours=3)))["primary"]["user"] == "cy"
    finally:
        await api.daemon.stop()


BAD = [
    ("unknown schedule", "nope", {"user": "cy", "start": "2026-01-05T10:00:00Z",
                                  "end": "2026-01-05T11:00:00Z"}, 404, "schedule"),
    ("end before start", "payments", {"user": "cy", "start": "2026-01-05T10:00:00Z",
                                      "end": "2026-01-05T09:00:00Z"}, 400, "end"),
    ("start not a time", "payments", {"user": "cy", "start": "tomorrow",
                                      "end": "2026-01-05T09:00:00Z"}, 400, "start"),
    ("end missing", "payments", {"user": "cy", "start": "2026-01-05T10:00:00Z"}, 400, "end"),
    ("unknown user", "payments", {"user": "zed", "start": "2026-01-05T10:00:00Z",
                                  "end": "2026-01-05T11:00:00Z"}, 400, "user"),
    ("unknown layer", "payments", {"user": "cy", "layer": "tertiary",
                                   "start": "2026-01-05T10:00:00Z",
                                   "end": "2026-01-05T11:00:00Z"}, 400, "layer"),
    ("swap end before start", "payments", {"swap": [
        {"user": "ana", "start": "2026-01-05T10:00:00Z", "end": "2026-01-05T11:00:00Z"},
        {"user": "bo", "start": "2026-01-05T10:00:00Z", "end": "2026-01-05T10:00:00Z"}]},
     400, "swap[1].end"),
    ("swap of one", "payments", {"swap": [
        {"user": "ana", "start": "2026-01-05T10:00:00Z", "end": "2026-01-05T11:00:00Z"}]},
     400, "swap"),
    ("past the year 9999", "payments", {"user": "cy", "start": "2026-01-05T10:00:00Z",
                                        "end": "9999-12-31T23:00:00-14:00"}, 400, "end"),
    ("not an object", "payments", ["cy"], 400, "body"),
    ("ended already", "payments", {"user": "cy", "start": "2026-01-05T07:00:00Z",
                                   "end": "2026-01-05T09:00:00Z"}, 400, "end"),
]


@pytest.mark.parametrize(("schedule", "body", "status", "field"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
async def test_bad_requests_name_the_field(
    api: Api, schedule: str, body: Any, status: int, field: str
) -> None:
    got, answer = await api.call("POST", f"/api/v1/schedules/{schedule}/overrides", body)
    assert (got, answer["field"]) == (status, field), answer
    _, listing = await api.call("GET", "/api/v1/schedules/payments/overrides")
    assert listing["overrides"] == []


async def test_unknown_override_and_schedule_are_404s(api: Api) -> None:
    status, answer = await api.call("DELETE", "/api/v1/schedules/payments/overrides/42")
    assert (status, answer["field"]) == (404, "id")
    status, answer = await api.call("GET", "/api/v1/schedules/nope/overrides")
    assert (status, answer["field"]) == (404, "schedule")
    status, answer = await api.call("GET", "/api/v1/schedules/nope.ics")
    assert (status, answer["field"]) == (404, "schedule")


async def test_changes_need_a_token(api: Api) -> None:
    status, answer = await api.call(
        "POST", "/api/v1/schedules/payments/overrides", {"user": "cy"}, token="wrong")
    assert (status, answer["field"]) == (401, "Authorization")


LEG = Leg("bo", T0, T0 + timedelta(hours=1), "primary", "ana")
SCOPES = [
    # (actor, scopes, change, the scope missing)
    ("ana", {Scope.RESPOND}, Change((LEG,)), None),  # gives her own shift away
    ("bo", {Scope.RESPOND}, Change((LEG,)), None),  # takes it
    ("cy", {Scope.RESPOND}, Change((LEG,)), Scope.ADMIN),  # somebody else's shifts
    ("cy", {Scope.ADMIN}, Change((LEG,)), None),
    ("ana", {Scope.READ}, Change((LEG,)), Scope.RESPOND),
    ("ana", set(), Change((LEG,)), Scope.RESPOND),
]


@pytest.mark.parametrize(("name", "scopes", "change", "missing"), SCOPES)
def test_people_change_their_own_shifts_and_admins_any(
    name: str, scopes: set[Scope], change: Change, missing: Scope | None
) -> None:
    assert refusal(Actor(name, frozenset(scopes)), change) is missing


async def test_the_calendar_holds_the_shifts_with_the_overrides(api: Api) -> None:
    await override(api, {"user": "cy", "start": iso(timedelta(days=1)),
                         "end": iso(timedelta(days=1, hours=8)), "layer": "primary"})
    status, text = await api.call("GET", "/api/v1/schedules/payments.ics?weeks=1")
    assert status == 200
    calendar = icalendar.Calendar.from_ical(text)
    events = [(str(e["summary"]), e.decoded("dtstart"), e.decoded("dtend"))
              for e in calendar.walk("VEVENT")]
    day = T0 + timedelta(days=1)
    assert ("On call: cy (payments primary)", day, day + timedelta(hours=8)) in events
    primary = sorted((s, e) for summary, s, e in events if "ana" in summary)
    # ana's week is cut by cy's eight hours: before and after them, to the week's end.
    assert primary == [(T0, day), (day + timedelta(hours=8), T0 + timedelta(weeks=1))]
    status, text = await api.call("GET", "/api/v1/users/cy.ics?weeks=1")
    [event] = icalendar.Calendar.from_ical(text).walk("VEVENT")
    assert "run-time override" in str(event["description"])
    status, answer = await api.call("GET", "/api/v1/users/zed.ics")
    assert (status, answer["field"]) == (404, "user")
    status, answer = await api.call("GET", "/api/v1/schedules/payments.ics?weeks=99")
    assert (status, answer["field"]) == (400, "weeks")


async def test_ended_overrides_leave_the_roster_and_the_listing(api: Api) -> None:
    [made] = await override(api, {"user": "cy", "start": iso(timedelta(0)),
                                  "end": iso(timedelta(hours=1))})
    await api.clock.jump(timedelta(hours=2))
    await override(api, {"user": "bo", "start": iso(timedelta(hours=3)),
                         "end": iso(timedelta(hours=4))})
    assert made["id"] not in {o.id for o in api.daemon.responder.roster.of("payments")}
    _, listing = await api.call("GET", "/api/v1/schedules/payments/overrides")
    assert [o["user"] for o in listing["overrides"]] == ["bo"]


def test_a_calendar_holds_at_most_max_events() -> None:
    rotation = Rotation(("ana", "bo"), 1, ShiftUnit.HOURS, datetime(2026, 1, 1))
    schedule = Schedule("s", ZoneInfo("Europe/Amsterdam"), (Layer("primary", (rotation,)),))
    text = calendar("s", [schedule], T0, T0 + timedelta(weeks=52), T0)
    events = icalendar.Calendar.from_ical(text).walk("VEVENT")
    assert len(events) == MAX_EVENTS
    assert events[-1].decoded("dtend") == T0 + timedelta(hours=MAX_EVENTS)


SCOPED = [
    # (token, body, status, scope named): ana responds, bo only reads, cy administers.
    ("ana", {"user": "cy", "replaces": "ana"}, 201, None),  # gives her own shift away
    ("ana", {"user": "ana", "layer": "secondary"}, 201, None),  # takes one
    ("ana", {"user": "cy", "replaces": "bo"}, 403, "admin"),  # somebody else's
    ("bo", {"user": "bo"}, 403, "respond"),  # read only, even for his own
    ("cy", {"user": "bo", "replaces": "ana"}, 201, None),  # an admin changes anyone's
]


@pytest.mark.parametrize(("who", "body", "status", "scope"), SCOPED)
async def test_people_change_their_own_shifts_through_the_api(
    api: Api, who: str, body: dict[str, str], status: int, scope: str | None
) -> None:
    token = {"ana": ANA_TOKEN, "bo": BO_TOKEN, "cy": CY_TOKEN}[who]
    got, answer = await api.call("POST", "/api/v1/schedules/payments/overrides", {
        **body, "start": iso(timedelta(hours=1)), "end": iso(timedelta(hours=2))}, token=token)
    assert got == status, answer
    if scope is None:
        assert answer["overrides"][0]["created_by"] == who
    else:
        assert (answer["field"], answer["scope"]) == ("Authorization", scope)
        assert scope in answer["error"]
        _, listing = await api.call("GET", "/api/v1/schedules/payments/overrides")
        assert listing["overrides"] == []


async def test_only_a_party_or_an_admin_deletes_an_override(api: Api) -> None:
    [made] = await override(api, {"user": "cy", "replaces": "bo", "start": iso(timedelta(0)),
                                  "end": iso(timedelta(hours=1))})
    path = f"/api/v1/schedules/payments/overrides/{made['id']}"
    status, answer = await api.call("DELETE", path, token=ANA_TOKEN)
    assert (status, answer["scope"]) == (403, "admin")
    status, answer = await api.call("DELETE", path, token=CY_TOKEN)  # a party, and an admin
    assert (status, answer["deleted"]) == (200, [made["id"]])


@pytest.fixture
async def late_start(tmp_path: Path) -> AsyncIterator[Api]:
    """The harness's daemon, but the primary rotation starts a day after the fake clock's
    start (2026-01-06 09:00 in Amsterdam): nobody is primary until then."""
    path = write_config(tmp_path / "ackd.yaml", "127.0.0.1:9", step_delay="5m")
    path.write_text(path.read_text().replace(
        "users: [ana], shift: 1w, start: 2020-01-06T09:00:00",
        "users: [ana], shift: 1w, start: 2026-01-06T09:00:00"))
    loaded = replace(config_module.load(path), listen_port=0, data_dir=tmp_path / "data")
    clock, notifier = FakeClock(), RecordingNotifier()
    daemon = Daemon(loaded, clock=clock, notifier=notifier)
    await daemon.start()
    yield Api(daemon, notifier, clock)
    await daemon.stop()


async def test_gap_warnings_see_the_run_time_overrides(late_start: Api) -> None:
    api = late_start
    hole = [{"layer": "primary", "from": "2026-01-05T09:00:00Z",
             "until": "2026-01-06T08:00:00Z"}]
    status, answer = await api.call("GET", "/api/v1/schedules/payments/gaps")
    assert (status, answer["gaps"]) == (200, hole)
    # An override that covers the hole clears the warning...
    status, made = await api.call("POST", "/api/v1/schedules/payments/overrides", {
        "user": "cy", "start": iso(timedelta(0)), "end": iso(timedelta(hours=23)),
        "layer": "primary"})
    assert (status, made["gaps"]) == (201, [])
    assert (await api.call("GET", "/api/v1/schedules/payments/gaps"))[1]["gaps"] == []
    # ...and taking away the only person on call there (deleting it) raises it again.
    status, gone = await api.call(
        "DELETE", f"/api/v1/schedules/payments/overrides/{made['overrides'][0]['id']}")
    assert (status, gone["gaps"]) == (200, hole)
    # ackd override says so too.
    flags = ("--url", api.url, "--token", CY_TOKEN)
    code, out = await run_cli("override", "add", "payments", "bo", "--layer", "primary",
                              "--from", iso(timedelta(hours=1)), "--to",
                              iso(timedelta(hours=2)), *flags)
    assert code == 0, out
    assert ("warning: nobody is on call in layer 'primary' of schedule 'payments' from "
            "2026-01-05T09:00:00Z to 2026-01-05T10:00:00Z") in out
    status, answer = await api.call("GET", "/api/v1/schedules/payments/gaps?weeks=0")
    assert (status, answer["field"]) == (400, "weeks")


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59Z", "9999-12-31T23:00:00-14:00"])
async def test_a_time_at_the_end_of_the_calendar_is_refused_naming_at(api: Api, at: str) -> None:
    status, answer = await api.call(
        "GET", f"/api/v1/schedules/payments/oncall?at={at.replace('+', '%2B')}")
    assert (status, answer["field"]) == (400, "at"), answer


async def test_an_override_to_the_year_9999_still_answers_or_names_at(api: Api) -> None:
    await override(api, {"user": "cy", "start": iso(timedelta(hours=1)),
                         "end": "9999-12-31T12:00:00Z", "layer": "primary"})
    assert (await who(api, timedelta(hours=2)))["primary"]["user"] == "cy"
    status, answer = await api.call(
        "GET", "/api/v1/schedules/payments/oncall?at=9999-12-31T10:00:00Z")
    assert (status, answer["field"]) == (400, "at"), answer
