"""YAML with positions: load a document into plain data plus a map from key paths to lines.

Config errors must name the file, the line and the key. PyYAML's composed node tree carries
marks; we walk it once, building the data and recording where every path came from. `${VAR}`
and `${VAR:-default}` are expanded in string scalars only (never in keys, never by re-parsing
text), so an environment value cannot inject YAML structure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from receiver.errors import ConfigError, ConfigProblem

Path = tuple[str | int, ...]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass
class Located:
    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def problem(self, path: Path, message: str) -> ConfigProblem:
        return ConfigProblem(self.file, self.line(path), render_path(path), message)


def render_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def load(file: str, text: str, environ: Mapping[str, str] | None = None) -> Located:
    env = os.environ if environ is None else environ
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(file, line, "(syntax)", problem)]) from exc
    located = Located(file, None)
    problems: list[ConfigProblem] = []
    located.data = {} if node is None else _walk(node, (), located, env, problems)
    if problems:
        raise ConfigError(problems)
    return located


def _walk(
    node: yaml.Node, path: Path, out: Located, env: Mapping[str, str], problems: list[ConfigProblem]
) -> Any:
    out.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        return _walk_mapping(node, path, out, env, problems)
    if isinstance(node, yaml.SequenceNode):
        return [_walk(child, (*path, i), out, env, problems) for i, child in enumerate(node.value)]
    value = yaml.SafeLoader("").construct_object(node)
    if isinstance(value, str):
        return _expand(value, path, out, env, problems)
    return value


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
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and (env[name] != "" or default is None):
            return env[name]
        if default is not None:
            return default
        problems.append(out.problem(path, f"environment variable {name} is not set"))
        return ""

    return _ENV.sub(substitute, value)
