"""The web page in a real headless browser against a real ackd fed by the real Alertmanager:
the incident link in a page delivered to a local sink opens the incident for the person paged,
who acknowledges, takes command, posts a note and resolves with clicks and sees each on the
timeline; and the same on a phone's screen."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.browser import PHONE, chromium
from tests.harness import API_TOKEN, Alertmanager, ackd_for, alertmanager_binary, am_alert
from tests.sinks import HttpSink

pytestmark = pytest.mark.alertmanager

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
PAYMENTS = {"alertname": "PaymentApiDown", "cluster": "eu1", "team": "payments",
            "severity": "critical"}


def _incident_link(message: str) -> str:
    found = re.search(r"Incident: (\S+)", message)
    assert found, message
    return found.group(1)


async def test_the_paged_phone_follows_the_link_and_works_the_incident(
    tmp_path: Path, sink: HttpSink
) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        await am.start_ready()
        await am.post_alerts([am_alert(PAYMENTS, START)])
        [page_to_ana] = await sink.wait_for(1, within=15)
        assert page_to_ana.path == "/ana"
        link = _incident_link(page_to_ana.json["message"])
        assert link.startswith(f"{ackd.url}/l/")
        number = (await ackd.incidents())[0]["id"]

        async with chromium() as browser:
            context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            page = await context.new_page()
            await page.goto(link)
            await page.wait_for_url(f"{ackd.url}/incidents/{number}")
            assert f"#{number}" in await page.inner_text("h1")
            assert await page.inner_text("#signed-in") == "ana"
            assert await page.inner_text("#state") == "triggered"
            assert await _fits_the_screen(page)

            await page.get_by_role("button", name="Acknowledge").click()
            await page.wait_for_selector("#state.state-acknowledged")
            assert await _timeline(page, "acknowledged") == "ana"

            # She takes command, then posts a note: as commander, it is a status update.
            await page.select_option("#role", "commander")
            await page.select_option("#user", "ana")
            await page.get_by_role("button", name="Assign").click()
            await page.wait_for_selector("#timeline tr.event-role_assigned")
            assert await page.inner_text("#role-commander td:nth-child(2)") == "ana"
            assert await _timeline(page, "role_assigned") == "ana"
            await page.fill("#note-text", "Rolled back the deploy; error rate falling")
            await page.get_by_role("button", name="Post note").click()
            await page.wait_for_selector("#timeline tr.event-status_update")
            assert await _timeline(page, "status_update") == "ana"
            assert "Rolled back the deploy" in await page.inner_text(".note.status_update")
            assert await _fits_the_screen(page)

            await page.get_by_role("button", name="Resolve").click()
            await page.wait_for_selector("#state.state-resolved")
            assert await _timeline(page, "resolved") == "ana"
            assert await page.query_selector("#actions") is None
            await context.close()

        incident = await ackd.incident(number)
        assert incident["state"] == "resolved"
        assert incident["acknowledged_by"] == "ana"
    finally:
        am.stop()
        ackd.stop()


async def test_sign_in_once_and_act_from_the_list_on_a_phone(
    tmp_path: Path, sink: HttpSink
) -> None:
    alertmanager_binary()
    ackd = ackd_for(tmp_path, sink.port, step_delay="1h")
    await ackd.start_ready()
    am = Alertmanager(tmp_path, ackd.url)
    try:
        await am.start_ready()
        hostile = {**PAYMENTS, "cluster": '<img src=x onerror="document.title=1">'}
        await am.post_alerts([am_alert(hostile, START)])
        await sink.wait_for(1, within=15)
        number = (await ackd.incidents())[0]["id"]

        async with chromium() as browser:
            context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            page = await context.new_page()
            await page.goto(f"{ackd.url}/")
            await page.wait_for_url(re.compile(r".*/login\?next=.*"))
            await page.fill("#token", API_TOKEN)
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_selector(f"#incident-{number}")
            row = await page.inner_text(f"#incident-{number}")
            assert "SEV1" in row
            assert "payments" in row
            assert "triggered" in row
            assert await _fits_the_screen(page)
            oncall = await page.inner_text("#on-call")
            assert "primary" in oncall
            assert "ana" in oncall
            # The schedule's calendar address, as the page gives it, opens with no session.
            feed = await page.get_attribute("#calendars a.feed", "href")
            assert feed is not None
            assert "/feeds/" in feed
            async with aiohttp.ClientSession() as plain, plain.get(
                f"{ackd.url}/feeds/{feed.split('/feeds/', 1)[1]}"
            ) as calendar:
                assert calendar.status == 200
                assert "BEGIN:VCALENDAR" in await calendar.text()
            await page.locator(f"#incident-{number}").get_by_role(
                "button", name="Acknowledge").click()
            await page.wait_for_selector(f"#incident-{number} .state-acknowledged")

            await page.click(f"#incident-{number} >> a >> nth=0")
            await page.wait_for_url(f"{ackd.url}/incidents/{number}")
            # The hostile label is shown as text, and nothing of it ran.
            assert 'cluster=<img src=x onerror="document.title=1">' in await page.inner_text(
                "#alerts")
            assert await page.title() != "1"
            assert await page.query_selector("#alerts img") is None
            assert await _timeline(page, "acknowledged") == "e2e"
            await context.close()
    finally:
        am.stop()
        ackd.stop()


async def _timeline(page: object, kind: str) -> str:
    """Who the timeline says took the last event of `kind`."""
    from playwright.async_api import Page

    assert isinstance(page, Page)
    rows = await page.query_selector_all(f"#timeline tr.event-{kind}")
    assert rows, f"no {kind} event on the timeline"
    cells = await rows[-1].query_selector_all("td")
    return await cells[2].inner_text()


async def _fits_the_screen(page: object) -> bool:
    """Nothing on the page is wider than the phone's screen (no sideways scrolling)."""
    from playwright.async_api import Page

    assert isinstance(page, Page)
    width: bool = await page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth")
    return width
