"""`ackd check-config` reports every problem of a file in one run, worded for the person who
fixes it: the schema's problems do not hide the cross-reference checks, pydantic's prefixes are
gone, an unknown key comes with the nearest known one."""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.config import build as config
from receiver.config.problems import keys_at
from receiver.core.errors import ConfigError, ConfigProblem
from tests.harness import ROOT

MANY = "tests/config/many_mistakes.yaml"


def problems(path: str | Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ=environ or {})
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


def test_every_problem_in_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert problems(MANY) == [
        "3: users[0].contacts[0].dealy: unknown key (did you mean 'delay'?)",
        "16: policies[0].steps[1].after: not a duration: '5 minutes'"
        " (use e.g. 30s, 5m, 1h30m, 2d)",
        "9: schedules[0].layers[0].rotations[0].users[1]: unknown user 'zed'",
        "17: policies[0].steps[2].notify[0].user: unknown user 'bob'",
        "16: policies[0].steps[1].notify[0].oncall: team 'ops' is on schedule 'ops', which has"
        " no layer 'tertiary': the step would page nobody (route gives it policy 'standard')",
        "23: route.routes[0].matchers[0]: invalid regex in 'team=~\"(payments\"': missing ):"
        " (payments",
        "24: route.routes[0].team: unknown team 'payments'",
    ]


def test_check_config_shows_them_all(monkeypatch: pytest.MonkeyPatch) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "check-config", MANY], cwd=ROOT,
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"{MANY}: 7 problem(s)"
    assert "Value error" not in result.stderr


