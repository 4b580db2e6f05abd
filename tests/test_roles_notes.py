"""Incident roles and notes through the API and the CLI: assigning and handing over each role,
notes and status updates, every change on the timeline as the person who made it, and every
error a named 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.core.errors import InvalidTransition, PayloadError
from receiver.core.model import Incident, IncidentState
from receiver.escalation.policy import Policy, Step, Target, TargetKind
from receiver.incidents import roles
from receiver.incidents.roles import Role, RoleHolder
from tests.harness import ANA_TOKEN, API_TOKEN, BO_TOKEN, CY_TOKEN
from tests.test_api import Api, run_cli, start_api

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


def _incident(state: IncidentState = IncidentState.TRIGGERED, by: str | None = None) -> Incident:
    return Incident(7, "g", "r", "payments", "SEV1", "standard", {}, state, NOW, NOW,
                    acknowledged_by=by, resolved_by="ana" if state is IncidentState.RESOLVED
                    else None)


def _held(**users: str) -> dict[Role, RoleHolder]:
    return {Role(role): RoleHolder(Role(role), user, NOW, "x") for role, user in users.items()}


# -- the pure rules -----------------------------------------------------------------------

SPEAKS = [
    ({}, "ana", False),
    ({"commander": "ana"}, "ana", True),  # the commander speaks while nobody communicates
    ({"commander": "ana"}, "bo", False),
    ({"commander": "ana", "comms_lead": "bo"}, "ana", False),
    ({"commander": "ana", "comms_lead": "bo"}, "bo", True),
    ({"scribe": "ana"}, "ana", False),
]


@pytest.mark.parametrize(("held", "author", "speaks"), SPEAKS)
def test_who_speaks_for_an_incident(held: dict[str, str], author: str, speaks: bool) -> None:
    assert roles.speaks_for(_held(**held), author) is speaks


def test_the_commander_is_reminded_else_whoever_acknowledged() -> None:
    acknowledged = _incident(IncidentState.ACKNOWLEDGED, by="bo")
    assert roles.accountable(acknowledged, _held(commander="ana")) == "ana"
    assert roles.accountable(acknowledged, _held(scribe="cy")) == "bo"
    assert roles.accountable(_incident(), {}) is None


def test_whoever_un_acknowledged_is_not_reminded() -> None:
    """Triggered again after an unack, the incident keeps who acknowledged it last; they
    said "not me": nobody holds it, and only a commander is reminded."""
    handed_back = _incident(IncidentState.TRIGGERED, by="bo")
    assert roles.accountable(handed_back, {}) is None
    assert roles.accountable(handed_back, _held(commander="ana")) == "ana"


def test_a_hand_over_names_both_and_the_same_holder_changes_nothing() -> None:
    held = _held(commander="ana")
    change = roles.assign(_incident(), held, Role.COMMANDER, "bo", "cy", {"ana", "bo"}, NOW)
    assert change.event is not None
    assert dict(change.event.detail) == {"role": "commander", "user": "bo", "previous": "ana"}
    assert change.event.actor == "cy"
    again = roles.assign(_incident(), held, Role.COMMANDER, "ana", "cy", {"ana"}, NOW)
    assert again.event is None
    with pytest.raises(PayloadError) as caught:
        roles.assign(_incident(), held, Role.SCRIBE, "zed", "cy", {"ana"}, NOW)
    assert caught.value.field == "user"
    with pytest.raises(InvalidTransition):
        roles.assign(_incident(IncidentState.RESOLVED), {}, Role.SCRIBE, "ana", "cy", {"ana"},
                     NOW)


# -- the API ------------------------------------------------------------------------------


async def _roles(api: Api, number: int) -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert status == 200, body
    found: dict[str, Any] = body["roles"]
    return found


async def _events(api: Api, number: int, *kinds: str) -> list[tuple[str, str, dict[str, Any]]]:
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    return [(e["kind"], e["actor"], e["detail"]) for e in body["timeline"] if e["kind"] in kinds]


async def test_roles_are_assigned_handed_over_and_cleared_on_the_timeline(api: Api) -> None:
    number = await api.fire()
    path = f"/api/v1/incidents/{number}/roles"
    status, body = await api.call("PUT", f"{path}/commander", {"user": "ana"}, token=ANA_TOKEN)
    assert status == 200, body
    assert body["roles"]["commander"]["user"] == "ana"
    assert body["roles"]["commander"]["by"] == "ana"
    status, body = await api.call("PUT", f"{path}/commander", {"user": "cy"}, token=ANA_TOKEN)
    assert (status, body["roles"]["commander"]["user"]) == (200, "cy")
    for role in ("tech_lead", "comms_lead", "scribe"):
        status, body = await api.call("PUT", f"{path}/{role}", {"user": "bo"}, token=CY_TOKEN)
        assert status == 200, body
    assert {r: h["user"] for r, h in (await _roles(api, number)).items()} == {
        "commander": "cy", "tech_lead": "bo", "comms_lead": "bo", "scribe": "bo"}
    status, body = await api.call("DELETE", f"{path}/scribe", token=CY_TOKEN)
    assert (status, "scribe" in body["roles"]) == (200, False)
    status, body = await api.call("DELETE", f"{path}/scribe", token=CY_TOKEN)
    assert status == 200  # clearing a role nobody holds changes nothing
    events = await _events(api, number, "role_assigned", "role_cleared")
    assert events == [
        ("role_assigned", "ana", {"role": "commander", "user": "ana", "previous": None}),
        ("role_assigned", "ana", {"role": "commander", "user": "cy", "previous": "ana"}),
        ("role_assigned", "cy", {"role": "tech_lead", "user": "bo", "previous": None}),
        ("role_assigned", "cy", {"role": "comms_lead", "user": "bo", "previous": None}),
        ("role_assigned", "cy", {"role": "scribe", "user": "bo", "previous": None}),
        ("role_cleared", "cy", {"role": "scribe", "previous": "bo"}),
    ]


async def test_notes_from_whoever_speaks_for_the_incident_are_status_updates(api: Api) -> None:
    number = await api.fire()
    notes = f"/api/v1/incidents/{number}/notes"
    status, body = await api.call("POST", notes, {"text": "looking at the DB"}, token=ANA_TOKEN)
    assert (status, body["kind"], body["actor"]) == (201, "note", "ana")
    await api.call("PUT", f"/api/v1/incidents/{number}/roles/commander", {"user": "ana"})
    status, body = await api.call("POST", notes, {"text": "failing over"}, token=ANA_TOKEN)
    assert (status, body["kind"]) == (201, "status_update")
    await api.call("PUT", f"/api/v1/incidents/{number}/roles/comms_lead", {"user": "cy"})
    _, body = await api.call("POST", notes, {"text": "the commander's aside"}, token=ANA_TOKEN)
    assert body["kind"] == "note"
    _, body = await api.call("POST", notes, {"text": "  customers told  "}, token=CY_TOKEN)
    assert (body["kind"], body["detail"]) == ("status_update", {"text": "customers told"})
    await api.call("POST", f"/api/v1/incidents/{number}/resolve")
    _, body = await api.call("POST", notes, {"text": "for the review"}, token=CY_TOKEN)
    assert body["kind"] == "note"  # after resolution, notes are for the review
    assert [(k, a, d["text"]) for k, a, d in await _events(api, number, "note",
                                                           "status_update")] == [
        ("note", "ana", "looking at the DB"), ("status_update", "ana", "failing over"),
        ("note", "ana", "the commander's aside"), ("status_update", "cy", "customers told"),
        ("note", "cy", "for the review"),
    ]


REACK = timedelta(minutes=10)
# A person's actions on an acknowledged incident, each 9 minutes after the one before: every
# one pushes the reack (10 minutes) as a new alert does.
WORK = [
    ("POST", "notes", {"text": "looking at the DB"}),
    ("PUT", "roles/commander", {"user": "ana"}),
    ("POST", "notes", {"text": "failing over"}),  # the commander's: a status update
    ("DELETE", "roles/commander", None),
    ("POST", "responders", {"user": "cy"}),
    ("PUT", "severity", {"severity": "SEV2"}),  # lowered: escalation does not start over
    ("POST", "notes", {"text": "still on it"}),
]


async def test_people_working_an_acknowledged_incident_keep_it_from_re_escalating(
    api: Api,
) -> None:
    """Acknowledged, then worked on every 9 minutes (notes, a status update, roles, a
    responder, a lowered severity): not re-escalated though reack_after (10m) passed seven
    times over; left alone, it re-escalates once, 10 minutes after the last action."""
    steps = (Step(timedelta(0), (Target(TargetKind.USER, "ana"),)),
             Step(timedelta(minutes=5), (Target(TargetKind.USER, "bo"),)))
    policy = Policy("standard", steps, reack_after=REACK)
    api.daemon.coordinator.swap(
        replace(api.daemon.config, policies={"standard": policy}, team_policies={}))
    number = await api.fire()
    await api.settle()
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    assert status == 200, body
    for method, path, payload in WORK:
        await api.clock.jump(REACK - timedelta(minutes=1))
        await api.settle()
        status, body = await api.call(method, f"/api/v1/incidents/{number}/{path}", payload,
                                      token=ANA_TOKEN)
        assert status in (200, 201), (path, body)
        assert await _events(api, number, "re_escalated") == []
    last = api.clock.now()
    await api.clock.jump(REACK - timedelta(seconds=1))
    await api.settle()
    assert await _events(api, number, "re_escalated") == []
    await api.clock.jump(timedelta(seconds=1))
    await api.settle()
    await api.clock.jump(timedelta(hours=1))  # the re-escalation's steps run out
    await api.settle()
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    again = [e for e in body["timeline"] if e["kind"] == "re_escalated"]
    assert [datetime.fromisoformat(e["at"]) for e in again] == [last + REACK]
    assert body["state"] == "triggered"


ERRORS = [
    ("unknown incident", "PUT", "/api/v1/incidents/999/roles/commander", {"user": "ana"},
     API_TOKEN, 404, "id"),
    ("id not a number", "PUT", "/api/v1/incidents/x/roles/commander", {"user": "ana"},
     API_TOKEN, 400, "id"),
    ("unknown role", "PUT", "/api/v1/incidents/{id}/roles/captain", {"user": "ana"},
     API_TOKEN, 404, "role"),
    ("unknown role to clear", "DELETE", "/api/v1/incidents/{id}/roles/captain", None,
     API_TOKEN, 404, "role"),
    ("read token assigning", "PUT", "/api/v1/incidents/{id}/roles/commander",
     {"user": "ana"}, BO_TOKEN, 403, "Authorization"),
    ("read token clearing", "DELETE", "/api/v1/incidents/{id}/roles/commander", None,
     BO_TOKEN, 403, "Authorization"),
    ("no token", "PUT", "/api/v1/incidents/{id}/roles/commander", {"user": "ana"}, None, 401,
     "Authorization"),
    ("unknown user", "PUT", "/api/v1/incidents/{id}/roles/commander", {"user": "zed"},
     API_TOKEN, 400, "user"),
    ("user missing", "PUT", "/api/v1/incidents/{id}/roles/commander", {}, API_TOKEN, 400,
     "user"),
    ("user not a string", "PUT", "/api/v1/incidents/{id}/roles/commander", {"user": 7},
     API_TOKEN, 400, "user"),
    ("unknown field", "PUT", "/api/v1/incidents/{id}/roles/commander",
     {"user": "ana", "why": "x"}, API_TOKEN, 400, "why"),
    ("body a list", "PUT", "/api/v1/incidents/{id}/roles/commander", ["ana"], API_TOKEN, 400,
     "body"),
    ("body not JSON", "PUT", "/api/v1/incidents/{id}/roles/commander", b"{user", API_TOKEN,
     400, "body"),
    ("body not UTF-8", "POST", "/api/v1/incidents/{id}/notes", b"\xff\xfe", API_TOKEN, 400,
     "body"),
    ("note on an unknown incident", "POST", "/api/v1/incidents/999/notes", {"text": "x"},
     API_TOKEN, 404, "id"),
    ("note by a read token", "POST", "/api/v1/incidents/{id}/notes", {"text": "x"}, BO_TOKEN,
     403, "Authorization"),
    ("note without text", "POST", "/api/v1/incidents/{id}/notes", {}, API_TOKEN, 400, "text"),
    ("note of blanks", "POST", "/api/v1/incidents/{id}/notes", {"text": "  "}, API_TOKEN, 400,
     "text"),
    ("note text a number", "POST", "/api/v1/incidents/{id}/notes", {"text": 5}, API_TOKEN, 400,
     "text"),
    ("note too long", "POST", "/api/v1/incidents/{id}/notes", {"text": "x" * 4001}, API_TOKEN,
     400, "text"),
    ("note with a lone surrogate", "POST", "/api/v1/incidents/{id}/notes",
     b'{"text": "\\ud800"}', API_TOKEN, 400, "text"),
    ("note with an unknown field", "POST", "/api/v1/incidents/{id}/notes",
     {"text": "x", "status": True}, API_TOKEN, 400, "status"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "token", "status", "field"), [c[1:] for c in ERRORS],
    ids=[c[0] for c in ERRORS],
)
async def test_errors_name_the_field(
    api: Api, method: str, path: str, body: Any, token: str | None, status: int, field: str
) -> None:
    number = await api.fire()
    raw = body if isinstance(body, bytes) else None
    got, answer = await api.call(method, path.format(id=number), None if raw else body,
                                 token=token, raw=raw)
    assert (got, answer["field"]) == (status, field), answer
    if status == 403:
        assert answer["scope"] == "respond"
    assert await _roles(api, number) == {}
    assert await _events(api, number, "note", "status_update", "role_assigned") == []


async def test_a_resolved_incidents_roles_cannot_change(api: Api) -> None:
    number = await api.fire()
    await api.call("POST", f"/api/v1/incidents/{number}/resolve")
    status, body = await api.call("PUT", f"/api/v1/incidents/{number}/roles/commander",
                                  {"user": "ana"})
    assert (status, body["field"]) == (409, "state")
    assert body["error"] == (f"incident {number} is resolved (by e2e); its roles can no "
                             "longer change")


async def test_resolving_a_resolved_incident_is_a_clear_409(api: Api) -> None:
    number = await api.fire()
    await api.call("POST", f"/api/v1/incidents/{number}/resolve", token=ANA_TOKEN)
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/resolve")
    assert (status, body["field"]) == (409, "state")
    assert f"incident #{number} is already resolved (by ana)" in body["error"]


async def test_the_cli_assigns_roles_and_posts_notes(api: Api) -> None:
    number = await api.fire()
    flags = ("--url", api.url, "--token", ANA_TOKEN)
    code, out = await run_cli("role", str(number), "commander", "ana", *flags)
    assert (code, out.strip()) == (0, f"#{number} commander: ana")
    code, out = await run_cli("note", str(number), "rolled back the deploy", *flags)
    assert (code, out.strip()) == (0, f"#{number} status update by ana")
    code, out = await run_cli("role", str(number), "commander", "--clear", *flags)
    assert (code, out.strip()) == (0, f"#{number} commander: nobody")
    code, out = await run_cli("role", str(number), "scribe", "zed", *flags)
    assert code == 1
    assert "HTTP 400: user: unknown user 'zed'" in out
    code, out = await run_cli("note", str(number), "x", "--url", api.url, "--token", BO_TOKEN)
    assert code == 1
    assert "HTTP 403: respond:" in out
