"""`ackd check-config` reports every problem of a file in one run, worded for the person who
fixes it: the schema's problems do not hide the cross-reference checks, pydantic's prefixes are
gone, an unknown key comes with the nearest known one."""

from __future__ import annotations

import contextlib
import copy
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
        "23: route.routes[0].matchers[0]: invalid regex in 'team=~\"(payments\"': missing ),"
        " unterminated subpattern at position 0",
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
