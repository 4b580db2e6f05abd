"""A message template that prints `step + 1` numbers the step as the page's place in its run,
not as the reports, drills and default pages do (`number`): `ackd check-config`, the start
and a reload warn of it (config.build.warnings), naming file, line and key."""

from __future__ import annotations

import argparse
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.cli.local import check_config
from receiver.config import build as config_module

CONFIG = textwrap.dedent("""\
    users:
      - name: ana
        contacts: [{url: "json://127.0.0.1:9/ana"}]
    teams:
      - {name: ops}
    policies:
      - name: p
        steps:
          - notify: [{user: ana}]
    route: {team: ops, policy: p, severity: SEV2}
    notifications:
      templates:
        escalated:
          title: "#{{ incident.id }} step {{ step+1 }}"
          body: |
            Escalated{% if step is not none %} (step {{ step + 1 }}){% endif %}.
            {{ ack_url }}
        reminder:
          title: "#{{ incident.id }} step {{ number }}"
          body: "{% for p in paged_before %}{{ p.step + 1 }} {% endfor %}{{ step + 10 }}"
    """)

SINCE = datetime(2026, 1, 5, tzinfo=UTC)


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "ackd.yaml"
    path.write_text(CONFIG)
    return path


def test_a_template_printing_step_plus_one_is_warned_of_with_file_line_and_key(
    tmp_path: Path,
) -> None:
    """Both of escalated's parts, spaced or not; not reminder's: `number`, another variable's
    `step` (paged_before's, numbered as `number` already) and `step + 10` are not it."""
    path = _write(tmp_path)
    located, config = config_module.load_located(path)
    found = [w for w in config_module.warnings(config, SINCE, located)
             if w.kind == "template_step_number"]
    assert [(w.file, w.line, w.key) for w in found] == [
        (str(path), 14, "notifications.templates.escalated.title"),
        (str(path), 15, "notifications.templates.escalated.body"),
    ]
    assert found[0].message == (
        "warning: this template prints step + 1, the page's place in its escalation run, "
        "which is not the step the reports, drills and default pages name after a "
        "reassignment to a person; use {{ number }}, the policy's own step from 1 (none for "
        "the reassigned person's own page)")
    # Read again from the file when the document is not given: the same warnings.
    assert [w for w in config_module.warnings(config, SINCE)
            if w.kind == "template_step_number"] == found


@pytest.mark.parametrize("source", [
    "{{ number }}", "{{ step }}", "{{ step + 12 }}", "{{ (step or 0) - 1 }}",
    "{% for p in paged_before %}{{ p.step + 1 }}{% endfor %}",
    "{% for p in paged_before %}{{ loop.index + 1 }}{% endfor %}",
])
def test_other_step_numbers_are_not_warned_of(tmp_path: Path, source: str) -> None:
    path = tmp_path / "ackd.yaml"
    path.write_text(CONFIG.split("notifications:")[0]
                    + f"notifications:\n  templates:\n    triggered: {{title: '{source}'}}\n")
    located, config = config_module.load_located(path)
    assert not [w for w in config_module.warnings(config, SINCE, located)
                if w.kind == "template_step_number"]


def test_check_config_prints_the_warning_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = _write(tmp_path)
    args = argparse.Namespace(files=[str(path)], since=SINCE, listen=None, data_dir=None)
    assert check_config(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: OK, ")
    assert (f"{path}:14: notifications.templates.escalated.title: warning: this template"
            " prints step + 1") in err