def test_a_pruned_item_keeps_the_paths_of_those_after_it(tmp_path: Path) -> None:
    """users[0] breaks the schema (no contacts) and is left out of the cross-checks: users[2]
    is still called users[2], on its own line, and nobody's reference to ana is 'unknown'."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "users:\n"
        "  - {name: ana}\n"
        "  - {name: bo, contacts: [{url: 'json://127.0.0.1:1/b'}]}\n"
        "  - {name: cy, contacts: [{url: 'nope://x'}]}\n"
        "teams: [{name: ops, lead: ana}]\n"
        "policies: [{name: p, steps: [{notify: [{user: ana}, {user: zed}]}]}]\n"
        "route: {team: ops, policy: p, severity: SEV2}\n"
    )
    found = problems(path)
    assert found[0] == "2: users[0].contacts: required key is missing"
    assert found[1].startswith("4: users[2].contacts[0].url: ")
    assert found[2:] == ["6: policies[0].steps[0].notify[1].user: unknown user 'zed'"]


def test_unset_variables_come_with_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "users: [{name: ana, contacts: [{url: '${ANA_URL}'}]}]\n"
        "teams: [{name: ops}]\n"
        "policies: [{name: p, steps: [{notify: [{user: ana}], afterr: 1m}]}]\n"
        "route: {team: ops, policy: p, severity: SEV2}\n"
    )
    assert problems(path) == [
        "1: users[0].contacts[0].url: environment variable ANA_URL is not set",
        "3: policies[0].steps[0].afterr: unknown key (did you mean 'after'?)",
    ]


@pytest.mark.parametrize(
    ("loc", "some"),
    [
        ((), "policies"),
        (("route",), "continue"),
        (("route", "routes", 0, "routes", 1), "matchers"),
        (("policies", 0, "steps", 2, "notify", 0), "oncall"),
        (("notifications", "templates", "triggered"), "title"),
        (("users", 0, "contacts", 1), "delay"),
    ],
)
def test_keys_at_follows_the_schema(loc: tuple[int | str, ...], some: str) -> None:
    assert some in keys_at(loc)


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*at, i))
    return found


EXAMPLE = yaml.safe_load((ROOT / "config.example.yaml").read_text())
EXAMPLE_PATHS = [p for p in _paths(EXAMPLE) if p]
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "x", "5 minutes", "SEV9"]),
    st.lists(st.integers(0, 2), max_size=2), st.dictionaries(st.sampled_from(["a", "name"]),
                                                             st.text(max_size=3), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(EXAMPLE_PATHS), st.booleans(), JUNK), max_size=6))
def test_any_damage_is_reported_never_raised(
    damage: list[tuple[tuple[Any, ...], bool, Any]],
) -> None:
    """Whatever is broken or removed, loading ends in a Config or a ConfigError whose every
    problem names a key of the file; pruning never raises anything else."""
    data = copy.deepcopy(EXAMPLE)
    for path, delete, junk in damage:
        parent = data
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            with contextlib.suppress(KeyError, IndexError, TypeError):
                if delete and isinstance(parent, dict):
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = junk
    found = _problems_of(yaml.safe_dump(data))
    assert found is None or found  # loaded, or an error naming at least one problem
    assert all(p.file == "c.yaml" and p.key and p.message for p in found or ())


def _problems_of(text: str) -> list[ConfigProblem] | None:
    try:
        config.parse("c.yaml", text, environ={})
    except ConfigError as exc:
        return exc.problems
    return None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("teams: &x [*x]\n", "c.yaml:1: teams[0]: an alias to a value that contains it"),
        ("teams: " + "[" * 3000 + "]" * 3000 + "\n",
         "c.yaml: (syntax): nested deeper than 64 levels"),
        ("teams: " + "[" * 80 + "]" * 80 + "\n",
         "c.yaml:1: teams" + "[0]" * 64 + ": nested deeper than 64 levels or more than"
         " 200000 values"),
    ],
    ids=["alias to itself", "deeper than the parser goes", "deeper than 64"],
)
def test_pathological_yaml_is_a_problem_not_a_crash(text: str, expected: str) -> None:
    found = _problems_of(text)
    assert found is not None
    assert str(found[0]) == expected


def test_a_bad_schedule_zone_does_not_hide_the_rest_of_the_schedule(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    schedule = data["schedules"][0]
    schedule["timezone"] = "Mars/Olympus_Mons"
    schedule["layers"][0]["rotations"][0]["users"].append("zed")
    path = tmp_path / "ackd.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    found = problems(path, environ={"ACKD_WEBHOOK_TOKEN": "t", "ACKD_API_TOKEN": "t"})
    assert any("schedules[0].timezone: unknown IANA time zone" in p for p in found), found
    assert any("schedules[0].layers[0].rotations[0].users[" in p and "unknown user 'zed'" in p
               for p in found), found


def check_config(*argv: str, env: dict[str, str] | None = None,
                 cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`ackd check-config` in an environment without the example's ACKD_ variables, plus
    `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACKD_")}
    return subprocess.run(
        [sys.executable, "-m", "receiver", "check-config", *argv], cwd=cwd,
        capture_output=True, text=True, check=False, env={**clean, **(env or {})},
    )


REFUSED = ("refusing to listen on 0.0.0.0:9095 with secrets published in config.example.yaml"
           " or deploy/ (webhook.bearer_token, api token of token 'ops-cli'): set"
           " ACKD_WEBHOOK_TOKEN and"
           " set ACKD_API_TOKEN, or listen on 127.0.0.1")
SECRETS = {"ACKD_WEBHOOK_TOKEN": "a-webhook-token-of-our-own",
           "ACKD_API_TOKEN": "an-api-token-of-our-own"}


def test_check_config_takes_serves_flags_and_refuses_what_serve_refuses() -> None:
    """The example's published tokens are refused beyond loopback by `ackd serve`: with the
    same --listen, check-config fails on them, naming the flag; with the variables that
    replace them set, it passes."""
    refused = check_config("config.example.yaml", "--listen", "0.0.0.0:9095",
                           "--data-dir", "/var/lib/ackd")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"config.example.yaml: --listen: {REFUSED}", "config.example.yaml: 1 problem(s)"]
    passed = check_config("config.example.yaml", "--listen", "0.0.0.0:9095",
                          "--data-dir", "/var/lib/ackd", env=SECRETS)
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout == "config.example.yaml: OK\n"


def test_check_config_names_a_bad_flag_beside_the_files_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config.example.yaml").read_text().replace(
        "listen: 127.0.0.1:9095", "listen: 127.0.0.1:port"))
    result = check_config(str(bad), "config.example.yaml", "--listen", "9095")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{bad}:8: listen: listen must be HOST:PORT, got '127.0.0.1:port'",
        f"{bad}: --listen: listen must be HOST:PORT, got '9095'",
        f"{bad}: 2 problem(s)",
        "config.example.yaml: --listen: listen must be HOST:PORT, got '9095'",
        "config.example.yaml: 1 problem(s)",
    ]


def test_check_config_refuses_what_serve_refuses_from_the_file_alone(tmp_path: Path) -> None:
    """Listening beyond loopback set in the file (or by a variable in it): the problem is at
    the file's `listen`, and names the variable that set it."""
    text = (ROOT / "config.example.yaml").read_text()
    wide = tmp_path / "wide.yaml"
    wide.write_text(text.replace("listen: 127.0.0.1:9095", "listen: 0.0.0.0:9095"))
    result = check_config(str(wide))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == f"{wide}:8: listen: {REFUSED}"
    from_env = tmp_path / "env.yaml"
    from_env.write_text(text.replace("listen: 127.0.0.1:9095", "listen: ${ACKD_LISTEN}"))
    result = check_config(str(from_env), env={"ACKD_LISTEN": "0.0.0.0:9095"})
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == \
        f"{from_env}:8: listen: {REFUSED} (from ${{ACKD_LISTEN}})"
    assert check_config(str(from_env), env={"ACKD_LISTEN": "127.0.0.1:9095"}).returncode == 0


