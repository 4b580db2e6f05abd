"""Alertmanager's label matchers: `name="value"`, `name!="value"`, `name=~"re"`, `name!~"re"`.

Routes are written in Alertmanager's own syntax so that a team can copy its `matchers:` lists
from alertmanager.yml unchanged, and they must mean exactly what they mean there: a missing
label equals "", and regexes match the whole value, never a substring.

Regexes are RE2's, as Go's regexp (Alertmanager's) is: matching takes time linear in the
value, whatever the pattern, and what RE2 refuses (backreferences, lookarounds, `\\Z`) is
refused here with RE2's message. Python's backtracking `re` would let one pattern such as
`(a|aa)*c` hold the event loop for minutes on one label value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field
from enum import StrEnum

import re2

from receiver.core.frozen import frozen

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Longest first, so that `=~` is not read as `=` followed by a value starting with `~`.
_OPERATORS = ("=~", "!~", "!=", "=")
_NAME_ENDS = frozenset("=!~\"") | frozenset(" \t\r\n")
_UNESCAPE = {"n": "\n", '"': '"', "\\": "\\"}
# Go's regexp refuses patterns nested deeper than 1000 ("expression nests too deeply"); RE2
# takes more, so ackd counts the groups itself. A length bound keeps RE2's compile of the worst
# pattern (repetitions of large classes, refused as too large in the end) under half a second.
_MAX_DEPTH = 1000
_MAX_LENGTH = 4096
_OPTIONS = re2.Options()
_OPTIONS.never_capture = True  # only whether it matches is asked
_OPTIONS.log_errors = False  # the error is raised as a MatcherError, not logged to stderr
_BOTH = re2._re2.RE2.Anchor.ANCHOR_BOTH
_NO_MATCH = (-1, -1)


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
    regex: Regex | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if not self.name:
            raise MatcherError(f"empty label name in '{self}': a matcher needs a label name")
        object.__setattr__(self, "type", MatchType(self.type))
        if self.type in (MatchType.REGEX, MatchType.NOT_REGEX):
            object.__setattr__(self, "regex", _compile(self.value, str(self)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.regex is not None:
            return self.regex.fullmatch(value) == (self.type is MatchType.REGEX)
        return (value == self.value) == (self.type is MatchType.EQUAL)

    def __str__(self) -> str:
        name = self.name if _NAME.fullmatch(self.name) else quote(self.name)
        return f"{name}{self.type}{quote(self.value)}"


class Regex:
    """An RE2 regex that matches whole values: Alertmanager's `^(?:re)$` anchoring."""

    __slots__ = ("_re",)

    def __init__(self, pattern: str) -> None:
        """Compile `pattern`; raise ValueError with RE2's (or Go's) reason if it is refused."""
        if _depth(pattern) > _MAX_DEPTH:
            raise ValueError(f"nests too deeply (more than {_MAX_DEPTH} levels of groups)")
        if len(pattern) > _MAX_LENGTH:
            raise ValueError(f"longer than {_MAX_LENGTH} characters")
        compiled = re2._re2.RE2(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
        if not compiled.ok():
            raise ValueError(compiled.error().decode("utf-8", "replace"))
        self._re: re2._re2.RE2 = compiled

    def fullmatch(self, value: str) -> bool:
        """Whether the whole of `value` matches (a final newline is not skipped, as `$` would)."""
        text = value.encode("utf-8", "surrogatepass")
        spans: list[tuple[int, int]] = self._re.Match(_BOTH, text, 0, len(text))
        return spans[0] != _NO_MATCH


def _depth(pattern: str) -> int:
    """How deeply groups nest in `pattern` (escapes, `\\Q...\\E` and classes skipped)."""
    depth = deepest = i = 0
    end = len(pattern)
    while i < end:
        char = pattern[i]
        if char == "\\":
            if pattern.startswith("Q", i + 1):
                close = pattern.find("\\E", i + 2)
                i = end if close < 0 else close + 2
                continue
            i += 2
            continue
        if char == "[":
            i = _class_end(pattern, i)
            continue
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(depth - 1, 0)
        i += 1
    return deepest


def _class_end(pattern: str, start: int) -> int:
    """The index after the character class opening at `start` (the end if it never closes)."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):  # a `]` first in a class is a literal
        i += 1
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
        elif pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            i = i + 1 if close < 0 else close + 2
        elif pattern[i] == "]":
            return i + 1
        else:
            i += 1
    return i


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


def _compile(value: str, shown: str) -> Regex:
    try:
        return Regex(value)
    except ValueError as exc:
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
