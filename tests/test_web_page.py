"""The web page over HTTP, in-process on a fake clock: sign in once with a token, read open
incidents and on-call, act through forms that carry a CSRF token, open an incident from the
signed link a page carries, and never let alert data become markup."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from receiver.alertmanager.webhook import build_webhook, fingerprint_of
from receiver.core.model import Alert, AlertStatus
from receiver.web.ui.session import COOKIE, LINK_SESSION, Sessions
from tests.harness import ANA_TOKEN, API_TOKEN, BO_TOKEN, TOKEN
from tests.test_api import LABELS, Api, start_api

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


class Browser:
    """An HTTP client that keeps cookies like a browser (IP hosts included)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.api.url + path, allow_redirects=False) as r:
            return r.status, await r.text()

    async def post(self, path: str, form: dict[str, str]) -> tuple[int, str, str]:
        async with self.session.post(self.api.url + path, data=form,
                                     allow_redirects=False) as r:
            return r.status, r.headers.get("Location", ""), await r.text()

    async def sign_in(self, token: str = API_TOKEN) -> tuple[int, str, str]:
        _, page = await self.get("/login")
        return await self.post("/login", {"csrf": _csrf(page), "token": token, "next": "/"})

    def cookie(self, name: str) -> str:
        for morsel in self.session.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return ""


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


@pytest.fixture
async def browser(api: Api) -> AsyncIterator[Browser]:
    b = Browser(api)
    yield b
    await b.session.close()


async def test_pages_ask_for_a_token_once(api: Api, browser: Browser) -> None:
    status, page = await browser.get("/")
    assert status == 303
    assert (await browser.sign_in("wrong"))[0] == 401
    status, where, _ = await browser.sign_in()
    assert (status, where) == (303, "/")
    async with browser.session.get(api.url + "/") as r:
        set_cookie = r.headers.getall("Set-Cookie", [])
        assert r.status == 200
    assert set_cookie == []  # the session is set once, at sign-in
    status, page = await browser.get("/")
    assert status == 200
    assert "No open incidents" in page


async def test_session_cookie_is_httponly_strict(api: Api) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(api.url + "/login") as r:
            page = await r.text()
        async with s.post(api.url + "/login", allow_redirects=False,
                          data={"csrf": _csrf(page), "token": API_TOKEN}) as r:
            header = [h for h in r.headers.getall("Set-Cookie") if h.startswith(COOKIE)][0]
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Path=/" in header


async def test_login_form_needs_its_csrf_twin(api: Api, browser: Browser) -> None:
    await browser.get("/login")
    status, _, page = await browser.post("/login", {"csrf": "forged", "token": API_TOKEN})
    assert status == 403
    assert browser.cookie(COOKIE) == ""


async def test_open_incidents_and_on_call(api: Api, browser: Browser) -> None:
    number = await api.fire()
    await browser.sign_in()
    status, page = await browser.get("/")
    assert status == 200
    row = re.search(rf'<tr id="incident-{number}">(.*?)</tr>', page, re.S)
    assert row, page
    assert "SEV1" in row.group(1)
    assert "payments" in row.group(1)
    assert "triggered" in row.group(1)
    assert "30s" not in row.group(1)  # age counts from the incident's opening, not the alert
    table = re.search(r'<table id="on-call">(.*?)</table>', page, re.S)
    assert table
    cells = re.findall(r"<td>(.*?)</td>", table.group(1))
    assert cells[:3] == ["payments", "primary", "ana"]
    assert cells[4:7] == ["payments", "secondary", "bo"]


