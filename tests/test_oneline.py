"""Outside text on one line: in pages (default and overridden templates) and in log lines."""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from receiver.core.model import Alert
from receiver.core.oneline import EscapeArgs, one_line
from receiver.notify.messages import PAGE_REASONS, REASONS, Templates, render_bundle, short_body
from tests.harness import TOKEN, Ackd, free_port, write_config
from tests.test_messages import ACK, ALERTS, ctx, incident

FORGED = "https://evil.example/steal"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("api-1", "api-1", id="plain"),
        pytest.param("a\nb", "a\\nb", id="line-feed"),
        pytest.param("a\r\nb", "a\\r\\nb", id="crlf"),
        pytest.param("a\tb", "a\\tb", id="tab"),
        pytest.param("\x1b[31mred", "\\x1b[31mred", id="terminal-escape"),
        pytest.param("a\x00b\x7f", "a\\x00b\\x7f", id="nul-and-del"),
        pytest.param("a\x85b", "a\\x85b", id="c1-next-line"),
        pytest.param("a\u2028b\u2029", "a\\u2028b\\u2029", id="unicode-separators"),
        pytest.param("\u202eevil", "\\u202eevil", id="bidi-override"),
        pytest.param("Zürich 東京 ✓", "Zürich 東京 ✓", id="printable-unicode-kept"),
        pytest.param("C:\\path", "C:\\path", id="backslash-kept"),
    ],
)
def test_one_line(text: str, shown: str) -> None:
    assert one_line(text) == shown
    assert "\n" not in one_line(text)


def forging_alert(base: Alert) -> Alert:
    """An alert whose label value and annotations try to add lines of their own."""
    labels = {**base.labels, "instance": f"api-1\nAcknowledge: {FORGED}"}
    annotations = {"runbook_url": f"https://runbooks/x\nResolve: {FORGED}",
                   "summary": f"down\x1b[2K\rAcknowledge: {FORGED}"}
    return replace(base, labels=labels, annotations=annotations)


def lines_forged(text: str) -> list[str]:
    return [line for line in text.splitlines() if FORGED in line
            and re.match(r"\s*(Acknowledge|Resolve):", line)]


@pytest.mark.parametrize("reason", REASONS)
def test_alert_data_adds_no_line_to_any_default_message(reason: str) -> None:
    alerts = (forging_alert(ALERTS[0]), *ALERTS[1:])
    context = ctx(reason, alerts=alerts, incident=incident(summary=""))
    message = Templates().render(context)
    assert lines_forged(message.body) == []
    assert not set("\n\r\x1b") & set(message.title)
    assert not set("\r\x1b") & set(message.body)
    if reason in (*PAGE_REASONS, "stakeholder_declared"):  # these list the alerts
        assert "api-1\\nAcknowledge:" in message.body
    assert "\n" not in short_body(context)


def test_alert_data_adds_no_line_to_an_overridden_template() -> None:
    templates = Templates({"triggered": {
        "body": "{{ alerts[0].labels.instance }}\n{{ alerts[0].annotations.summary }}\n"
                "{% for a in alerts %}{{ a.labels | labels }}\n{% endfor %}"
                "Acknowledge: {{ ack_url }}",
    }})
    alerts = (forging_alert(ALERTS[0]),)
    body = templates.render(ctx(alerts=alerts)).body
    assert lines_forged(body) == []
    assert body.splitlines()[-1] == f"Acknowledge: {ACK}"  # the template's own lines stay


def test_a_bundle_carries_no_forged_line() -> None:
    alerts = (forging_alert(ALERTS[0]),)
    contexts = [ctx(alerts=alerts, incident=incident(summary="")) for _ in range(2)]
    assert lines_forged(render_bundle(contexts, short=False).body) == []


def test_log_arguments_are_escaped_and_the_format_keeps_its_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(EscapeArgs())
    logger = logging.getLogger("test_oneline.escape")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("rejected: %s (%d)", ValueError("labels.a\nCRITICAL forged"), 3)
        logger.warning("two lines on purpose:\n%(what)s", {"what": "x\ny"})
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "rejected: labels.a\\nCRITICAL forged (3)", "two lines on purpose:", "x\\ny",
    ]


async def test_a_label_name_cannot_forge_a_line_in_the_daemon_log(tmp_path: Path) -> None:
    """The real daemon's log: a bad webhook is logged with its field, which names a label."""
    config = write_config(tmp_path / "ackd.yaml", f"127.0.0.1:{free_port()}")
    daemon = Ackd(tmp_path, config)
    await daemon.start_ready()
    try:
        forged = "2026-01-01 00:00:00,000 CRITICAL receiver.app.daemon: forged by a label name"
        body = json.dumps({
            "version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "ackd",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am", "alerts": [{
                "status": "firing", "labels": {"alertname": "X", f"env\n{forged}": 5},
                "annotations": {}, "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "0"}],
        })
        async with aiohttp.ClientSession() as session, session.post(
            f"{daemon.url}/api/v1/alerts", data=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 400
    finally:
        daemon.stop()
    log = daemon.log()
    assert "webhook rejected: " in log
    assert not any(line.startswith(forged) for line in log.splitlines()), log
    assert f"env\\n{forged}" in log


def test_a_logged_traceback_keeps_its_lines_but_not_a_forged_one() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(EscapeArgs())
    logger = logging.getLogger("test_oneline.traceback")
    logger.addHandler(handler)
    logger.propagate = False
    forged = "2026-01-01 00:00:00,000 CRITICAL receiver.app.daemon: forged"
    try:
        try:
            raise KeyError("first")
        except KeyError as first:
            error = ValueError(f"label x\n{forged}")
            error.add_note(f"note\n{forged}")
            raise error from first
    except ValueError:
        logger.exception("rendering failed")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert not [line for line in lines if line.startswith(forged)], lines
    assert lines[0] == "rendering failed"
    assert lines.count("Traceback (most recent call last):") == 2  # the cause's and its own
    assert f"ValueError: label x\\n{forged}" in lines
    assert f"note\\n{forged}" in lines
    assert "KeyError: 'first'" in lines
