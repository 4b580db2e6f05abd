"""CI's script: it installs what the suite needs on a fresh Debian machine and stops nothing it
did not start (no process is ever killed by name)."""

from __future__ import annotations

import re

import pytest

from tests.harness import ROOT

SCRIPTS = [ROOT / ".ci/run", ROOT / "Makefile", *sorted((ROOT / "tests").glob("*.py"))]
KILL_BY_NAME = re.compile(r"\b(pkill|killall)\b")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_is_killed_by_name(path: str) -> None:
    text = (ROOT / path).read_text()
    if path == ROOT / "tests/test_ci.py":
        text = text.replace(KILL_BY_NAME.pattern, "")
    assert not KILL_BY_NAME.search(text)


@pytest.mark.parametrize(
    "package", ["make", "curl", "python3-venv", "prometheus-alertmanager", "prometheus", "systemd",
                "chromium", "postgresql"]
)
def test_ci_installs_what_the_suite_needs(package: str) -> None:
    assert re.search(rf"missing\+=\({re.escape(package)}\)", (ROOT / ".ci/run").read_text())
