"""Grafana-managed alerts: the webhook contact point's body (version 1) on the same endpoint.

The fixtures follow the payload Grafana documents for its webhook notifier (version "1",
orgId, title, state, message, per-alert silenceURL, dashboardURL, panelURL, imageURL, values
or the older valueString, and starts with an offset). They are routed, grouped and resolved
exactly as Alertmanager's are; the links reach the API and the pages; a broken field is a 400
naming it, as for Alertmanager.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.alertmanager.webhook import _parse_carefully, fingerprint_of, parse_webhook
from receiver.app.daemon import Daemon
from receiver.config import build as config_module
from receiver.core.model import AlertStatus, GrafanaDetails
from tests.harness import API_TOKEN, ROOT, TOKEN
from tests.sinks import HttpSink
from tests.test_api import Api, start_api

FIXTURES = ROOT / "tests/fixtures/grafana"
SILENCE = ("https://grafana.example.com/alerting/silence/new?alertmanager=grafana"
           "&matcher=alertname%3DCheckoutLatencyHigh&matcher=cluster%3Deu1"
           "&matcher=team%3Dpayments&orgId=1")
PANEL = "https://grafana.example.com/d/checkout?orgId=1&viewPanel=4"
DASHBOARD = "https://grafana.example.com/d/checkout?orgId=1"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return loaded


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


async def post(api: Api, document: dict[str, Any]) -> tuple[int, Any]:
    return await api.call("POST", "/api/v1/alerts", document, token=TOKEN)


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["firing", "resolved", "mixed", "value_string"])
def test_each_fixture_takes_the_fast_path_and_reads_as_the_careful_one(name: str) -> None:
    body = (FIXTURES / f"{name}.json").read_bytes()
    assert parse_webhook(body) == _parse_carefully(body)


def test_grafana_details_are_read_and_starts_with_an_offset_are_utc() -> None:
    message = parse_webhook((FIXTURES / "firing.json").read_bytes())
    first, second = message.alerts
    assert first.starts_at == datetime(2026, 11, 24, 7, 51, 3, 157076, tzinfo=UTC)
    assert first.fingerprint == "d41f6e2a9b7c3e05"  # Grafana's own, kept as Alertmanager's is
    assert first.grafana == GrafanaDetails(
        silence_url=SILENCE, dashboard_url=DASHBOARD, panel_url=PANEL,
        values={"B": 2.4137, "C": 1.0},
    )
    assert second.grafana is not None
    assert second.grafana.image_url.endswith("checkout-p99.png")
    assert message.external_url == "https://grafana.example.com/"

    [old] = parse_webhook((FIXTURES / "value_string.json").read_bytes()).alerts
    assert old.grafana is not None
    assert old.grafana.value_string == "[ var='B' labels={instance=db-3} value=93.2 ]"
    assert old.grafana.values == {}


def test_an_alertmanager_body_never_carries_grafana_details() -> None:
    document = fixture("firing")
    document["version"] = "4"
    assert all(a.grafana is None for a in parse_webhook(json.dumps(document).encode()).alerts)


def test_a_fingerprint_left_out_is_computed_as_for_alertmanager() -> None:
    document = fixture("value_string")
    del document["alerts"][0]["fingerprint"]
    [alert] = parse_webhook(json.dumps(document).encode()).alerts
    assert alert.fingerprint == fingerprint_of(document["alerts"][0]["labels"])


def broken(name: str, at: int, **fields: Any) -> dict[str, Any]:
    document = fixture(name)
    document["alerts"][at].update(fields)
    return document


BROKEN = [
    ("a value that is not a number", broken("firing", 0, values={"B": "high"}),
     "alerts[0].values.B"),
    ("a value that is a boolean", broken("firing", 1, values={"C": True}), "alerts[1].values.C"),
    ("values not an object", broken("firing", 0, values=[1, 2]), "alerts[0].values"),
    ("a silenceURL that is not a string", broken("firing", 1, silenceURL=7),
     "alerts[1].silenceURL"),
    ("a dashboardURL that is not a string", broken("mixed", 0, dashboardURL={"u": 1}),
     "alerts[0].dashboardURL"),
    ("a panelURL that is not a string", broken("firing", 0, panelURL=["x"]),
     "alerts[0].panelURL"),
    ("a valueString that is not a string", broken("value_string", 0, valueString=93.2),
     "alerts[0].valueString"),
    ("a start without a zone", broken("firing", 0, startsAt="2026-11-24T09:51:03.157076"),
     "alerts[0].startsAt"),
    ("a label that is not a string", broken("firing", 1, labels={"alertname": 1}),
     "alerts[1].labels.alertname"),
    ("a status Grafana's state leaked into", broken("firing", 0, status="alerting"),
     "alerts[0].status"),
    ("an unknown version", fixture("firing") | {"version": "2"}, "version"),
]


@pytest.mark.parametrize(("document", "field"), [c[1:] for c in BROKEN],
                         ids=[c[0] for c in BROKEN])
async def test_a_broken_grafana_body_gets_a_400_naming_the_field(
    api: Api, document: dict[str, Any], field: str
) -> None:
    status, body = await post(api, document)
    assert (status, body["field"]) == (400, field), body
    assert (await api.call("GET", "/api/v1/incidents"))[1]["incidents"] == []


def test_a_value_past_what_a_float_holds_is_refused_on_both_paths() -> None:
    text = json.dumps(broken("firing", 0, values={"B": "@"}))
    for number in ("1e999", "9" * 400):
        body = text.replace('"@"', number).encode()
        for parse in (parse_webhook, _parse_carefully):
            with pytest.raises(Exception, match="alerts\\[0\\].values.B"):
                parse(body)


# -- the daemon ------------------------------------------------------------------------------


async def test_firing_mixed_resolved_open_route_and_resolve_one_incident(api: Api) -> None:
    status, body = await post(api, fixture("firing"))
    assert status == 200, body
    [number] = body["incidents"]
    assert body["opened"] == [number]
    await api.settle()

    _, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    assert (incident["team"], incident["severity"]) == ("payments", "SEV1")  # routed by labels
    first = next(a for a in incident["alerts"] if a["fingerprint"] == "d41f6e2a9b7c3e05")
    assert (first["silenceURL"], first["dashboardURL"], first["panelURL"]) == (
        SILENCE, DASHBOARD, PANEL)
    assert first["values"] == {"B": 2.4137, "C": 1.0}

    # The page to the person on call carries Grafana's links, not Alertmanager's silence form.
    [(url, page)] = api.notifier.sent
    assert url.endswith("/ana")
    assert f"Dashboard: {DASHBOARD}" in page.body
    assert f"Panel: {PANEL}" in page.body
    assert f"Silence: {SILENCE}" in page.body
    assert "#/silences/new" not in page.body
    assert "values: B=2.4137, C=1" in page.body

    status, body = await post(api, fixture("mixed"))
    assert (status, body["incidents"], body["resolved"]) == (200, [number], [])
    assert body["outcomes"] == {"resolved": 1, "duplicate": 1}
    _, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    assert incident["state"] == "triggered"

    status, body = await post(api, fixture("resolved"))
    assert (status, body["resolved"]) == (200, [number])
    _, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    assert incident["state"] == "resolved"
    assert {a["status"] for a in incident["alerts"]} == {AlertStatus.RESOLVED.value}

    # A resend of the resolved body changes nothing and opens nothing.
    status, body = await post(api, fixture("resolved"))
    assert (status, body["opened"], body["resolved"]) == (200, [], [])


async def test_a_grafana_resend_is_a_duplicate_and_pages_nobody_again(api: Api) -> None:
    status, body = await post(api, fixture("firing"))
    assert status == 200
    await api.settle()
    sent = len(api.notifier.sent)
    resend = fixture("firing")
    for alert, value in zip(resend["alerts"], (2.5, 3.1), strict=True):
        alert["values"]["B"] = value  # Grafana sends the values of each evaluation
    status, again = await post(api, resend)
    assert (status, again["incidents"], again["outcomes"]) == (
        200, body["incidents"], {"duplicate": 2})
    await api.settle()
    assert len(api.notifier.sent) == sent


async def test_the_older_value_string_reaches_the_page(api: Api) -> None:
    status, body = await post(api, fixture("value_string"))
    assert status == 200, body
    await api.settle()
    [number] = body["incidents"]
    _, incident = await api.call("GET", f"/api/v1/incidents/{number}")
    assert (incident["team"], incident["severity"]) == ("platform", "SEV3")
    [(_, page)] = api.notifier.sent
    assert "values: [ var='B' labels={instance=db-3} value=93.2 ]" in page.body
    assert "Silence: https://grafana.example.com/alerting/silence/new" in page.body


# -- end to end: real Apprise to a local sink ----------------------------------------------------

E2E_CONFIG = """
webhook: {{bearer_token: {token}}}
api: {{tokens: [{{name: t, token: {api}}}]}}
notifications: {{timeout: 2s, bundle_window: 0s}}
users:
  - {{name: ana, contacts: [{{url: "{sink}"}}]}}