async def test_acknowledge_and_resolve_through_forms(api: Api, browser: Browser) -> None:
    number = await api.fire()
    await browser.sign_in()
    _, page = await browser.get(f"/incidents/{number}")
    csrf = _csrf(page)
    status, where, _ = await browser.post(f"/incidents/{number}/ack", {"csrf": csrf})
    assert (status, where) == (303, f"/incidents/{number}")
    status, where, _ = await browser.post(f"/incidents/{number}/resolve",
                                          {"csrf": csrf, "back": "/"})
    assert (status, where) == (303, "/")
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert body["state"] == "resolved"
    assert body["acknowledged_by"] == "e2e"
    assert [e["actor"] for e in body["timeline"] if e["kind"] == "resolved"] == ["e2e"]
    status, _, page = await browser.post(f"/incidents/{number}/resolve", {"csrf": csrf})
    assert status == 409
    message = re.search(r'id="message">(.*?)<', page, re.S)
    assert message, page
    assert message.group(1) == f"cannot resolve: incident #{number} is already resolved (by e2e)"
    # A person's resolution ends its time to resolve: no alert end to show beside it.
    _, page = await browser.get(f"/incidents/{number}")
    assert "<dt>Resolved</dt>" in page
    assert 'id="ended"' not in page


async def test_a_resolution_alertmanager_reported_late_shows_when_the_alerts_ended(
    api: Api, browser: Browser
) -> None:
    """Alertmanager reports a resolution at the group's next group_interval: the page says
    both when the alert ended (where the time to resolve stops) and when the report came."""
    number = await api.fire()
    await api.settle()
    starts = api.clock.now() - timedelta(seconds=30)
    await api.clock.jump(timedelta(minutes=2))
    ended = api.clock.now()
    await api.clock.jump(timedelta(minutes=4, seconds=45))
    arrived = api.clock.now()
    alert = Alert(fingerprint_of(LABELS), AlertStatus.RESOLVED, LABELS, {}, starts, ended)
    status, body = await api.call("POST", "/api/v1/alerts", build_webhook([alert]), token=TOKEN)
    assert status == 200, body
    await api.settle()
    await browser.sign_in()
    _, page = await browser.get(f"/incidents/{number}")
    at = "%Y-%m-%d %H:%M:%S UTC"
    shown = re.search(r'<span id="ended">(.*?)</span>', page, re.S)
    assert shown, page
    assert " ".join(shown.group(1).split()) == (
        f"(alerts ended {ended:{at}}; Alertmanager reported it {arrived:{at}})")


async def test_triggered_again_claims_no_acknowledgement(api: Api, browser: Browser) -> None:
    """After an unack the incident is triggered again and nobody holds it: neither its page
    nor the API says "acknowledged by"; MTTA keeps the first acknowledgement, on the
    timeline, and a later one is shown as the holder's."""
    number = await api.fire()
    await api.settle()
    await browser.sign_in()
    _, page = await browser.get(f"/incidents/{number}")
    await browser.post(f"/incidents/{number}/ack", {"csrf": _csrf(page)})
    assert "<dt>Acknowledged</dt>" in (await browser.get(f"/incidents/{number}"))[1]
    await api.clock.jump(timedelta(minutes=1))
    assert (await api.call("POST", f"/api/v1/incidents/{number}/unack"))[0] == 200

    _, page = await browser.get(f"/incidents/{number}")
    assert re.search(r'id="state"[^>]*>triggered<', page)
    assert "<dt>Acknowledged</dt>" not in page
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert (body["state"], body["acknowledged_by"], body["acknowledged_at"]) == (
        "triggered", None, None)
    _, listing = await api.call("GET", "/api/v1/incidents?state=triggered")
    assert [(i["id"], i["acknowledged_by"]) for i in listing["incidents"]] == [(number, None)]
    assert [e["actor"] for e in body["timeline"] if e["kind"] == "acknowledged"] == ["e2e"]

    await api.clock.jump(timedelta(minutes=1))
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    assert (status, body["acknowledged_by"]) == (200, "ana")
    _, page = await browser.get(f"/incidents/{number}")
    assert re.search(r"<dt>Acknowledged</dt><dd>[^<]* by ana</dd>", page), page
    metrics = (await api.call("GET", "/metrics", token=None))[1]
    assert 'ackd_time_to_acknowledge_seconds_count{severity="SEV1",team="payments"} 1.0' \
        in metrics


