"""Config fixtures: every good file loads; every bad file fails with the exact error it names.

Each file under tests/config/bad/ starts with `# expect: FILE:LINE: KEY: MESSAGE` (the whole
first problem) or `# expect-start:` (a prefix, where the tail is a library's wording).
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from receiver.config import build as config
from receiver.core.access import Principal, PrincipalKind, Scope
from receiver.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
GOOD = sorted((ROOT / "tests/config/good").glob("*.yaml"))
BAD = sorted((ROOT / "tests/config/bad").glob("*.yaml"))


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture(autouse=True)
def _cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("path", [*GOOD, ROOT / "config.example.yaml"], ids=lambda p: p.name)
def test_good_configs_load(path: Path) -> None:
    loaded = config.load(path.relative_to(ROOT))
    assert loaded.teams
    assert loaded.policies


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_configs_name_file_line_and_key(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    kind, _, expected = first.removeprefix("# ").partition(": ")
    with pytest.raises(ConfigError) as caught:
        config.load(relative(path))
    messages = [str(p) for p in caught.value.problems]
    if kind == "expect":
        assert expected in messages
    else:
        assert any(m.startswith(expected) for m in messages), messages


def test_example_config_is_what_the_readme_says() -> None:
    loaded = config.load("config.example.yaml", environ={})
    assert (loaded.listen_host, loaded.listen_port) == ("127.0.0.1", 9095)
    assert loaded.webhook_auth.bearer_token == "change-me"
    assert [s.name for s in loaded.severities] == ["SEV1", "SEV2", "SEV3", "SEV4"]
    assert loaded.stakeholders["SEV1"] == ("exec-status",)
    assert (loaded.notifications.bundle_window, loaded.notifications.max_hold) == \
        (timedelta(seconds=30), timedelta(seconds=5))


def test_environment_overrides_the_default() -> None:
    loaded = config.load("config.example.yaml", environ={"ACKD_WEBHOOK_TOKEN": "prod-token"})
    assert loaded.webhook_auth.bearer_token == "prod-token"


def test_secrets_come_from_files_and_stay_out_of_repr() -> None:
    loaded = config.load("tests/config/good/secrets_from_files.yaml")
    assert loaded.webhook_auth.bearer_token == "tok3n"
    assert loaded.webhook_auth.basic_password == "pw"
    assert loaded.api_tokens == {"api": Principal("cli", Scope.ADMIN, PrincipalKind.TOKEN)}
    assert loaded.link_secret == b"link"
    assert loaded.users["ana"].contacts[0].url == "json://127.0.0.1:9099/from-file"
    text = repr(loaded)
    for secret in ("tok3n", "'pw'", "from-file", "b'link'"):
        assert secret not in text


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    broken = tmp_path / "c.yaml"
    broken.write_text(
        "teams: [{name: ops}]\n"
        "users: [{name: ana, contacts: [{url: 'json://127.0.0.1:1/a'}]}]\n"
        "policies: [{name: p, steps: [{notify: [{user: zed}]}]}]\n"
        "route: {team: nope, policy: p, severity: SEV9}\n"
    )
    with pytest.raises(ConfigError) as caught:
        config.load(broken)
    keys = sorted(p.key for p in caught.value.problems)
    assert keys == ["policies[0].steps[0].notify[0].user", "route.severity", "route.team"]


def test_check_config_cli_exit_codes() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "receiver", "check-config", "config.example.yaml"],
        capture_output=True, text=True, check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "config.example.yaml: OK" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "receiver", "check-config", relative(BAD[0]), relative(BAD[1])],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.count("problem(s)") == 2


def test_a_check_that_breaks_is_a_problem_of_the_file_not_a_traceback(tmp_path: Path) -> None:
    """A value that broke a check in a way no check foresaw (a regex nested 5,000 deep was a
    RecursionError) still ends check-config with the file named and exit 1."""
    broken = tmp_path / "c.yaml"
    nested = "(" * 5000 + "a" + ")" * 5000
    broken.write_text(
        (ROOT / "tests/config/bad/bad_matcher.yaml").read_text().replace("(unclosed", nested))
    with pytest.raises(ConfigError) as caught:
        config.load(broken)
    assert [p.file for p in caught.value.problems] == [str(broken)]
    run = subprocess.run(
        [sys.executable, "-m", "receiver", "check-config", str(broken),
         relative(ROOT / "tests/config/bad/impossible_date.yaml")],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "impossible_date.yaml:5: schedules[0].layers[0].rotations[0].start: not a valid " \
        "date: '2026-02-30T09:00:00'" in run.stderr


def test_an_alias_bomb_is_one_problem_not_one_per_key() -> None:
    with pytest.raises(ConfigError) as caught:
        config.load("tests/config/bad/alias_bomb.yaml")
    [problem] = caught.value.problems
    assert problem.message == "nested deeper than 64 levels or more than 200000 values"
