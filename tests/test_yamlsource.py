from __future__ import annotations

import datetime as dt

import pytest

from receiver.config.yamlsource import load, render_path
from receiver.core.errors import ConfigError

DOC = """\
listen: 127.0.0.1:9095
webhook:
  bearer_token: ${TOKEN}
  other: ${MISSING:-fallback}
users:
  - name: ana
    contacts:
      - url: json://x
start: 2026-01-05T09:00:00
"""


def test_lines_of_every_key_and_item() -> None:
    located = load("c.yaml", DOC, {"TOKEN": "s3cret"})
    assert located.line(("listen",)) == 1
    assert located.line(("webhook", "bearer_token")) == 3
    assert located.line(("users", 0, "contacts", 0, "url")) == 8
    assert located.line(("users", 0, "nonexistent")) == 6  # nearest ancestor
    assert located.data["webhook"] == {"bearer_token": "s3cret", "other": "fallback"}
    assert located.data["start"] == dt.datetime(2026, 1, 5, 9, 0)


def test_environment_is_never_parsed_as_yaml() -> None:
    located = load("c.yaml", "a: ${X}\n", {"X": "{b: [1, 2]}\nc: d"})
    assert located.data == {"a": "{b: [1, 2]}\nc: d"}


def test_empty_variable_takes_the_default() -> None:
    assert load("c.yaml", "a: ${X:-dflt}\n", {"X": ""}).data == {"a": "dflt"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: ${NOPE}\n", "c.yaml:1: a: environment variable NOPE is not set"),
        ("a: 1\na: 2\n", "c.yaml:2: a: duplicate key"),
        ("a: [1, 2\n", "c.yaml:2: (syntax): expected ',' or ']', but got '<stream end>'"
         " (while parsing a flow sequence that began on line 1)"),
    ],
)
def test_errors_name_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load("c.yaml", text, {})
    assert str(caught.value) == expected


@pytest.mark.parametrize(
    ("path", "rendered"),
    [((), "(top level)"), (("a",), "a"), (("a", 0, "b"), "a[0].b"), (("a", "b"), "a.b")],
)
def test_render_path(path: tuple[str | int, ...], rendered: str) -> None:
    assert render_path(path) == rendered
