"""README.md's reference tables and config.example.yaml name what ackd has, no more, no less.

The command table against ackd's own argument parser, the HTTP endpoint table against the
routes its web app serves, and the example configuration against the config schema: each
read from the code, not copied, so a command, flag, route or key added, renamed or removed
without its line here fails. (The metrics table is test_deploy.py's, beside the rules.)
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import replace
from types import UnionType
from typing import Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from receiver.app.daemon import Daemon, build_web_app
from receiver.cli.main import _parser
from receiver.config import build as config_module
from receiver.config.schema import ConfigSpec
from tests.harness import ROOT, write_config

README = (ROOT / "README.md").read_text()
EXAMPLE = (ROOT / "config.example.yaml").read_text()
METHODS = ("GET", "POST", "PUT", "DELETE")


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def first_cells(text: str) -> list[str]:
    """The first cell of each row of the tables in `text` (the header rows left out)."""
    rows = [line.split(" | ", 1)[0].removeprefix("| ") for line in text.splitlines()
            if line.startswith("| `")]
    return [row.replace("\\|", "|") for row in rows]


# -- the command table ---------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001  # argparse lists its subcommands only here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Each command the parser takes, as its words (`("override", "add")`), with its parser;
    a command with subcommands is given as its subcommands only."""
    found = _subparsers(parser)
    if not found and prefix:
        yield prefix, parser
    for name, child in found.items():
        yield from commands(child, (*prefix, name))


def invocations(cell: str) -> list[tuple[tuple[str, ...], set[str]]]:
    """(command words, flags) of each `ackd ...` a cell shows: the words are those before
    the first argument or flag (`ackd override add SCHEDULE USER --from ISO`)."""
    found = []
    for invocation in re.findall(r"`ackd ([^`]+)`", cell):
        words = []
        for word in invocation.split():
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            words.append(word)
        found.append((tuple(words), set(re.findall(r"(--[a-z][a-z-]*)", invocation))))
    return found


def documented() -> list[tuple[tuple[str, ...], set[str]]]:
    """(command words, flags) of each `ackd ...` invocation the command table shows."""
    return [found for cell in first_cells(section("Command line")) for found in invocations(cell)]


def test_the_command_table_lists_every_command_ackd_takes() -> None:
    named = {words[: len(command)] for words, _ in documented()
             for command, _ in commands(_parser())}
    missing = [" ".join(c) for c, _ in commands(_parser()) if c not in named]
    assert not missing, f"README's command table lacks: {missing}"


def test_every_command_and_flag_the_table_names_is_one_ackd_takes() -> None:
    parsers = dict(commands(_parser()))
    top = {o for a in _parser()._actions for o in a.option_strings}  # noqa: SLF001
    assert len(documented()) > 30
    for words, flags in documented():
        command = next((c for c in parsers if words[: len(c)] == c), None)
        if command is None:
            assert flags <= top, (words, flags)  # `ackd --version`
            continue
        takes = {o for a in parsers[command]._actions for o in a.option_strings}  # noqa: SLF001
        assert flags <= takes | top, f"ackd {' '.join(command)} takes no {flags - takes - top}"


def test_the_table_reader_finds_commands_and_flags() -> None:
    cell = "`ackd override add S U --from ISO [--layer L]`, `ackd --version`, `ackd sink`"
    assert invocations(cell) == [(("override", "add"), {"--from", "--layer"}),
                                 ((), {"--version"}), (("sink",), set())]


# -- the endpoint table --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    """(method, path) of each route ackd's web app serves, from the app itself; HEAD (the
    router's twin of every GET) and the catch-alls for any other method left out."""
    home = tmp_path_factory.mktemp("served")
    loaded = config_module.load(write_config(home / "ackd.yaml", "127.0.0.1:9"))
    app = build_web_app(Daemon(replace(loaded, data_dir=home / "data")).services)
    return {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.method in METHODS and r.resource is not None}


def endpoints(cell: str) -> set[tuple[str, str]]:
    """(method, path) of each endpoint a first cell names: `GET`/`POST /l/{token}` is two,
    `POST /x/{id}/ack|resolve` one path per alternative; a query string is left out."""
    found: set[tuple[str, str]] = set()
    waiting: list[str] = []
    for part in re.findall(r"`([^`]+)`", cell):
        if part in METHODS:
            waiting.append(part)
            continue
        match = re.match(r"(GET|POST|PUT|DELETE) (/\S*)", part)
        if match is None:
            continue
        path = match[2].split("?", 1)[0]
        head, _, last = path.rpartition("/")
        for alternative in last.split("|"):
            found |= {(m, f"{head}/{alternative}") for m in (*waiting, match[1])}
        waiting = []
    return found


