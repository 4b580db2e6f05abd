"""Text from outside (alert labels, annotations, request fields) shown on one line.

A label value is data, never layout: a value carrying a newline must not add its own
`Acknowledge:` line to a page, and a label name carrying one must not start a log line of its
own that reads like ackd's. So every value that reaches a message or a log line goes through
`one_line`, which writes control characters as escapes (`\\n`, `\\r`, `\\t`, `\\x1b`,
`\\u2028`): the text stays readable and whole, and a reader can tell data from layout.

Escaped: the C0 and C1 control characters (line feed, carriage return, escape, next-line...),
the Unicode line and paragraph separators, and the bidirectional overrides and isolates (they
reorder what a terminal or mail client shows). Backslashes are kept as they are: an escape
only has to make a forged line impossible, not be reversible.

Log lines: `EscapeArgs` is a handler filter that escapes each string (and exception) argument
of a record. The format string is ours and may lay out lines on purpose; what comes from
outside is passed as an argument (`log.warning("webhook rejected: %s", exc)`), never formatted
into the message first. A logged traceback keeps its lines, but each exception's own message
(the `ValueError: ...` line, and its notes) is escaped like an argument.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Generator, Mapping
from typing import Any

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """`text` with every control character written as an escape: one line, nothing hidden."""
    return _CONTROLS.sub(_escape, text)


def one_line_value(value: Any) -> str:
    """Any value as one line of text (what a template or a log line shows of it)."""
    return one_line(value if isinstance(value, str) else str(value))


class EscapeArgs(logging.Filter):
    """Escapes the string and exception arguments of every record that passes the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # The formatter takes exc_text as it is when set.
            record.exc_text = format_exception(record.exc_info[1])
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_safe(a) for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: _safe(v) for k, v in args.items()}
        return True


def _safe(arg: object) -> object:
    # Numbers keep their type (a %d or %.2f needs it); other objects print through their own
    # __str__ or __repr__, which for ours do not pass raw outside text.
    if isinstance(arg, str | BaseException):
        return one_line(str(arg))
    return arg


class _OneLineMessages(traceback.TracebackException):
    """A traceback whose exception message lines are escaped; the frames are ours."""

    def format_exception_only(self, **kwargs: Any) -> Generator[str, None, None]:
        for chunk in super().format_exception_only(**kwargs):
            yield one_line(chunk.rstrip("\n")) + "\n"


def format_exception(exc: BaseException) -> str:
    """The traceback of `exc`, as logging prints it, with every exception's message on one
    line: in the chain (cause, context) and in exception groups too."""
    top = traceback.TracebackException.from_exception(exc)
    todo, seen = [top], set()
    while todo:
        te = todo.pop()
        if id(te) in seen:
            continue
        seen.add(id(te))
        te.__class__ = _OneLineMessages  # format() asks each exception of the chain for it
        notes = getattr(te, "__notes__", None)
        if isinstance(notes, list):  # a note is printed a line at a time: escape it whole
            te.__notes__ = [one_line(str(note)) for note in notes]
        todo.extend(t for t in (te.__cause__, te.__context__) if t is not None)
        todo.extend(te.exceptions or ())
    return "".join(top.format()).rstrip("\n")
