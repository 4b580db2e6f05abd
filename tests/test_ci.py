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


# Modules that start an ackd process but assert nothing on real time: hypothesis against its
# answers (test_fuzz), what its log lines say (test_oneline). They run beside the serial ones.
UNTIMED_STARTERS = {"test_fuzz.py", "test_oneline.py"}
STARTS_A_PROCESS = re.compile(r"\bAckd\(|\backd_for\(|\bAlertmanager\(|\bPrometheus\(")


def test_every_module_that_starts_processes_runs_serially() -> None:
    """make test runs `-m serial` beside the rest (tests/conftest.py): a new end-to-end module
    missing from SERIAL would share the cores with another and see its timers late."""
    from tests.conftest import SERIAL

    modules = {path.name: path.read_text() for path in (ROOT / "tests").glob("test_*.py")}
    assert modules.keys() >= SERIAL, SERIAL - modules.keys()
    starters = {name for name, text in modules.items() if STARTS_A_PROCESS.search(text)}
    assert starters - UNTIMED_STARTERS <= SERIAL, (starters - UNTIMED_STARTERS) - SERIAL


def test_the_readme_set_up_names_the_packages_make_run_and_the_quick_start_need() -> None:
    """A fresh Debian 12 has python3 but not ensurepip: `make run` failed at `python3 -m venv`
    for a reader who installed only what the heading named (Python, make)."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Set up")
    section = readme[start:readme.index("\n## ", start + 1)]
    install = re.search(r"apt-get install ([a-z0-9 .-]+)`", section)
    assert install is not None, section
    assert set(install[1].split()) >= {"make", "python3-venv", "curl"}