@pytest.mark.parametrize(
    ("line", "environ", "expected"),
    [
        ("listen: ${ACKD_LISTEN}", {"ACKD_LISTEN": "nowhere"},
         "c.yaml:8: listen: listen must be HOST:PORT, got 'nowhere' (from ${ACKD_LISTEN})"),
        ("listen: ${HOST}:${PORT}", {"HOST": "127.0.0.1", "PORT": "x"},
         "c.yaml:8: listen: listen must be HOST:PORT, got '127.0.0.1:x' (from ${HOST}, ${PORT})"),
        ("listen: ${HOST:-127.0.0.1}:x", {},  # a default is the file's own text
         "c.yaml:8: listen: listen must be HOST:PORT, got '127.0.0.1:x'"),
        ("listen: ${HOST}:${PORT}", {"HOST": "127.0.0.1"},
         "c.yaml:8: listen: environment variable PORT is not set"),
    ],
    ids=["one variable", "two", "a default", "one unset"],
)
def test_a_problem_in_a_value_a_variable_set_names_the_variable(
    line: str, environ: dict[str, str], expected: str,
) -> None:
    text = (ROOT / "config.example.yaml").read_text().replace(
        "listen: 127.0.0.1:9095", line)
    with pytest.raises(ConfigError) as caught:
        config.parse("c.yaml", text, environ={**SECRETS, **environ})
    assert str(caught.value.problems[0]) == expected


def test_check_config_reads_a_secret_file_as_serve_does(tmp_path: Path) -> None:
    """A *_file key names a file relative to the config's directory: check-config reads it
    (a missing one is a problem at that key), and a published token in it is refused beyond
    loopback as an inline one is."""
    text = (ROOT / "config.example.yaml").read_text().replace(
        "bearer_token: ${ACKD_WEBHOOK_TOKEN:-change-me}",
        "bearer_token_file: secrets/webhook-token")
    (tmp_path / "ackd.yaml").write_text(text)
    missing = check_config("ackd.yaml", cwd=tmp_path)
    assert missing.returncode == 1
    line = 1 + text.splitlines().index("  bearer_token_file: secrets/webhook-token")
    assert missing.stderr.splitlines()[0] == (f"ackd.yaml:{line}: webhook.bearer_token_file: "
                                              "[Errno 2] No such file or directory: "
                                              "'secrets/webhook-token'")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "webhook-token").write_text("change-me\n")
    assert check_config("ackd.yaml", cwd=tmp_path).returncode == 0  # on loopback
    wide = check_config("ackd.yaml", "--listen", "[::]:9095", cwd=tmp_path,
                        env={"ACKD_API_TOKEN": "an-api-token-of-our-own"})
    assert wide.returncode == 1
    assert wide.stderr.splitlines()[0] == (
        "ackd.yaml: --listen: refusing to listen on :::9095 with secrets published in"
        " config.example.yaml or deploy/ (webhook.bearer_token): set ACKD_WEBHOOK_TOKEN, or"
        " listen on 127.0.0.1")


