"""Alertmanager's matcher syntax: parsing, errors, canonical form and matching semantics."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from receiver.alertmanager.matchers import (
    Matcher,
    MatcherError,
    MatchType,
    parse_matcher,
    parse_matchers,
)

EQ, NE, RE, NRE = MatchType.EQUAL, MatchType.NOT_EQUAL, MatchType.REGEX, MatchType.NOT_REGEX


@pytest.mark.parametrize(
    ("text", "name", "type_", "value"),
    [
        pytest.param('alertname="X"', "alertname", EQ, "X", id="equal-quoted"),
        pytest.param('env!="prod"', "env", NE, "prod", id="not-equal"),
        pytest.param('alertname=~"Payment.*"', "alertname", RE, "Payment.*", id="regex"),
        pytest.param('env!~"dev|test"', "env", NRE, "dev|test", id="not-regex"),
        pytest.param("team=payments", "team", EQ, "payments", id="unquoted"),
        pytest.param("team=~pay.*", "team", RE, "pay.*", id="unquoted-regex"),
        pytest.param("  team  !=  pay ments  ", "team", NE, "pay ments", id="unquoted-trimmed"),
        pytest.param('team = "payments"', "team", EQ, "payments", id="spaces-around-op"),
        pytest.param('team="  padded "', "team", EQ, "  padded ", id="quoted-keeps-spaces"),
        pytest.param('foo=""', "foo", EQ, "", id="empty-quoted"),
        pytest.param("foo=", "foo", EQ, "", id="empty-unquoted"),
        pytest.param('msg="say \\"hi\\""', "msg", EQ, 'say "hi"', id="escaped-quote"),
        pytest.param('path="C:\\\\tmp"', "path", EQ, "C:\\tmp", id="escaped-backslash"),
        pytest.param('msg="a\\nb"', "msg", EQ, "a\nb", id="escaped-newline"),
        pytest.param('n=~"\\d+"', "n", RE, "\\d+", id="unknown-escape-kept-for-regex"),
        pytest.param('list="a,b"', "list", EQ, "a,b", id="comma-in-quotes"),
        pytest.param('"service.name"="api"', "service.name", EQ, "api", id="quoted-name"),
        pytest.param('"a\\"b"=x', 'a"b', EQ, "x", id="quoted-name-escape"),
        pytest.param("_x1=~.+", "_x1", RE, ".+", id="underscore-digit-name"),
        pytest.param('url="http://x/?a=b"', "url", EQ, "http://x/?a=b", id="operator-in-value"),
    ],
)
def test_parse_valid(text: str, name: str, type_: MatchType, value: str) -> None:
    assert parse_matcher(text) == Matcher(name, type_, value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            'alertname=~"(unclosed"',
            "invalid regex in 'alertname=~\"(unclosed\"': missing ): (unclosed",
            id="bad-regex",
        ),
        pytest.param(
            "env!~*", "invalid regex in 'env!~*': no argument for repetition operator: *",
            id="bad-negated-regex",
        ),
        pytest.param(
            "alertname",
            "missing operator in 'alertname': expected =, !=, =~ or !~ after the label name",
            id="no-operator",
        ),
        pytest.param(
            "team payments",
            "missing operator in 'team payments': expected =, !=, =~ or !~ after the label name",
            id="space-instead-of-operator",
        ),
        pytest.param("", "missing label name in '': a matcher looks like", id="empty-text"),
        pytest.param('="x"', "missing label name in '=\"x\"'", id="no-name"),
        pytest.param('""="x"', "empty label name in '\"\"=\"x\"'", id="empty-quoted-name"),
        pytest.param(
            "team-name=x",
            "invalid label name in 'team-name=x': team-name must match [a-zA-Z_][a-zA-Z0-9_]*",
            id="dash-in-name",
        ),
        pytest.param("1st=x", "invalid label name in '1st=x': 1st must", id="digit-first"),
        pytest.param(
            'team="payments',
            "unterminated quote in 'team=\"payments': a double-quoted string has no closing",
            id="unterminated-value",
        ),
        pytest.param('team="x\\"', "unterminated quote in", id="escaped-final-quote"),
        pytest.param('"team=x', "unterminated quote in '\"team=x'", id="unterminated-name"),
        pytest.param(
            'team="a"b', "unexpected text after the closing quote in 'team=\"a\"b': b",
            id="text-after-quote",
        ),
        pytest.param('team=a"b', "stray double quote in 'team=a\"b'", id="quote-in-unquoted"),
    ],
)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(MatcherError) as caught:
        parse_matcher(text)
    assert str(caught.value).startswith(message)


def test_matcher_error_is_a_value_error() -> None:
    # configbuild reports every ValueError as a config problem; MatcherError must be one.
    with pytest.raises(ValueError, match="invalid regex"):
        parse_matcher("a=~[")


@pytest.mark.parametrize(
    ("matcher", "rendered"),
    [
        pytest.param(Matcher("a", EQ, "b"), 'a="b"', id="equal"),
        pytest.param(Matcher("a", NE, ""), 'a!=""', id="not-equal-empty"),
        pytest.param(Matcher("a", RE, "x|y"), 'a=~"x|y"', id="regex"),
        pytest.param(Matcher("a", NRE, "\\d"), 'a!~"\\\\d"', id="not-regex-backslash"),
        pytest.param(Matcher("a", EQ, 'say "hi"\n'), 'a="say \\"hi\\"\\n"', id="escapes"),
        pytest.param(Matcher("service.name", EQ, "x"), '"service.name"="x"', id="quoted-name"),
    ],
)
def test_canonical_form_round_trips(matcher: Matcher, rendered: str) -> None:
    assert str(matcher) == rendered
    assert parse_matcher(rendered) == matcher


def test_matcher_accepts_the_operator_as_a_plain_string() -> None:
    matcher = Matcher("a", "=~", "x.*")  # type: ignore[arg-type]
    assert matcher.type is MatchType.REGEX
    assert matcher.matches({"a": "xyz"})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: Matcher("", EQ, "x"), "empty label name", id="empty-name"),
        pytest.param(
            lambda: Matcher("a", RE, "("),
            "invalid regex in 'a=~\"(\"': missing ): (",
            id="bad-regex",
        ),
    ],
)
def test_matcher_rejects_bad_construction(make: Callable[[], Matcher], message: str) -> None:
    with pytest.raises(MatcherError) as caught:
        make()
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        pytest.param('foo="bar"', {"foo": "bar"}, True, id="equal"),
        pytest.param('foo="bar"', {"foo": "baz"}, False, id="equal-differs"),
        pytest.param('foo="bar"', {}, False, id="equal-missing"),
        pytest.param('foo=""', {}, True, id="empty-equals-missing"),
        pytest.param('foo=""', {"foo": ""}, True, id="empty-equals-empty"),
        pytest.param('foo=""', {"foo": "x"}, False, id="empty-set"),
        pytest.param('foo!=""', {"foo": "x"}, True, id="set"),
        pytest.param('foo!=""', {}, False, id="set-missing"),
        pytest.param('foo!="bar"', {}, True, id="not-equal-missing"),
        pytest.param('foo!="bar"', {"foo": "bar"}, False, id="not-equal-same"),
        pytest.param('foo=~"bar"', {"foo": "bar"}, True, id="regex-exact"),
        pytest.param('foo=~"bar"', {"foo": "foobar"}, False, id="regex-anchored-start"),
        pytest.param('foo=~"bar"', {"foo": "barfoo"}, False, id="regex-anchored-end"),
        pytest.param('foo=~"bar"', {"foo": "bar\n"}, False, id="regex-no-trailing-newline"),
        pytest.param('foo=~"a|b"', {"foo": "ab"}, False, id="regex-alternation-anchored"),
        pytest.param('foo=~"a|b"', {"foo": "b"}, True, id="regex-alternation"),
        pytest.param('foo=~".*"', {}, True, id="regex-any-matches-missing"),
        pytest.param('foo=~".+"', {}, False, id="regex-some-needs-label"),
        pytest.param('foo!~"bar"', {"foo": "foobar"}, True, id="not-regex-anchored"),
        pytest.param('foo!~"bar"', {"foo": "bar"}, False, id="not-regex-match"),
        pytest.param('foo!~"bar"', {}, True, id="not-regex-missing"),
        pytest.param('foo!~""', {}, False, id="not-regex-empty-missing"),
        pytest.param('foo=~"kube-.*|monitoring"', {"foo": "kube-system"}, True, id="prefix"),
    ],
)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("{}", [], id="empty-braces"),
        pytest.param("", [], id="empty"),
        pytest.param("a=b", [Matcher("a", EQ, "b")], id="one-bare"),
        pytest.param(
            '{a="b", c=~"d"}', [Matcher("a", EQ, "b"), Matcher("c", RE, "d")], id="two-braced"
        ),
        pytest.param(
            'a="x,y",b!=z,', [Matcher("a", EQ, "x,y"), Matcher("b", NE, "z")],
            id="comma-in-quotes-and-trailing-comma",
        ),
        pytest.param(
            '{a="q\\",r", b=c}', [Matcher("a", EQ, 'q",r'), Matcher("b", EQ, "c")],
            id="escaped-quote-then-comma",
        ),
    ],
)
def test_parse_matchers(text: str, expected: list[Matcher]) -> None:
    assert parse_matchers(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{a=b", "unbalanced braces in '{a=b'", id="no-close"),
        pytest.param("a=b}", "unbalanced braces in 'a=b}'", id="no-open"),
        pytest.param("a=b,,c=d", "empty matcher in 'a=b,,c=d'", id="double-comma"),
        pytest.param('{a=b, c="d}', "unterminated quote in 'c=\"d'", id="item-error-shows-item"),
    ],
)
def test_parse_matchers_invalid(text: str, message: str) -> None:
    with pytest.raises(MatcherError) as caught:
        parse_matchers(text)
    assert str(caught.value).startswith(message)


def test_regex_matching_is_linear_in_the_value() -> None:
    """`(a|aa)*c` backtracks exponentially in Python's re (40 a's held the loop for minutes)."""
    matcher = parse_matcher('a=~"(a|aa)*c"')
    started = time.monotonic()
    for length in (40, 1000, 100_000):
        assert not matcher.matches({"a": "a" * length})
    assert matcher.matches({"a": "a" * 1000 + "c"})
    assert time.monotonic() - started < 5  # RE2 takes milliseconds; backtracking, centuries


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("(a)\\1", "invalid escape sequence: \\1", id="backreference"),
        pytest.param("(?=a)a", "invalid perl operator: (?=", id="lookahead"),
        pytest.param("a(?<!b)", "invalid perl operator: (?<!", id="lookbehind"),
        pytest.param("a\\Z", "invalid escape sequence: \\Z", id="python-end-anchor"),
        pytest.param("a{1001}", "invalid repetition size: {1001}", id="repeat-over-1000"),
        pytest.param("(" * 5000 + ")" * 5000, "nests too deeply (more than 1000 levels of groups)",
                     id="nested-5000"),
        pytest.param("(?:" * 1001 + "a" + ")" * 1001,
                     "nests too deeply (more than 1000 levels of groups)", id="nested-1001"),
        pytest.param("[\\pL]{1000}" * 300, "pattern too large - compile failed", id="too-large"),
        pytest.param("a" * 4097, "longer than 4096 characters", id="too-long"),
    ],
)
def test_regexes_go_refuses_are_refused(value: str, reason: str) -> None:
    """What Alertmanager (Go's regexp, RE2's syntax) refuses, with the reason."""
    with pytest.raises(MatcherError) as caught:
        Matcher("a", RE, value)
    assert str(caught.value).endswith(f": {reason}")


@pytest.mark.parametrize(
    ("value", "matching", "other"),
    [
        pytest.param("(" * 1000 + "a" + ")" * 1000, "a", "b", id="nested-1000"),
        pytest.param("[(]" * 1001 + "x", "(" * 1001 + "x", "(x", id="parens-in-class"),
        pytest.param("\\(" * 1001, "(" * 1001, "(", id="escaped-parens"),
        pytest.param("\\Q((\\E" * 600, "((" * 600, "(", id="quoted-parens"),
        pytest.param("[]()]+", "]()", "x", id="bracket-first-in-class"),
        pytest.param("[[:digit:](]+", "1(", "x", id="posix-class"),
        pytest.param("\\d+", "123", "\u0663", id="digit-is-ascii"),
        pytest.param("(?i)pay.*", "PAYMENTS", "x", id="flags"),
        pytest.param("\\pL+", "été", "1", id="unicode-class"),
        pytest.param("a.c", "a€c", "a\nc", id="dot-is-one-character-not-newline"),
    ],
)
def test_re2_semantics(value: str, matching: str, other: str) -> None:
    matcher = Matcher("a", RE, value)
    assert matcher.matches({"a": matching})
    assert not matcher.matches({"a": other})
