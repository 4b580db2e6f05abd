"""Signed-link pages: the token in the path is a credential, so no answer under /l/ may be
cached or leak the URL through a Referer header, whatever the outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.test_api import Api, start_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


async def _headers(api: Api, method: str, path: str) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.request(
        method, api.url + path
    ) as response:
        await response.read()
        return response.status, dict(response.headers)


async def test_every_link_answer_is_private(api: Api) -> None:
    number = await api.fire()
    links = api.daemon.services.links
    assert links is not None
    now = api.clock.now()
    valid = links.token(number, "ack", "ana", now)
    for_nothing = links.token(number + 99, "ack", "ana", now)
    answers = [
        ("GET", f"/l/{valid}", 200),  # the confirmation page
        ("POST", f"/l/{valid}", 200),  # acknowledged
        ("POST", f"/l/{valid}", 409),  # nothing changed
        ("GET", f"/l/{for_nothing}", 404),
        ("GET", "/l/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 403),
        ("POST", "/l/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 403),
        # Paths no link route matches: the router's own answers carry the token too.
        ("GET", f"/l/{valid}/x", 404),
        ("GET", "/l", 404),
        ("GET", "/l/", 404),
        ("DELETE", "/l", 404),
        ("GET", f"/l%2F{valid}", 404),  # an encoded slash: still under /l/ to request.path
        ("HEAD", f"/l/{valid}", 200),
        ("PUT", f"/l/{valid}", 405),
        ("DELETE", f"/l/{valid}", 405),
    ]
    for method, path, expected in answers:
        status, headers = await _headers(api, method, path)
        assert status == expected, (method, path)
        assert headers.get("Cache-Control") == "no-store", (method, path)
        assert headers.get("Referrer-Policy") == "no-referrer", (method, path)
        if expected == 405:
            assert headers.get("Allow") == "GET,HEAD,POST", (method, path)


async def test_answers_outside_the_links_are_left_alone(api: Api) -> None:
    for method, path, expected in [("GET", "/lx", 404), ("GET", "/-/healthy", 200),
                                   ("PUT", "/-/healthy", 405)]:
        status, headers = await _headers(api, method, path)
        assert status == expected, (method, path)
        assert "Referrer-Policy" not in headers, (method, path)