async def test_resolved_while_nobody_held_it_says_who_first_acknowledged_it(
    api: Api, browser: Browser,
) -> None:
    """An incident acknowledged, let go and then resolved names no holder (its resolution
    clears the acknowledgement): its page dropped the "Acknowledged" line without a word of
    why. It says nobody held it when it was resolved, and who first acknowledged it and when,
    as the post-mortem does; one never acknowledged says that."""
    number = await api.fire()
    await api.settle()
    await api.clock.jump(timedelta(minutes=1))
    acknowledged_at = api.clock.now()
    assert (await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN))[0] == 200
    await api.clock.jump(timedelta(minutes=1))
    assert (await api.call("POST", f"/api/v1/incidents/{number}/unack",
                           token=ANA_TOKEN))[0] == 200
    assert (await api.call("POST", f"/api/v1/incidents/{number}/resolve"))[0] == 200
    never = await api.fire({**LABELS, "alertname": "DiskFull"})
    assert (await api.call("POST", f"/api/v1/incidents/{never}/resolve"))[0] == 200
    await browser.sign_in()

    def unheld(page: str) -> str:
        found = re.search(r'<dt>Acknowledged</dt><dd id="unheld">(.*?)</dd>', page, re.S)
        assert found, page
        return " ".join(found.group(1).split())

    assert unheld((await browser.get(f"/incidents/{number}"))[1]) == (
        f"first {acknowledged_at:%Y-%m-%d %H:%M:%S} UTC by ana, let go since (see the"
        " timeline): nobody held it when it was resolved (resolved unacknowledged)")
    assert unheld((await browser.get(f"/incidents/{never}"))[1]) == (
        "never: nobody acknowledged it (resolved unacknowledged)")


async def test_a_session_carries_its_tokens_scope_and_name(api: Api, browser: Browser) -> None:
    number = await api.fire()
    await browser.sign_in(BO_TOKEN)  # bo's own token reads only
    _, page = await browser.get(f"/incidents/{number}")
    status, _, page = await browser.post(f"/incidents/{number}/ack", {"csrf": _csrf(page)})
    assert status == 403
    assert "acting needs the respond scope; bo has read" in page
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert body["state"] == "triggered"
    other = Browser(api)
    try:
        await other.sign_in(ANA_TOKEN)
        _, page = await other.get(f"/incidents/{number}")
        await other.post(f"/incidents/{number}/ack", {"csrf": _csrf(page)})
    finally:
        await other.session.close()
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert body["acknowledged_by"] == "ana"


async def test_a_form_without_its_csrf_token_changes_nothing(
    api: Api, browser: Browser
) -> None:
    number = await api.fire()
    await browser.sign_in()
    for form in ({}, {"csrf": "x" * 43}):
        status, _, page = await browser.post(f"/incidents/{number}/ack", form)
        assert status == 403
        assert "CSRF" in page
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert body["state"] == "triggered"


async def test_another_sessions_csrf_token_is_refused(api: Api, browser: Browser) -> None:
    number = await api.fire()
    await browser.sign_in()
    other = Browser(api)
    try:
        await other.sign_in()
        _, page = await other.get(f"/incidents/{number}")
        theirs = _csrf(page)
    finally:
        await other.session.close()
    _, page = await browser.get(f"/incidents/{number}")
    assert _csrf(page) != theirs
    status, _, _ = await browser.post(f"/incidents/{number}/ack", {"csrf": theirs})
    assert status == 403


async def test_unknown_and_malformed_incidents(api: Api, browser: Browser) -> None:
    await browser.sign_in()
    status, page = await browser.get("/incidents/999")
    assert status == 404
    status, page = await browser.get("/incidents/x1")
    assert status == 400
    assert "id" in page
    _, index = await browser.get("/")
    status, _, _ = await browser.post("/incidents/999/ack", {"csrf": _csrf(index)})
    assert status == 404
    status, _, _ = await browser.post("/incidents/1/explode", {"csrf": _csrf(index)})
    assert status == 404


