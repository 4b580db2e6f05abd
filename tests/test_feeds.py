"""Calendar feeds at signed addresses: a calendar app subscribes with a plain GET and no
header, a revoked or forged address is a 403 or 404 with a JSON body. The signing, the API
in-process on the fake clock, and a real ackd process asked the way Google Calendar asks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import icalendar
import pytest

from receiver.core.errors import LinkError
from receiver.notify.links import FeedClaim, FeedLinks, Links
from tests.harness import ANA_TOKEN, BO_TOKEN, CY_TOKEN, ackd_for
from tests.sinks import HttpSink
from tests.test_api import Api, run_cli, start_api

SECRET = b"feed-secret"
# What Google Calendar's fetcher sends: no Authorization, no cookie.
GOOGLE = {"User-Agent": "Google-Calendar-Importer"}


def test_a_feed_token_names_its_feed_and_nothing_else() -> None:
    feeds = FeedLinks(SECRET, "https://ackd.example.com/")
    url = feeds.url("user", "ana", 3)
    assert url.startswith("https://ackd.example.com/feeds/")
    assert url.endswith(".ics")
    token = url.rsplit("/", 1)[1].removesuffix(".ics")
    assert feeds.verify(token) == FeedClaim("user", "ana", 3)
    assert feeds.verify(feeds.token("schedule", "payments", 0)) == FeedClaim(
        "schedule", "payments", 0)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for forged in (flipped, "nope", token + "x", "",
                   FeedLinks(b"another-secret", "").token("user", "ana", 3)):
        with pytest.raises(LinkError):
            feeds.verify(forged)
    # A link's token, signed with the same secret, opens no feed (and no feed's a link).
    link = Links(SECRET, "", timedelta(hours=1)).token(7, "ack", "ana",
                                                       datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(LinkError):
        feeds.verify(link)


@pytest.mark.parametrize(("kind", "name", "generation"), [
    ("team", "ana", 0), ("user", "x" * 201, 0), ("user", "ana", 2**32)])
def test_what_cannot_be_signed_is_refused(kind: str, name: str, generation: int) -> None:
    with pytest.raises(ValueError, match="kind|longer|range"):
        FeedLinks(SECRET, "").token(kind, name, generation)


# -- the API, in-process on the fake clock ----------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


def _path(url: str) -> str:
    return "/feeds/" + url.split("/feeds/", 1)[1]


async def _plain_get(base: str, path: str) -> tuple[int, str, str]:
    """A GET with no credentials, as a calendar app makes it: status, content type, body."""
    async with aiohttp.ClientSession() as session, session.get(
        base + path, headers=GOOGLE
    ) as response:
        return response.status, response.content_type, await response.text()


def _summaries(text: str) -> list[str]:
    return [str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(text).walk("VEVENT")]


async def test_a_calendar_app_subscribes_without_a_header(api: Api) -> None:
    status, answer = await api.call("GET", "/api/v1/users/ana/feed", token=ANA_TOKEN)
    assert status == 200, answer
    assert answer["user"] == "ana"
    status, kind, text = await _plain_get(api.url, _path(answer["url"]))
    assert (status, kind) == (200, "text/calendar")
    assert _summaries(text)[:1] == ["On call: ana (payments primary)"]
    status, answer = await api.call("GET", "/api/v1/schedules/payments/feed", token=BO_TOKEN)
    status, kind, text = await _plain_get(api.url, _path(answer["url"]) + "?weeks=1")
    assert (status, kind) == (200, "text/calendar")
    assert {"On call: ana (payments primary)", "On call: bo (payments secondary)"} <= set(
        _summaries(text))


async def _json_get(api: Api, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(
        api.url + path, headers=GOOGLE
    ) as response:
        return response.status, await response.json()


async def test_a_wrong_or_revoked_address_is_refused_with_json(api: Api) -> None:
    _, old = await api.call("GET", "/api/v1/users/ana/feed", token=ANA_TOKEN)
    token = _path(old["url"]).removeprefix("/feeds/").removesuffix(".ics")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    for path in (f"/feeds/{forged}.ics", "/feeds/not-a-feed.ics",
                 _path(FeedLinks(b"other", "").url("user", "ana", 0))):
        assert await _json_get(api, path) == (404, {"error": "no such calendar feed",
                                                    "field": "token"})
    # ana revokes her feed (a lost phone): a new address, and the old one stops.
    status, new = await api.call("DELETE", "/api/v1/users/ana/feed", token=ANA_TOKEN)
    assert status == 200, new
    assert new["url"] != old["url"]
    status, body = await _json_get(api, _path(old["url"]))
    assert (status, body["field"]) == (403, "token")
    assert "revoked" in body["error"]
    assert (await _plain_get(api.url, _path(new["url"])))[0] == 200
    # It is what GET gives now, to anyone who may read.
    _, again = await api.call("GET", "/api/v1/users/ana/feed", token=BO_TOKEN)
    assert again["url"] == new["url"]


async def test_who_may_revoke_a_feed(api: Api) -> None:
    status, body = await api.call("DELETE", "/api/v1/users/ana/feed", token=BO_TOKEN)
    assert (status, body["field"], body["scope"]) == (403, "Authorization", "admin")
    status, body = await api.call("DELETE", "/api/v1/schedules/payments/feed",
                                  token=ANA_TOKEN)
    assert (status, body["scope"]) == (403, "admin")
    assert (await api.call("DELETE", "/api/v1/users/ana/feed", token=CY_TOKEN))[0] == 200
    assert (await api.call("DELETE", "/api/v1/schedules/payments/feed", token=CY_TOKEN))[0] \
        == 200
    status, body = await api.call("GET", "/api/v1/users/zed/feed")
    assert (status, body["field"]) == (404, "user")
    status, body = await api.call("GET", "/api/v1/schedules/nope/feed")
    assert (status, body["field"]) == (404, "schedule")
    assert (await api.call("GET", "/api/v1/users/ana/feed", token=None))[0] == 401


# -- a real ackd, asked as Google Calendar asks -----------------------------------------------


async def test_a_real_ackd_serves_a_feed_to_a_plain_get(tmp_path: Path, sink: HttpSink
                                                        ) -> None:
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    await ackd.start_ready()
    try:
        answer = await ackd.call("GET", "/api/v1/users/bo/feed", token=BO_TOKEN)
        assert answer["url"].startswith(f"{ackd.url}/feeds/")
        async with aiohttp.ClientSession() as session:
            async with session.get(answer["url"], headers=GOOGLE) as response:
                assert response.status == 200
                assert response.content_type == "text/calendar"
                assert "On call: bo (payments secondary)" in _summaries(await response.text())
            await ackd.call("DELETE", "/api/v1/users/bo/feed", token=CY_TOKEN)
            async with session.get(answer["url"], headers=GOOGLE) as response:
                assert response.status == 403
                assert (await response.json())["field"] == "token"
    finally:
        ackd.stop()


async def test_ackd_feed_prints_the_address_and_revokes_it(api: Api) -> None:
    flags = ("--url", api.url, "--token", ANA_TOKEN)
    code, out = await run_cli("feed", "user", "ana", *flags)
    assert code == 0, out
    first = out.strip().splitlines()[0]
    assert "/feeds/" in first
    assert (await _plain_get(api.url, _path(first)))[0] == 200
    code, out = await run_cli("feed", "user", "ana", "--revoke", *flags)
    assert code == 0, out
    assert out.strip().splitlines()[0] != first
    assert (await _plain_get(api.url, _path(first)))[0] == 403
    code, out = await run_cli("feed", "schedule", "payments", "--revoke", *flags)
    assert code == 1
    assert "HTTP 403: admin:" in out
