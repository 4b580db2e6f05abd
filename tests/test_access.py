"""People and access: each user's own token acts as that user within its scope; a script's
named token keeps doing everything unless given a narrower scope; a wrong scope is a 403 that
names the scope needed, and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from receiver.app.daemon import Daemon
from receiver.core.access import Principal, PrincipalKind, Scope
from tests.harness import ANA_TOKEN, API_TOKEN, BO_TOKEN, CY_TOKEN
from tests.test_api import Api, _daemon, start_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


GRANTS = [
    (Scope.READ, Scope.READ, True),
    (Scope.READ, Scope.RESPOND, False),
    (Scope.READ, Scope.ADMIN, False),
    (Scope.RESPOND, Scope.READ, True),
    (Scope.RESPOND, Scope.RESPOND, True),
    (Scope.RESPOND, Scope.ADMIN, False),
    (Scope.ADMIN, Scope.READ, True),
    (Scope.ADMIN, Scope.RESPOND, True),
    (Scope.ADMIN, Scope.ADMIN, True),
]


@pytest.mark.parametrize(("held", "needed", "granted"), GRANTS)
def test_each_scope_grants_those_below_it(held: Scope, needed: Scope, granted: bool) -> None:
    assert held.grants(needed) is granted


async def test_a_read_token_acknowledging_is_403_naming_the_scope(api: Api) -> None:
    number = await api.fire()
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack", token=BO_TOKEN)
    assert status == 403
    assert (body["field"], body["scope"]) == ("Authorization", "respond")
    assert "'respond'" in body["error"]
    assert "user 'bo'" in body["error"]
    status, incident = await api.call("GET", f"/api/v1/incidents/{number}", token=BO_TOKEN)
    assert (status, incident["state"]) == (200, "triggered")  # reads are in scope; no change


async def test_a_users_token_acts_as_that_user_on_the_timeline(api: Api) -> None:
    number = await api.fire()
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    assert (status, body["acknowledged_by"]) == (200, "ana")
    _, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    acked = [e for e in incident["timeline"] if e["kind"] == "acknowledged"]
    assert [e["actor"] for e in acked] == ["ana"]


async def test_reload_needs_admin(api: Api) -> None:
    status, body = await api.call("POST", "/-/reload", token=ANA_TOKEN)
    assert (status, body["scope"]) == (403, "admin")
    # cy (admin) and the script token (admin by default) pass the check; this in-process
    # daemon was started without a file, which is the 422 after it.
    for token in (CY_TOKEN, API_TOKEN):
        status, body = await api.call("POST", "/-/reload", token=token)
        assert status == 422, body


async def test_a_wrong_token_is_401_even_for_reads(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/incidents", token="nope")
    assert (status, body["field"]) == (401, "Authorization")


async def test_with_no_token_configured_reads_are_open_and_acting_is_not(tmp_path: Path) -> None:
    daemon, notifier, clock = _daemon(tmp_path)
    daemon = Daemon(replace(daemon.config, api_tokens={}), clock=clock, notifier=notifier)
    await daemon.start()
    try:
        api = Api(daemon, notifier, clock)
        number = await api.fire()
        status, _ = await api.call("GET", f"/api/v1/incidents/{number}", token=None)
        assert status == 200
        status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack", token=None)
        assert (status, body["field"]) == (401, "Authorization")
    finally:
        await daemon.stop()


def test_config_tokens_name_who_they_act_as() -> None:
    from receiver.config import build as config

    loaded = config.load(Path("config.example.yaml"), environ={})
    principals = set(loaded.api_tokens.values())
    assert Principal("ops-cli", Scope.ADMIN, PrincipalKind.TOKEN) in principals
    assert all(p.kind is PrincipalKind.TOKEN for p in principals)  # ana's token is commented


def test_a_users_token_and_scope_come_from_the_config(tmp_path: Path) -> None:
    daemon, _, _ = _daemon(tmp_path)
    principals = set(daemon.config.api_tokens.values())
    assert {p for p in principals if p.is_user} == {
        Principal("ana", Scope.RESPOND, PrincipalKind.USER),
        Principal("bo", Scope.READ, PrincipalKind.USER),
        Principal("cy", Scope.ADMIN, PrincipalKind.USER),
    }


async def test_on_call_changes_follow_the_users_own_scope(api: Api) -> None:
    """A person with `respond` changes their own shifts, not others'; `read` changes none."""
    path = "/api/v1/schedules/payments/overrides"
    start = api.clock.now().isoformat()
    end = (api.clock.now() + timedelta(hours=2)).isoformat()
    mine = {"user": "ana", "start": start, "end": end, "layer": "secondary"}
    status, answer = await api.call("POST", path, mine, token=ANA_TOKEN)
    assert status == 201, answer
    theirs = {"user": "cy", "start": start, "end": end, "layer": "secondary"}
    status, answer = await api.call("POST", path, theirs, token=ANA_TOKEN)
    assert (status, answer["scope"]) == (403, "admin")
    status, answer = await api.call("POST", path, mine, token=BO_TOKEN)
    assert (status, answer["scope"]) == (403, "respond")
    status, answer = await api.call("GET", path, token=BO_TOKEN)
    assert status == 200
    assert [o["user"] for o in answer["overrides"]] == ["ana"]
    status, answer = await api.call("POST", path, theirs, token=CY_TOKEN)
    assert status == 201, answer