async def test_alert_data_is_escaped(api: Api, browser: Browser) -> None:
    labels = {**LABELS, "alertname": HOSTILE, "cluster": '"><b>bold</b>'}
    number = await api.fire(labels)
    await browser.sign_in()
    for path in ("/", f"/incidents/{number}"):
        status, page = await browser.get(path)
        assert status == 200
        assert "<script>" not in page
        assert "<img" not in page
        assert "<b>bold" not in page
        assert "&lt;script&gt;" in page


async def test_pages_forbid_every_script(api: Api, browser: Browser) -> None:
    await browser.sign_in()
    async with browser.session.get(api.url + "/") as r:
        policy = r.headers["Content-Security-Policy"]
        assert r.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in policy
    assert "script-src" not in policy


async def test_incident_link_opens_a_short_session_for_its_recipient(
    api: Api, browser: Browser
) -> None:
    number = await api.fire()
    links = api.daemon.services.links
    assert links is not None
    token = links.token(number, "open", "ana", api.clock.now())
    status, page = await browser.get(f"/l/{token}")
    assert status == 200
    assert f'url=/incidents/{number}"' in page
    cookie = browser.cookie(COOKIE)
    session = Sessions(api.daemon.config.link_secret).verify(cookie, api.clock.now())
    assert session is not None
    assert (session.name, session.via) == ("ana", "link")
    assert session.expires - api.clock.now() <= LINK_SESSION
    status, page = await browser.get(f"/incidents/{number}")
    assert status == 200
    status, _, _ = await browser.post(f"/incidents/{number}/ack", {"csrf": _csrf(page)})
    assert status == 303
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert body["acknowledged_by"] == "ana"
    await api.clock.jump(LINK_SESSION.total_seconds() + 1)
    assert (await browser.get(f"/incidents/{number}"))[0] == 303  # over: sign in again


async def test_a_tampered_session_is_no_session(api: Api, browser: Browser) -> None:
    await browser.sign_in()
    cookie = browser.cookie(COOKIE)
    body, _, mac = cookie.partition(".")
    forged = Sessions(b"another secret").issue("e2e", "admin", "token", api.clock.now(),
                                                 timedelta(hours=1))
    for value in (body + "." + mac[::-1], forged, "x", body):
        browser.session.cookie_jar.update_cookies({COOKIE: value}, aiohttp.client.URL(api.url))
        assert (await browser.get("/"))[0] == 303, value


async def test_pages_link_each_incident_to_its_page(api: Api) -> None:
    """The pages sent to users carry a signed incident link; it opens that incident's page."""
    number = await api.fire()
    await api.settle()
    [(url, message)] = [(u, m) for u, m in api.notifier.sent if u.endswith("/ana")][:1]
    link = re.search(r"Incident: (\S+)", message.body)
    assert link, message.body
    assert "/l/" in link.group(1)
    links = api.daemon.services.links
    assert links is not None
    claim = links.verify(link.group(1).rsplit("/", 1)[1], api.clock.now())
    assert (claim.incident_id, claim.action, claim.recipient) == (number, "open", "ana")


async def test_the_on_call_table_shows_run_time_overrides(api: Api, browser: Browser) -> None:
    now = api.clock.now()
    status, body = await api.call("POST", "/api/v1/schedules/payments/overrides", {
        "user": "cy", "layer": "primary", "start": now.isoformat(),
        "end": (now + timedelta(hours=1)).isoformat()})
    assert status == 201, body
    await browser.sign_in()
    _, page = await browser.get("/")
    table = re.search(r'<table id="on-call">(.*?)</table>', page, re.S)
    assert table
    cells = re.findall(r"<td>(.*?)</td>", table.group(1))
    assert cells[:3] == ["payments", "primary", "cy"]  # as escalation pages, not the plan