teams: [{{name: payments}}, {{name: platform}}]
policies:
  - name: page-ana
    steps: [{{notify: [{{user: ana}}]}}]
route:
  team: platform
  policy: page-ana
  group_by: [alertname, cluster]
  severity_from: {{label: severity, map: {{critical: SEV1, warning: SEV3}}, default: SEV2}}
  routes:
    - matchers: ['grafana_folder="Payments"']
      team: payments
"""


async def test_grafana_alerts_page_through_apprise_with_their_links_and_resolve(
    tmp_path: Path,
) -> None:
    async with HttpSink() as sink, aiohttp.ClientSession() as session:
        text = E2E_CONFIG.format(token=TOKEN, api=API_TOKEN, sink=sink.url(path="/ana"))
        loaded = replace(config_module.parse(str(tmp_path / "c.yaml"), text), listen_port=0,
                         data_dir=tmp_path / "data")
        daemon = Daemon(loaded)
        await daemon.start()
        url = f"http://127.0.0.1:{daemon.port}"
        try:
            async with session.post(f"{url}/api/v1/alerts", json=fixture("firing"),
                                    headers={"Authorization": f"Bearer {TOKEN}"}) as answer:
                assert answer.status == 200
                [number] = (await answer.json())["incidents"]
            [page] = await sink.wait_for(1, within=10)
            text = page.json["title"] + "\n" + page.json["message"]
            assert f"Panel: {PANEL}" in text
            assert f"Silence: {SILENCE}" in text
            assert "values: B=2.4137, C=1" in text
            async with session.get(f"{url}/api/v1/incidents/{number}",
                                   headers={"Authorization": f"Bearer {API_TOKEN}"}) as got:
                assert (await got.json())["team"] == "payments"  # routed on a Grafana label
            # Resolved at once, while ackd may not have recorded the page the sink has: a page
            # in flight counts as paged, so the resolution still reaches its person.
            async with session.post(f"{url}/api/v1/alerts", json=fixture("resolved"),
                                    headers={"Authorization": f"Bearer {TOKEN}"}) as answer:
                assert (await answer.json())["resolved"] == [number]
            [_, note] = await sink.wait_for(2, within=10)
            assert "resolved" in note.json["title"]
        finally:
            await daemon.stop()

