"""Alertmanager's label matchers: `name="value"`, `name!="value"`, `name=~"re"`, `name!~"re"`.

Routes are written in Alertmanager's own syntax so that a team can copy its `matchers:` lists
from alertmanager.yml unchanged, and they must mean exactly what they mean there: a missing
label equals "", and regexes match the whole value, never a substring.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field
from enum import StrEnum

from receiver.core.frozen import frozen

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Longest first, so that `=~` is not read as `=` followed by a value starting with `~`.
_OPERATORS = ("=~", "!~", "!=", "=")
_NAME_ENDS = frozenset("=!~\"") | frozenset(" \t\r\n")
_UNESCAPE = {"n": "\n", '"': '"', "\\": "\\"}


class MatcherError(ValueError):
    """A matcher's text cannot be parsed, or its regex does not compile."""


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@frozen
class Matcher:
    """One condition on one label; the regex is compiled once, when the matcher is made."""

    name: str
    type: MatchType
    value: str
    regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if not self.name:
            raise MatcherError(f"empty label name in '{self}': a matcher needs a label name")
        object.__setattr__(self, "type", MatchType(self.type))
        if self.type in (MatchType.REGEX, MatchType.NOT_REGEX):
            object.__setattr__(self, "regex", _compile(self.value, str(self)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.regex is not None:
            # fullmatch is Alertmanager's `^(?:re)$` anchoring, without `$` accepting a final \n.
            return (self.regex.fullmatch(value) is not None) == (self.type is MatchType.REGEX)
        return (value == self.value) == (self.type is MatchType.EQUAL)

    def __str__(self) -> str:
        name = self.name if _NAME.fullmatch(self.name) else quote(self.name)
        return f"{name}{self.type}{quote(self.value)}"


def quote(value: str) -> str:
    """Double-quote a string as Alertmanager prints label values: escape `\\`, `"` and newline."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher as written in a `matchers:` list, e.g. `alertname=~"Payment.*"`."""
    name, rest = _parse_name(text)
    operator, rest = _parse_operator(rest, text)
    value = _parse_value(rest.strip(), text)
    if operator in (MatchType.REGEX, MatchType.NOT_REGEX):
        _compile(value, text)
    return Matcher(name, operator, value)


def parse_matchers(text: str) -> list[Matcher]:
    """Parse `{a="b", c=~"d"}` (braces optional, trailing comma allowed), as the CLI takes them."""
    body = text.strip()
    if body.startswith("{") != body.endswith("}"):
        raise MatcherError(
            f"unbalanced braces in '{text}': open with {{ and close with }}, or use neither"
        )
    if body.startswith("{"):
        body = body[1:-1]
    items = [item.strip() for item in _split_commas(body)]
    if items and not items[-1]:
        items.pop()
    if any(not item for item in items):
        raise MatcherError(f"empty matcher in '{text}': remove the doubled comma")
    return [parse_matcher(item) for item in items]


def _compile(value: str, shown: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise MatcherError(f"invalid regex in '{shown}': {exc}") from None


def _parse_name(text: str) -> tuple[str, str]:
    rest = text.lstrip()
    if rest.startswith('"'):
        name, rest = _read_quoted(rest, text)
        if not name:
            raise MatcherError(f"empty label name in '{text}': a matcher starts with a label name")
        return name, rest
    end = 0
    while end < len(rest) and rest[end] not in _NAME_ENDS:
        end += 1
    name = rest[:end]
    if not name:
        raise MatcherError(
            f"missing label name in '{text}': a matcher looks like alertname=X or team=~\"pay.*\""
            " (a label name, an operator, a value)"
        )
    if not _NAME.fullmatch(name):
        raise MatcherError(
            f"invalid label name in '{text}': {name} must match [a-zA-Z_][a-zA-Z0-9_]*"
            " (double-quote it to use other characters)"
        )
    return name, rest[end:]


def _parse_operator(rest: str, text: str) -> tuple[MatchType, str]:
    rest = rest.lstrip()
    for operator in _OPERATORS:
        if rest.startswith(operator):
            return MatchType(operator), rest[len(operator):]
    raise MatcherError(
        f"missing operator in '{text}': expected =, !=, =~ or !~ after the label name"
    )


def _parse_value(rest: str, text: str) -> str:
    if not rest.startswith('"'):
        if '"' in rest:
            raise MatcherError(
                f"stray double quote in '{text}': double-quote the whole value and escape"
                " quotes inside it with a backslash"
            )
        return rest
    value, after = _read_quoted(rest, text)
    if after.strip():
        raise MatcherError(
            f"unexpected text after the closing quote in '{text}': {after.strip()} (escape quotes"
            " inside a value with a backslash)"
        )
    return value


def _read_quoted(rest: str, text: str) -> tuple[str, str]:
    """Read a double-quoted string at the start of `rest`; return it unescaped and what follows.

    Unknown escapes keep their backslash, as Alertmanager does, so `"\\d+"` stays a regex digit.
    """
    out: list[str] = []
    i = 1
    while i < len(rest):
        char = rest[i]
        if char == '"':
            return "".join(out), rest[i + 1:]
        if char == "\\" and i + 1 < len(rest):
            following = rest[i + 1]
            out.append(_UNESCAPE.get(following, "\\" + following))
            i += 2
            continue
        out.append(char)
        i += 1
    raise MatcherError(
        f"unterminated quote in '{text}': a double-quoted string has no closing quote"
    )


def _split_commas(body: str) -> list[str]:
    """Split on commas that are outside double quotes (a backslash escapes a quote inside)."""
    items: list[str] = []
    start, quoted, escaped = 0, False, False
    for i, char in enumerate(body):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append(body[start:i])
            start = i + 1
    items.append(body[start:])
    return items