def test_check_config_refuses_regexes_alertmanager_refuses(tmp_path: Path) -> None:
    """Route matchers are RE2's regexes, as in Alertmanager: a backreference and 5,000 nested
    groups are problems with their line and key (not a traceback), `(a|aa)*c` is fine."""
    text = (ROOT / "config.example.yaml").read_text()
    for old, new in [
        ("""'alertname=~"Payment.*Down"'""", """'alertname=~"(Pay)ment\\\\1"'"""),
        ("""'env="prod"'""", "'env=~" + "(" * 5000 + ")" * 5000 + "'"),
        ("""'namespace=~"kube-.*|monitoring"'""", """'namespace=~"(a|aa)*c"'"""),
    ]:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "(Pay)ment" in row)
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "check-config", str(path)], cwd=ROOT,
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 1, result.stdout
    lines = result.stderr.splitlines()
    assert lines[-1] == f"{path}: 2 problem(s)", result.stderr
    assert any(row.startswith(f"{path}:{line}: ") and "matchers[0]: invalid regex in" in row
               and row.endswith(": invalid escape sequence: \\1") for row in lines), lines
    assert any(row.startswith(f"{path}:{line}: ") and "matchers[1]: invalid regex in" in row
               and row.endswith(": nests too deeply (more than 1000 levels of groups)")
               for row in lines), lines
    assert "Traceback" not in result.stderr


def test_a_wrong_value_is_shown_but_never_a_secret_written_as_a_number(tmp_path: Path) -> None:
    """pydantic's own messages get what the line said (", got 'maybe'"), except where the key
    wants text: a token written as a number stays out of CI logs."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "teams: [{name: ops}]\n"
        "api: {tokens: [{name: x, token: 987654321}]}\n"
        "notifications: {workers: 0}\n"
        "severities: [{name: SEV1, urgency: hgih}]\n"
        "users: [{name: ana, contacts: [{url: 'json://127.0.0.1:1/a'}]}]\n"
        "policies: [{name: p, steps: [{notify: [{user: ana}]}]}]\n"
        "route: {team: ops, policy: p, severity: SEV1}\n"
    )
    found = problems(path)
    assert "3: notifications.workers: Input should be greater than or equal to 1, got 0" in found
    assert "4: severities[0].urgency: Input should be 'high' or 'low', got 'hgih'" in found
    assert "2: api.tokens[0].token: Input should be a valid string" in found
    assert not any("987654321" in p for p in found), found


def test_check_config_reports_an_unusable_url_once() -> None:
    result = check_config("tests/config/bad/bad_apprise_url.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "tests/config/bad/bad_apprise_url.yaml:5: users[0].contacts[0].url: Apprise cannot use"
        " this URL: unknown scheme 'nosuchscheme'",
        "tests/config/bad/bad_apprise_url.yaml: 1 problem(s)",
    ]


def test_a_secret_in_the_wrong_place_is_not_echoed(tmp_path: Path) -> None:
    """A DSN, user:password, a bare password or a URL written where a mapping or a list
    belongs: check-config's output goes to CI logs, so the problem says what kind of value the
    line holds, never the value."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "storage:\n"
        "  postgres: postgresql://ackd:hunter1secret@db/ackd\n"
        "webhook:\n"
        "  basic_auth: hunter2secret\n"
        "links: 12345678\n"
        "teams: [{name: ops}]\n"
        "channels: [{name: c, urls: 'slack://T1/B2/hunter3secret'}]\n"
        "users: [{name: ana, contacts: [{url: 'json://127.0.0.1:1/a'}]}]\n"
        "policies: [{name: p, steps: [{notify: [{user: ana}]}]}]\n"
        "route: {team: ops, policy: p, severity: SEV1}\n"
    )
    found = problems(path)
    assert found == [
        "2: storage.postgres: must be a mapping of keys, not a single text value",
        "4: webhook.basic_auth: must be a mapping of keys, not a single text value",
        "5: links: must be a mapping of keys, not a number",
        "7: channels[0].urls: must be a list, not a single text value (one item is [item])",
    ]
    assert not any("hunter" in p or "12345678" in p for p in found)
