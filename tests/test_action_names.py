"""The responder's action names have one definition, core/model.Action. The API's route and its
OpenAPI document, the signed links, the web page's forms and the CLI's commands each offer a
part of it and no name outside it; a link sent out before keeps what it does; and the words
each shows for an action are the ones it always showed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from receiver.cli import main
from receiver.core.model import Action
from receiver.notify.links import ACTIONS, OPEN, LinkAction, LinkClaim, Links
from receiver.web.openapi import DOCUMENT
from receiver.web.ui.pages import PAGE_ACTIONS, WEB_ACTIONS
from tests.harness import ROOT
from tests.test_api import Api, start_api

TEMPLATES = ROOT / "receiver" / "web" / "ui" / "templates"


@pytest.mark.parametrize(
    ("action", "verb", "done"),
    [
        (Action.ACK, "acknowledge", "acknowledged"),
        (Action.RESOLVE, "resolve", "resolved"),
        (Action.SNOOZE, "snooze", "snoozed"),
        (Action.UNACK, "un-acknowledge", "unacknowledged"),
    ],
)
def test_each_action_has_its_words(action: Action, verb: str, done: str) -> None:
    assert (action.verb, action.done) == (verb, done)


def test_every_action_has_words() -> None:
    # An action added to the enum without its words would fail wherever it is shown.
    for action in Action:
        assert action.verb, action
        assert action.done, action


def test_a_link_does_an_action_of_the_definition_or_opens_the_page() -> None:
    assert all(isinstance(action, Action) or action == OPEN for action in ACTIONS), ACTIONS
    assert OPEN not in set(Action), "a link's `open` would shadow an action of that name"
    assert len(set(ACTIONS)) == len(ACTIONS)


# Tokens made by ackd before the link actions were taken from core/model.Action (the same
# secret and times): pages already delivered carry such tokens, and each must still do what
# it did. Each action is written in a token as its position in links.ACTIONS.
SECRET = b"0123456789abcdef0123456789abcdef"
ISSUED = datetime(2024, 3, 10, 3, 17, 42, tzinfo=UTC)
SENT_OUT = [
    ("AQBl7nfWAAAAAAAAACphbmE1RIufk3wH_mKolgZy0oBa", Action.ACK),
    ("AQFl7nfWAAAAAAAAACphbmGuAxLBANKQf6GzWTsMsI2C", Action.RESOLVE),
    ("AQJl7nfWAAAAAAAAACphbmEltMpSjNCu7od8uW45YYuI", OPEN),
]


@pytest.mark.parametrize(("token", "action"), SENT_OUT, ids=[a for _, a in SENT_OUT])
def test_a_link_sent_out_before_does_what_it_did(token: str, action: LinkAction) -> None:
    links = Links(SECRET, "https://ackd.example.com", timedelta(hours=24))

    claim = links.verify(token, ISSUED + timedelta(hours=1))

    assert claim == LinkClaim(42, action, "ana", ISSUED + timedelta(hours=24))
    assert type(claim.action) is type(action)
    assert links.token(42, action, "ana", ISSUED) == token


def test_the_page_offers_only_actions_of_the_definition() -> None:
    assert all(isinstance(action, Action) for action in PAGE_ACTIONS), PAGE_ACTIONS
    # The names the page's forms take that are actions are exactly the ones it sends to the
    # responder: a desk form named after an action would take it past the responder.
    assert [n for n in WEB_ACTIONS if n in set(Action)] == [a.value for a in PAGE_ACTIONS]
    assert len(set(WEB_ACTIONS)) == len(WEB_ACTIONS)


def test_every_form_of_the_page_posts_an_action_it_takes() -> None:
    posted = {
        match.group(1)
        for template in TEMPLATES.glob("*.html")
        for match in re.finditer(r'action="/incidents/\{\{[^}]*\}\}/([^"]+)"',
                                 template.read_text(encoding="utf-8"))
    }
    assert posted == set(WEB_ACTIONS)


def test_the_cli_has_a_command_for_every_action() -> None:
    assert set(main.ACTIONS) == set(Action)
    for action in Action:
        extra = ["--for", "30m"] if action is Action.SNOOZE else []
        args = main._parser().parse_args([action.value, "12", *extra])
        assert (args.command, main.COMMANDS[args.command]) == (action.value, "remote:act")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


def _documented_actions() -> list[str]:
    operation = DOCUMENT["paths"]["/api/v1/incidents/{id}/{action}"]["post"]
    [parameter] = [p for p in operation["parameters"] if p["name"] == "action"]
    enum: list[str] = parameter["schema"]["enum"]
    return enum


async def test_the_openapi_enum_is_what_the_api_serves(api: Api) -> None:
    assert _documented_actions() == [action.value for action in Action]
    status, body = await api.call("POST", "/api/v1/incidents/1/shrug")
    assert (status, body["field"]) == (404, "action")
    served = body["error"].split("; one of ")[1].split(", ")
    assert served == _documented_actions()
    for name in _documented_actions():
        # A name the API knows gets past the action's check to the incident, which is none.
        fields = {"for": "30m"} if name == Action.SNOOZE else None
        status, body = await api.call("POST", f"/api/v1/incidents/999/{name}", fields)
        assert (status, body["field"]) == (404, "id"), name


async def _page(method: str, url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return response.status, await response.text()


@pytest.mark.parametrize(("action", "verb", "done"), [
    (Action.ACK, "Acknowledge", "acknowledged"),
    (Action.RESOLVE, "Resolve", "resolved"),
])
async def test_a_links_pages_name_its_action(
    api: Api, action: Action, verb: str, done: str
) -> None:
    number = await api.fire()
    links = api.daemon.services.links
    assert links is not None
    url = f"{api.url}/l/{links.token(number, action, 'ana', api.clock.now())}"

    status, asked = await _page("GET", url)
    assert status == 200
    assert f"<title>{verb} incident #{number}?</title>" in asked
    assert f'font-size:1.5em">{verb} incident #{number}</button>' in asked

    status, answered = await _page("POST", url)
    assert status == 200
    assert f"<h1>Incident #{number} {done}</h1><p>Thank you, ana.</p>" in answered
