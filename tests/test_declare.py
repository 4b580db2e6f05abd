"""Declaring an incident by hand (POST /api/v1/incidents, ackd declare): it opens with the
team, severity and summary given, pages through the team's escalation like any other, is on
the timeline as the person who declared it, and counts as reported, not detected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ANA_TOKEN, API_TOKEN, BO_TOKEN
from tests.test_api import Api, run_cli, start_api

CHECKOUT = {"team": "payments", "severity": "SEV1",
            "summary": "Customers report checkout failures", "source": "customer"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


async def test_a_declared_incident_escalates_and_counts_as_reported(api: Api) -> None:
    status, body = await api.call("POST", "/api/v1/incidents", CHECKOUT, token=ANA_TOKEN)
    assert status == 201, body
    number = body["id"]
    assert (body["team"], body["severity"], body["state"], body["detection"]) == (
        "payments", "SEV1", "triggered", "reported")
    assert body["summary"] == "Customers report checkout failures"
    await api.settle()
    assert api.paged() == ["ana"]  # the payments policy's first step: its primary on call
    [(_, page)] = api.notifier.sent
    assert "Customers report checkout failures" in page.title
    await api.clock.jump(timedelta(minutes=5))
    await api.settle()
    assert api.paged() == ["ana", "bo"]  # escalated: step 2, unacknowledged
    _, found = await api.call("GET", f"/api/v1/incidents/{number}")
    [opened] = [e for e in found["timeline"] if e["kind"] == "opened"]
    assert opened["actor"] == "ana"
    assert opened["detail"] == {"declared": True, "source": "customer", "severity": "SEV1",
                                "summary": "Customers report checkout failures"}
    assert found["alerts"] == []
    status, body = await api.call("POST", f"/api/v1/incidents/{number}/ack", token=ANA_TOKEN)
    assert (status, body["detection"]) == (200, "reported")
    await api.fire()  # one detected by an alert, for the report to tell apart
    _, report = await api.call("GET", "/api/v1/reports?since=1d")
    assert (report["detected"], report["reported"]) == (1, 1)
    metrics = (await api.call("GET", "/metrics", token=None))[1]
    assert 'ackd_incidents_opened_total{severity="SEV1",team="payments"} 2.0' in metrics


async def test_two_declared_at_one_instant_are_two_incidents(api: Api) -> None:
    first = await api.call("POST", "/api/v1/incidents", CHECKOUT)
    second = await api.call("POST", "/api/v1/incidents", {**CHECKOUT, "summary": "Also this"})
    assert (first[0], second[0]) == (201, 201)
    assert first[1]["id"] != second[1]["id"]


ERRORS: list[tuple[str, Any, str | None, int, str]] = [
    ("read token", CHECKOUT, BO_TOKEN, 403, "Authorization"),
    ("no token", CHECKOUT, None, 401, "Authorization"),
    ("unknown team", {**CHECKOUT, "team": "zed"}, API_TOKEN, 400, "team"),
    ("team missing", {k: v for k, v in CHECKOUT.items() if k != "team"}, API_TOKEN, 400,
     "team"),
    ("unknown severity", {**CHECKOUT, "severity": "SEV9"}, API_TOKEN, 400, "severity"),
    ("severity a number", {**CHECKOUT, "severity": 1}, API_TOKEN, 400, "severity"),
    ("summary missing", {"team": "payments", "severity": "SEV1"}, API_TOKEN, 400, "summary"),
    ("summary blank", {**CHECKOUT, "summary": "   "}, API_TOKEN, 400, "summary"),
    ("summary too long", {**CHECKOUT, "summary": "x" * 301}, API_TOKEN, 400, "summary"),
    ("unknown source", {**CHECKOUT, "source": "psychic"}, API_TOKEN, 400, "source"),
    ("unknown field", {**CHECKOUT, "labels": {}}, API_TOKEN, 400, "labels"),
    ("body a list", [CHECKOUT], API_TOKEN, 400, "body"),
    ("body not JSON", b"{team", API_TOKEN, 400, "body"),
    ("summary with a lone surrogate", b'{"team": "payments", "severity": "SEV1", '
     b'"summary": "\\udc00"}', API_TOKEN, 400, "summary"),
]


@pytest.mark.parametrize(("body", "token", "status", "field"), [c[1:] for c in ERRORS],
                         ids=[c[0] for c in ERRORS])
async def test_errors_name_the_field(
    api: Api, body: Any, token: str | None, status: int, field: str
) -> None:
    raw = body if isinstance(body, bytes) else None
    got, answer = await api.call("POST", "/api/v1/incidents", None if raw else body,
                                 token=token, raw=raw)
    assert (got, answer["field"]) == (status, field), answer
    assert (await api.call("GET", "/api/v1/incidents"))[1]["incidents"] == []


async def test_the_cli_declares(api: Api) -> None:
    code, out = await run_cli("declare", "payments", "SEV2", "Status page shows errors",
                              "--url", api.url, "--token", ANA_TOKEN)
    assert code == 0, out
    [incident] = (await api.call("GET", "/api/v1/incidents"))[1]["incidents"]
    assert out.strip() == f"#{incident['id']} declared: SEV2 payments: Status page shows errors"
    assert incident["detection"] == "reported"
    code, out = await run_cli("declare", "nowhere", "SEV2", "x", "--url", api.url,
                              "--token", ANA_TOKEN)
    assert code == 1
    assert "declare: HTTP 400: team: unknown team 'nowhere'" in out
