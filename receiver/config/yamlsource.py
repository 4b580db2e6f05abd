"""YAML with positions: load a document into plain data plus a map from key paths to lines.

Config errors must name the file, the line and the key. PyYAML's composed node tree carries
marks; we walk it once, building the data and recording where every path came from. `${VAR}`
and `${VAR:-default}` are expanded in string scalars only (never in keys, never by re-parsing
text), so an environment value cannot inject YAML structure. A problem at a value that a
variable set says so (`(from ${VAR})`): the file's line alone does not show what was wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from receiver.core.errors import ConfigError, ConfigProblem

Path = tuple[str | int, ...]
# An alias can make a document contain itself (`a: &x [*x]`) or expand exponentially: bound
# the depth and the number of values walked, far beyond any real configuration.
MAX_DEPTH = 64
MAX_VALUES = 200_000
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Located:
    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    walked: int = 0
    inside: set[int] = field(default_factory=set)  # the collections being walked, by id
    # The variables whose values a string took, by its path (only those the environment set).
    variables: dict[Path, tuple[str, ...]] = field(default_factory=dict)

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def problem(self, path: Path, message: str) -> ConfigProblem:
        names = self.variables.get(path)
        if names:
            message += f" (from {', '.join(f'${{{name}}}' for name in names)})"
        return ConfigProblem(self.file, self.line(path), render_path(path), message)


def render_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def load(
    file: str,
    text: str,
    environ: Mapping[str, str] | None = None,
    collect: list[ConfigProblem] | None = None,
) -> Located:
    """The document with its lines. A syntax error raises ConfigError; so do unset variables,
    unless `collect` is given: then they are added to it and read as empty strings."""
    env = os.environ if environ is None else environ
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError as exc:
        too_deep = ConfigProblem(file, None, "(syntax)", f"nested deeper than {MAX_DEPTH} levels")
        raise ConfigError([too_deep]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        context, begun = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        unclosed = context is not None and ("flow" in context or "quoted" in context)
        if unclosed and begun is not None and begun.line + 1 != line:
            # An unclosed [, { or quote is found lines later, at the next key (or the end of
            # the file): say where it began. A block mapping's start would only be noise.
            problem = f"{problem} ({context} that began on line {begun.line + 1})"
        raise ConfigError([ConfigProblem(file, line, "(syntax)", problem)]) from exc
    located = Located(file, None)
    problems: list[ConfigProblem] = []
    located.data = {} if node is None else _walk(node, (), located, env, problems)
    if located.walked > MAX_VALUES:
        # What was left out is None all over: the schema would add a problem per key.
        raise ConfigError(problems)
    if collect is not None:
        collect.extend(problems)
    elif problems:
        raise ConfigError(problems)
    return located


def _walk(
    node: yaml.Node, path: Path, out: Located, env: Mapping[str, str], problems: list[ConfigProblem]
) -> Any:
    out.lines.setdefault(path, node.start_mark.line + 1)
    out.walked += 1
    if len(path) > MAX_DEPTH or out.walked > MAX_VALUES:
        if out.walked <= MAX_VALUES + 1:  # one problem, not one per value past the limit
            problems.append(out.problem(path, f"nested deeper than {MAX_DEPTH} levels or more "
                                        f"than {MAX_VALUES} values"))
            out.walked = MAX_VALUES + 2
        return None
    if isinstance(node, yaml.CollectionNode):
        if id(node) in out.inside:
            problems.append(out.problem(path, "an alias to a value that contains it"))
            return None
        out.inside.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return _walk_mapping(node, path, out, env, problems)
            return [_walk(child, (*path, i), out, env, problems)
                    for i, child in enumerate(node.value)]
        finally:
            out.inside.discard(id(node))
    try:
        value = yaml.SafeLoader("").construct_object(node)
    except (ValueError, OverflowError, yaml.YAMLError) as exc:
        # A scalar that looks like a date or a number and is none (`2026-13-05T09:00:00`).
        problems.append(out.problem(path, _unreadable(node, exc)))
        return None
    if isinstance(value, str):
        return _expand(value, path, out, env, problems)
    return value


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    text = str(node.value)
    shown = repr(text if len(text) <= 60 else text[:60] + "...")
    what = "date" if node.tag == "tag:yaml.org,2002:timestamp" else "value"
    reason = getattr(exc, "problem", None) or str(exc)
    return f"not a valid {what}: {shown} ({reason})"


def _walk_mapping(
    node: yaml.MappingNode,
    path: Path,
    out: Located,
    env: Mapping[str, str],
    problems: list[ConfigProblem],
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        child = (*path, key)
        out.lines[child] = key_node.start_mark.line + 1
        if key in result:
            problems.append(out.problem(child, "duplicate key"))
        result[key] = _walk(value_node, child, out, env, problems)
    return result


def _expand(
    value: str, path: Path, out: Located, env: Mapping[str, str], problems: list[ConfigProblem]
) -> str:
    used: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and (env[name] != "" or default is None):
            used.append(name)
            return env[name]
        if default is not None:
            return default
        problems.append(out.problem(path, f"environment variable {name} is not set"))
        return ""

    expanded = _ENV.sub(substitute, value)
    if used:
        out.variables[path] = tuple(dict.fromkeys(used))
    return expanded