async def test_a_session_survives_a_restart(tmp_path: Path) -> None:
    """Sessions are signed with the link secret (the config's here; without one, ackd keeps
    one in its data directory), not held in memory: the same cookie opens the page after a
    restart."""
    first = await start_api(tmp_path)
    browser = Browser(first)
    try:
        await browser.sign_in()
        cookie = browser.cookie(COOKIE)
        assert cookie
    finally:
        await browser.session.close()
        await first.daemon.stop()
    second = await start_api(tmp_path)
    try:
        async with aiohttp.ClientSession() as session, session.get(
            second.url + "/", headers={"Cookie": f"{COOKIE}={cookie}"}, allow_redirects=False
        ) as response:
            assert response.status == 200
            assert 'id="signed-in">e2e<' in await response.text()
    finally:
        await second.daemon.stop()


async def test_a_reload_that_lowers_a_tokens_scope_applies_to_its_sessions(
    api: Api, browser: Browser, tmp_path: Path
) -> None:
    number = await api.fire()
    await browser.sign_in(ANA_TOKEN)
    _, page = await browser.get(f"/incidents/{number}")
    csrf = _csrf(page)
    config = tmp_path / "ackd.yaml"
    text = config.read_text()
    assert f"token: {ANA_TOKEN}," in text
    config.write_text(text.replace(f"token: {ANA_TOKEN},", f"token: {ANA_TOKEN}, scope: read,"))
    assert api.daemon.reload(config)
    status, _, page = await browser.post(f"/incidents/{number}/ack", {"csrf": csrf})
    assert status == 403
    assert "needs the respond scope; ana has read" in page
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert body["state"] == "triggered"


async def test_roles_and_notes_through_forms(api: Api, browser: Browser) -> None:
    number = await api.fire()
    await browser.sign_in()
    _, page = await browser.get(f"/incidents/{number}")
    csrf = _csrf(page)
    assert 'id="no-notes"' in page
    status, where, _ = await browser.post(f"/incidents/{number}/role",
                                          {"csrf": csrf, "role": "commander", "user": "ana"})
    assert (status, where) == (303, f"/incidents/{number}")
    status, _, _ = await browser.post(f"/incidents/{number}/note",
                                      {"csrf": csrf, "text": "<b>db</b> is slow"})
    assert status == 303
    _, page = await browser.get(f"/incidents/{number}")
    holder = re.search(r'<tr id="role-commander"><td>incident commander</td>\s*<td>(\w+)</td>',
                       page)
    assert holder
    assert holder.group(1) == "ana"
    assert "&lt;b&gt;db&lt;/b&gt; is slow" in page
    assert "<b>db" not in page
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    kinds = [(e["kind"], e["actor"]) for e in body["timeline"]]
    assert ("role_assigned", "e2e") in kinds
    assert ("note", "e2e") in kinds  # e2e is not the commander: a note, not a status update
    status, _, _ = await browser.post(f"/incidents/{number}/role",
                                      {"csrf": csrf, "role": "commander", "user": ""})
    assert status == 303
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert body["timeline"][-1]["kind"] == "role_cleared"


async def test_bad_role_and_note_forms_name_the_field(api: Api, browser: Browser) -> None:
    number = await api.fire()
    await browser.sign_in()
    _, page = await browser.get(f"/incidents/{number}")
    csrf = _csrf(page)
    for action, form, field in [
        ("role", {"role": "captain", "user": "ana"}, "role"),
        ("role", {"role": "scribe", "user": "nobody"}, "user"),
        ("note", {"text": "   "}, "text"),
    ]:
        status, _, page = await browser.post(f"/incidents/{number}/{action}",
                                             {"csrf": csrf, **form})
        assert status == 400, (action, form)
        message = re.search(r'id="message">(.*?)<', page, re.S)
        assert message, page
        assert message.group(1).startswith(f"{field}: ")


