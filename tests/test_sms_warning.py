"""An SMS contact that does not set `short` gets the full page (600-700 characters, 5 or more
SMS): `ackd check-config`, the start and a reload warn of it (config.build.warnings), naming
file, line and key. Which URLs send SMS is Apprise's own metadata for the URL's plugin
(notifier.sms_limit), checked here against a table of real Apprise URLs."""

from __future__ import annotations

import argparse
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.cli.local import check_config
from receiver.config import build as config_module
from receiver.notify.notifier import sms_limit

SMS = "+31611111111"
URLS = [
    # SMS gateways: Apprise sends them no title and a few segments at most.
    pytest.param(f"smseagle://token@127.0.0.1:9/{SMS}", 1200, id="smseagle"),
    pytest.param("httpsms://apikey@+15551234567/+15557654321", 160, id="httpsms"),
    pytest.param("clickatell://apikey/15551234567", 160, id="clickatell"),
    pytest.param("bulksms://user:pass@15551234567", 160, id="bulksms"),
    pytest.param("vonage://apikey:secret@15551234567/15557654321", 160, id="vonage"),
    pytest.param("twilio://AC" + "a" * 32 + ":" + "b" * 32 + "@15551234567/15557654321", 160,
                 id="twilio-sms"),
    # Amazon SNS sends SMS to a phone number, and a titled message of 256 KB to a topic.
    pytest.param("sns://AHIAJGNT76XIMXDBIJYA/bu1dHSdO22pfaaVy/hrAkAg0N7KiZgOZ9UcjS/us-east-1/"
                 "+15551234567", 160, id="sns-phone"),
    pytest.param("sns://AHIAJGNT76XIMXDBIJYA/bu1dHSdO22pfaaVy/hrAkAg0N7KiZgOZ9UcjS/us-east-1/"
                 "#alerts", None, id="sns-topic"),
    # Phone numbers, but no SMS length: a messenger takes the full page in one message.
    pytest.param("signal://127.0.0.1:8080/+15551234567/+15557654321", None, id="signal"),
    pytest.param("json://127.0.0.1:9099/ana", None, id="json"),
    pytest.param("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", None, id="slack"),
    pytest.param("mailtos://u:p@smtp.example.com?to=ana@example.com", None, id="mailtos"),
    pytest.param("ntfys://ntfy.sh/ackd-ana", None, id="ntfy"),
    pytest.param("tgram://123456789:AABBCCDDEEFFgghhiijjkkll/-1001234567890", None, id="tgram"),
    pytest.param("nothing://at/all", None, id="unknown-scheme"),
]


@pytest.mark.parametrize(("url", "limit"), URLS)
def test_which_urls_send_sms(url: str, limit: int | None) -> None:
    assert sms_limit(url) == limit


CONFIG = textwrap.dedent(f"""\
    users:
      - name: ana
        contacts:
          - url: json://127.0.0.1:9/ana
          - url: smseagle://token@127.0.0.1:9/{SMS}
            delay: 2m
          - url: smseagle://token@127.0.0.1:9/{SMS}
            short: true
          - url: httpsms://apikey@+15551234567/+15557654321
            short: false
      - name: bo
        contacts:
          - url_file: bo-sms
          - url: ${{BO_SMS}}
    channels:
      - name: room
        urls: [{{url: "json://127.0.0.1:9/room"}}]
    teams:
      - {{name: ops}}
    policies:
      - name: p
        steps:
          - notify: [{{user: ana}}, {{user: bo}}, {{channel: room}}]
    route: {{team: ops, policy: p, severity: SEV2}}
    """)

SINCE = datetime(2026, 1, 5, tzinfo=UTC)


def _write(tmp_path: Path) -> Path:
    (tmp_path / "bo-sms").write_text("bulksms://user:pass@15551234567\n")
    path = tmp_path / "ackd.yaml"
    path.write_text(CONFIG)
    return path


def test_an_sms_contact_without_short_is_warned_of_with_file_line_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SMSEagle contact without `short` (line 5) and bo's two SMS contacts, one from a
    file, one from a variable; not the push, not `short: true`, not `short: false` (the full
    text is meant)."""
    monkeypatch.setenv("BO_SMS", "vonage://apikey:secret@15551234567/15557654321")
    path = _write(tmp_path)
    located, config = config_module.load_located(path)
    found = config_module.warnings(config, SINCE, located)
    assert [(w.kind, w.file, w.line, w.key) for w in found] == [
        ("sms_not_short", str(path), 5, "users[0].contacts[1].url"),
        ("sms_not_short", str(path), 13, "users[1].contacts[0].url_file"),
        ("sms_not_short", str(path), 14, "users[1].contacts[1].url"),
    ]
    assert found[0].message == (
        "warning: this smseagle:// contact sends SMS (Apprise: at most 1200 characters a "
        "message, no title) and does not set short: each page goes as the full text, 600 to "
        "700 characters, 5 or more SMS; set short: true for one SMS with the acknowledge "
        "link, or short: false to keep the full text")
    assert "at most 160 characters" in found[1].message
    assert found[2].message.endswith(" (from ${BO_SMS})")
    assert "apikey" not in "".join(w.message for w in found)  # no URL quoted
    # Read again from the file when the document is not given: the same warnings.
    assert config_module.warnings(config, SINCE) == found


def test_check_config_prints_the_warning_and_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BO_SMS", "json://127.0.0.1:9/bo")
    path = _write(tmp_path)
    args = argparse.Namespace(files=[str(path)], since=SINCE, listen=None, data_dir=None)
    assert check_config(args) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK, 2 warning(s)\n"
    assert err.splitlines()[0].startswith(
        f"{path}:5: users[0].contacts[1].url: warning: this smseagle:// contact sends SMS")
    assert err.splitlines()[1].startswith(f"{path}:13: users[1].contacts[0].url_file: warning:")
