"""Schema errors a person can act on, and the rest of the file checked despite them.

pydantic stops at the schema: with one mistyped key nothing else of the file is checked, and
`ackd check-config` showed problems in rounds (fix one, see the next). So the parts that broke
the schema are pruned away (the bad key, so its default applies, or else the list item holding
it) until what remains validates, and the cross-reference checks run on that. Their paths
point into the pruned data: `Pruned.original` maps them back to the file. A reference to an
item pruned away is not reported again as "unknown".
"""

from __future__ import annotations

import copy
import difflib
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from receiver.config.schema import PATTERN_MEANING, ConfigSpec
from receiver.config.yamlsource import Located
from receiver.config.yamlsource import Path as KeyPath
from receiver.core.errors import ConfigProblem

MAX_ROUNDS = 20
# Builder messages that name a reference: cascades when the name was pruned away.
_REFERENCE = re.compile(r"^unknown (?:user|team|policy|schedule|channel|severity) '([^']*)'"
                        r"|has no layer '([^']*)'")


def schema_problems(located: Located, exc: ValidationError) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors():
        path = data_path(located.data, error["loc"])
        problems.append(located.problem(path, _message(error)))
    return problems


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        near = difflib.get_close_matches(key, keys_at(error["loc"][:-1]), n=1)
        return f"unknown key (did you mean {near[0]!r}?)" if near else "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        meaning = PATTERN_MEANING.get(str(error.get("ctx", {}).get("pattern")))
        if meaning is not None:
            return f"{meaning}, got {error.get('input')!r}"
    if kind in ("model_type", "dict_type"):  # pydantic names its class: say what was found
        return f"must be a mapping of keys, not {_kind_of(error.get('input'))}"
    if kind == "list_type":
        return f"must be a list, not {_kind_of(error.get('input'))} (one item is [item])"
    message = str(error["msg"])
    if kind in _SHOWS_INPUT:
        # "Input should be 'high' or 'low'" left the reader to find what the line said. A
        # message that says what it got already ("got a number with a fractional part")
        # gets the value after a colon, not a second "got".
        joined = ": " if ", got " in message else ", got "
        return f"{message}{joined}{_shown(error.get('input'))}"
    # Our own validators' messages are whole sentences; pydantic prefixes them.
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


# pydantic's own messages that do not say what they were given, for keys whose values are
# choices, numbers or flags. Not string_type: a token written as a number would be shown.
_SHOWS_INPUT = frozenset({
    "literal_error", "enum", "int_parsing", "int_type", "int_from_float", "float_parsing",
    "float_type", "bool_parsing", "bool_type", "greater_than", "greater_than_equal",
    "less_than", "less_than_equal",
})


def _shown(value: Any) -> str:
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, str):
        return _text(value)
    return _kind_of(value)


def _kind_of(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        # Never quoted: a DSN, a URL, user:password or a bare password written where a
        # mapping belongs ("postgres: postgresql://ackd:PASSWORD@db/ackd") was echoed into
        # the CI log that runs check-config; the problem's line points at it.
        return "a single text value"
    if isinstance(value, bool):
        return "a yes/no value"
    return "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"


# For a choice, a number or a flag a word is quoted back; other text is not, in case it is
# a secret in the wrong place.
_HARMLESS = re.compile(r"[\w.+-]{1,40}")


def _text(value: str) -> str:
    if not value:  # `scope: ""` read "a text of 0 characters (not shown: ...)"
        return "an empty value"
    if _HARMLESS.fullmatch(value):
        return repr(value)
    return f"a text of {len(value)} characters (not shown: it may hold a credential)"


def keys_at(loc: Iterable[int | str]) -> list[str]:
    """The keys the schema allows at `loc` (pydantic's location of a mapping)."""
    kind: Any = ConfigSpec
    for part in loc:
        kind = _inside(kind, part)
    model = _model(kind)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _inside(kind: Any, part: int | str) -> Any:
    """The type found at `part` inside a value of type `kind`; `kind` itself for pydantic's
    tags (a union member's or a validator's name), which are not in the data."""
    kind = _unwrap(kind)
    model = _model(kind)
    if model is not None and isinstance(part, str):
        for name, info in model.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return kind
    origin = get_origin(kind)
    if origin is list and isinstance(part, int):
        return get_args(kind)[0]
    if origin is dict:
        return get_args(kind)[1]
    return kind


def _unwrap(kind: Any) -> Any:
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(kind) if a is not type(None)]
            kind = members[0] if len(members) == 1 else kind
            if len(members) != 1:
                return kind
        else:
            return kind