async def test_declare_reassign_page_and_change_severity_through_forms(
    api: Api, browser: Browser
) -> None:
    await browser.sign_in()
    _, page = await browser.get("/")
    csrf = _csrf(page)
    status, where, _ = await browser.post("/declare", {
        "csrf": csrf, "team": "payments", "severity": "SEV2", "source": "customer",
        "summary": "Checkout <fails> for customers"})
    assert status == 303, where
    number = int(where.rsplit("/", 1)[1])
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert (body["team"], body["severity"], body["summary"]) == (
        "payments", "SEV2", "Checkout <fails> for customers")
    _, page = await browser.get(f"/incidents/{number}")
    assert "Checkout &lt;fails&gt; for customers" in page
    for action, form in [("severity", {"severity": "SEV1"}), ("responder", {"user": "cy"}),
                         ("reassign", {"team": "platform", "user": ""})]:
        status, where, _ = await browser.post(f"/incidents/{number}/{action}",
                                              {"csrf": csrf, **form})
        assert (status, where) == (303, f"/incidents/{number}"), action
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert (body["severity"], body["team"]) == ("SEV1", "platform")
    kinds = [e["kind"] for e in body["timeline"] if e["actor"] == "e2e"]
    assert kinds == ["opened", "severity_changed", "responder_added", "reassigned"]
    status, _, page = await browser.post("/declare", {"csrf": csrf, "team": "nobody",
                                                      "severity": "SEV2", "summary": "x"})
    assert status == 400
    assert 'id="message">team: ' in page
    status, _, page = await browser.post(f"/incidents/{number}/reassign", {"csrf": csrf})
    assert status == 400
    assert 'id="message">team: ' in page


async def test_taking_an_incident_through_the_form_acknowledges_it_unpaged(
    api: Api, browser: Browser
) -> None:
    """The person signed in is the actor: ana reassigning her page's incident to herself on
    the web page takes it (acknowledged by her), and no page asks her to."""
    number = await api.fire()
    await api.settle()
    assert api.paged() == ["ana"]
    await browser.sign_in(ANA_TOKEN)
    _, page = await browser.get(f"/incidents/{number}")
    status, where, _ = await browser.post(f"/incidents/{number}/reassign",
                                          {"csrf": _csrf(page), "team": "", "user": "ana"})
    assert (status, where) == (303, f"/incidents/{number}")
    await api.settle()
    assert api.paged() == ["ana"]
    _, body = await api.call("GET", f"/api/v1/incidents/{number}")
    assert (body["state"], body["acknowledged_by"]) == ("acknowledged", "ana")


def _calendars(page: str) -> dict[str, str]:
    found = re.search(r'<ul id="calendars">(.*?)</ul>', page, re.S)
    assert found, page
    return dict(re.findall(r'<li>([^:<]+): <a class="feed" href="([^"]+)"', found.group(1)))


async def test_the_page_gives_the_calendar_addresses_the_api_gives(
    api: Api, browser: Browser
) -> None:
    """A person signed in sees their own shifts' address first, then each schedule's; each is
    the API's current address, and a revocation shows at once."""
    await browser.sign_in(ANA_TOKEN)
    _, page = await browser.get("/")
    calendars = _calendars(page)
    assert list(calendars) == ["Your shifts", "Schedule payments"]
    for label, path in (("Your shifts", "/api/v1/users/ana/feed"),
                        ("Schedule payments", "/api/v1/schedules/payments/feed")):
        status, answer = await api.call("GET", path, token=ANA_TOKEN)
        assert status == 200, answer
        assert calendars[label] == answer["url"]
    # The addresses carry the configured external URL; the test's ackd listens elsewhere.
    path = "/feeds/" + calendars["Your shifts"].split("/feeds/", 1)[1]
    async with browser.session.get(api.url + path) as r:
        assert (r.status, r.content_type) == (200, "text/calendar")
        assert "On call: ana (payments primary)" in await r.text()

    status, revoked = await api.call("DELETE", "/api/v1/users/ana/feed", token=ANA_TOKEN)
    assert status == 200, revoked
    _, page = await browser.get("/")
    assert _calendars(page)["Your shifts"] == revoked["url"] != calendars["Your shifts"]


async def test_a_token_that_is_no_person_sees_the_schedules_calendars_only(
    api: Api, browser: Browser
) -> None:
    await browser.sign_in()  # the e2e admin token: nobody ackd pages
    _, page = await browser.get("/")
    assert list(_calendars(page)) == ["Schedule payments"]
