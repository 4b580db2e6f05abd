"""ackd's log tells an operator what happened to every page and incident: one line per
delivery (incident, recipient, masked URL, result), one per acknowledgement and resolution."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.notify.notifier import DeliveryStatus
from receiver.testing import Outcome
from tests.test_api import Api, start_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    started = await start_api(tmp_path)
    yield started
    await started.daemon.stop()


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


async def test_deliveries_and_actions_are_logged(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api.notifier.set_outcome("json://127.0.0.1:9/ana", Outcome(DeliveryStatus.FAILURE,
                                                             error="connection refused"))
    number = await api.fire()
    await api.settle()
    assert (await api.call("POST", f"/api/v1/incidents/{number}/ack"))[0] == 200
    assert (await api.call("POST", f"/api/v1/incidents/{number}/resolve"))[0] == 200
    await api.settle()
    deliveries = lines(caplog, "receiver.delivery.dispatch")
    assert f"incident #{number} triggered to ana via json (json://127.0.0.1:9/ana), attempt" \
           " 1 of 2: failure after 0.00s: connection refused; will retry" in deliveries
    actions = lines(caplog, "receiver.escalation.responder")
    assert f"incident #{number} acknowledged by e2e" in actions
    assert f"incident #{number} resolved by e2e" in actions