def _model(kind: Any) -> type[BaseModel] | None:
    kind = _unwrap(kind)
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def data_path(data: Any, loc: tuple[int | str, ...]) -> KeyPath:
    """Drop pydantic's type tags from `loc`, keeping the keys and indexes that exist."""
    path: list[str | int] = []
    node = data
    for part in loc:
        inside_dict = isinstance(node, dict) and part in node
        if inside_dict or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and "[" not in part:
            path.append(part)  # a missing key: name it, there is nothing below to walk
            break
        else:
            continue
        path.append(part)
    return tuple(path)


@dataclass
class Pruned:
    """The file's data less what broke the schema, and how to find the file's paths again."""

    data: Any
    # Original path of a list -> original indexes of the items taken out of it.
    removed: dict[KeyPath, list[int]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # `name`s of the items taken out

    def original(self, path: KeyPath) -> KeyPath:
        out: list[str | int] = []
        for part in path:
            if isinstance(part, int):
                for gone in sorted(self.removed.get(tuple(out), ())):
                    part += gone <= part
            out.append(part)
        return tuple(out)

    def cascade(self, problem_message: str) -> bool:
        """Whether a builder message only repeats that a pruned item is missing."""
        found = _REFERENCE.search(problem_message)
        return found is not None and (found.group(1) or found.group(2)) in self.names

    def prune(self, errors: list[Any]) -> bool:
        """Take out what each error points at; False when nothing could be."""
        keys: list[KeyPath] = []
        items: list[KeyPath] = []
        for error in errors:
            path = data_path(self.data, error["loc"])
            parent = _at(self.data, path[:-1])
            if error["type"] != "missing" and path and isinstance(parent, dict) \
                    and path[-1] in parent:
                keys.append(path)  # without the bad key its default applies, if it has one
            elif (item := _enclosing_item(path)) is not None:
                items.append(item)
        for path in keys:
            parent = _at(self.data, path[:-1])
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        # Deepest first, and the last item of a list first: no index in the list moves.
        done: set[KeyPath] = set()
        for item in sorted(set(items), key=lambda p: (-len(p), -int(p[-1]))):
            if any(item[: len(d)] == d for d in done):
                continue
            parent = _at(self.data, item[:-1])
            index = int(item[-1])
            if isinstance(parent, list) and index < len(parent):
                taken = parent.pop(index)
                if isinstance(taken, dict) and isinstance(taken.get("name"), str):
                    self.names.add(taken["name"])
                where = self.original(item)
                self.removed.setdefault(where[:-1], []).append(int(where[-1]))
                done.add(item)
        return bool(keys or done)


def validate(located: Located) -> tuple[ConfigSpec | None, list[ConfigProblem], Pruned]:
    """The schema's problems (all of them, from the file as written) and a spec of what
    remains valid, or None if pruning could not get there (a required top-level key)."""
    pruned = Pruned(copy.deepcopy(located.data))
    try:
        return ConfigSpec.model_validate(located.data), [], pruned
    except ValidationError as exc:
        problems, errors = schema_problems(located, exc), exc.errors()
    for _ in range(MAX_ROUNDS):
        if not isinstance(pruned.data, dict) or not pruned.prune(errors):
            break
        try:
            return ConfigSpec.model_validate(pruned.data), problems, pruned
        except ValidationError as exc:
            errors = exc.errors()
    return None, problems, pruned


def _at(data: Any, path: KeyPath) -> Any:
    node = data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _enclosing_item(path: KeyPath) -> KeyPath | None:
    for end in range(len(path), 0, -1):
        if isinstance(path[end - 1], int):
            return path[:end]
    return None