def _matches(path: str, route: str) -> bool:
    pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(route))
    return re.fullmatch(pattern, path) is not None


def test_the_endpoint_table_names_every_route_and_only_routes(
    served: set[tuple[str, str]],
) -> None:
    named = set().union(*(endpoints(c) for c in first_cells(section("HTTP endpoints"))))
    unknown = sorted(e for e in named
                     if not any(m == e[0] and _matches(e[1], p) for m, p in served))
    assert not unknown, f"README names endpoints ackd does not serve: {unknown}"
    missing = sorted(r for r in served
                     if not any(m == r[0] and _matches(p, r[1]) for m, p in named))
    assert not missing, f"README's endpoint table lacks: {missing}"


def test_the_endpoint_reader_splits_methods_and_alternatives() -> None:
    cell = "`GET`/`POST /l/{token}`, `POST /i/{id}/ack|resolve`, `GET /r?since=30d`"
    assert endpoints(cell) == {("GET", "/l/{token}"), ("POST", "/l/{token}"),
                               ("POST", "/i/{id}/ack"), ("POST", "/i/{id}/resolve"),
                               ("GET", "/r")}
    assert _matches("/i/{id}/ack", "/i/{id}/{action}")
    assert not _matches("/i/{id}/ack/x", "/i/{id}/{action}")


# -- config.example.yaml against the schema ------------------------------------------------------


def _models(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    if get_origin(annotation) in (list, dict, Union, UnionType) or get_args(annotation):
        for argument in get_args(annotation):
            yield from _models(argument)


def schema_keys(
    model: type[BaseModel] = ConfigSpec, at: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every key path the schema takes (a list's items under the list's key)."""
    for name, field in model.model_fields.items():
        path = (*at, field.alias or name)
        yield path
        for inner in _models(field.annotation):
            if inner is not model:  # a route's `routes` are routes again
                yield from schema_keys(inner, path)


def blocks(text: str) -> dict[str, str]:
    """Each top-level key's part of the example: the comment lines just above it and its
    lines, commented ones included (a key the example leaves out is shown in a comment)."""
    found: dict[str, list[str]] = {}
    comments: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        key = re.match(r"([a-z_]+):", line)
        if key:
            current = found[key[1]] = [*comments, line]
            comments = []
        elif line.startswith("#"):
            comments.append(line)
        elif current is not None:
            current.extend([*comments, line])
            comments = []
    return {k: "\n".join(v) for k, v in found.items()}


def documented_in(block: str, key: str) -> bool:
    """`key:` written out in the block (`key: value`, `{key: value}`, `# key: ...`), or a
    secret's `*_file` twin is: the example's header says every secret has one."""
    twin = key.removesuffix("_file") if key.endswith("_file") else f"{key}_file"
    return any(re.search(rf"(^|[\s{{,#`]){re.escape(k)}:", block, re.MULTILINE)
               for k in (key, twin))


def test_the_example_configuration_shows_every_key_the_schema_takes() -> None:
    parts = blocks(EXAMPLE)
    missing = [".".join(p) for p in schema_keys()
               if p[0] not in parts or not documented_in(parts[p[0]], p[-1])]
    assert not missing, f"config.example.yaml does not show: {missing}"
    assert len(list(schema_keys())) > 100


def test_the_example_reader_finds_commented_keys_in_their_section() -> None:
    text = "# above\nwebhook:\n  # basic_auth: {username: a}\n  token: x\nlinks:\n  ttl: 1h\n"
    parts = blocks(text)
    assert documented_in(parts["webhook"], "username")
    assert documented_in(parts["webhook"], "token_file")
    assert documented_in(parts["webhook"], "username_file")
    assert not documented_in(parts["webhook"], "auth")
    assert not documented_in(parts["links"], "username")
    assert "# above" in parts["webhook"]


def test_the_readme_config_keys_are_the_schemas() -> None:
    """Every dotted config key the README names (`storage.postgres`, `links.secret_file`,
    `webhook.max_alerts`) is a key path of the schema."""
    known = {".".join(p) for p in schema_keys()}
    tops = {p[0] for p in schema_keys()} - {"route"}
    named = {k for k in re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", README)
             if k.split(".")[0] in tops}
    assert len(named) > 5
    assert named <= known, sorted(named - known)

