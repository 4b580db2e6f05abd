"""An SMS segment's two alphabets, for the short texts (notify/messages.py's `_fit`).

A text every character of which GSM 03.38 has goes as GSM-7: 160 septets a segment, two for
a character of the extension table ("[", "]", "€"...). One character outside it (Cyrillic,
CJK, an ellipsis, a curly quote) sends the whole text as UCS-2: 70 UTF-16 units a segment
(two for a character beyond the Basic Multilingual Plane, an emoji). A gateway splits a
longer text into segments of 153 septets or 67 units, each paid and delivered on its own.

A short page keeps its acknowledge link whole, about 80 characters with " Ack: ": with it, a
UCS-2 text has no room left for the summary. So a short text is UCS-2 only when its summary
keeps at least UCS2_LEAST units of room there (a note without a link, one with the
incident's address); otherwise it goes in GSM-7 with the summary `spelled` in GSM-7's
letters: each character GSM-7 has kept as it is (é, ß, Ä, Δ), each run of those it lacks
as the anyascii library spells it in ASCII (Cyrillic and Greek transliterated, CJK in
pinyin or romaji, an emoji as its :name:, quotes and dashes as their ASCII kin), and a
visible run anyascii has no spelling for (a private-use character) as one "?".
"""

from __future__ import annotations

import re
import unicodedata

from anyascii import anyascii

GSM7_LIMIT = 160
UCS2_LIMIT = 70
# The least room in units a UCS-2 text must leave its summary: less says nothing the head
# does not, and the same text spelled in GSM-7 keeps more of it.
UCS2_LEAST = 16

# GSM 03.38's basic set (less the escape, which no text holds) and its extension table,
# whose characters take an escape and themselves: two septets.
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_ESCAPED = frozenset("^{}\\[~]|€\f")
_GSM7 = _GSM7_BASIC | GSM7_ESCAPED

# One pass in C each: a short text is measured several times as it is fitted.
_NOT_GSM7 = re.compile("[^" + re.escape("".join(sorted(_GSM7))) + "]")
_NOT_GSM7_RUN = re.compile(_NOT_GSM7.pattern + "+")
_ESCAPED = re.compile("[" + re.escape("".join(sorted(GSM7_ESCAPED))) + "]")
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")
# anyascii spells in ASCII, of which GSM-7 lacks only the grave accent and the control
# characters: the accent as an apostrophe, a control that spaces (a tab) as a space, and
# nothing for the others (a bell, an escape).
_ASCII_LEFT = {ord(char): "'" if char == "`" else " " if char.isspace() else None
               for char in map(chr, range(0x80)) if char not in _GSM7}
# What may vanish unsaid when anyascii spells it as nothing: combining marks (an accent
# after a letter GSM-7 has), format characters (zero-width joiners, emoji variation
# selectors), spaces and controls. Any other character (a private-use one, one anyascii
# does not know) leaves a "?" where its run was.
_INVISIBLE = frozenset({"Mn", "Me", "Cf", "Cc", "Zs", "Zl", "Zp"})


def is_gsm7(text: str) -> bool:
    """Every character of `text` is GSM-7's: it goes as GSM-7, 160 septets a segment."""
    return _NOT_GSM7.search(text) is None


def septets(text: str) -> int:
    """How many of a GSM-7 segment's septets `text` takes: one a character, two for one of
    the extension table's (meaningful for a GSM-7 text only)."""
    return len(text) + len(_ESCAPED.findall(text))


def ucs2_units(text: str) -> int:
    """How many of a UCS-2 segment's 70 UTF-16 units `text` takes: two for a character
    beyond the Basic Multilingual Plane."""
    return len(text) + len(_ASTRAL.findall(text))


def length(text: str) -> int:
    """What `text` takes of one segment in the alphabet it goes in."""
    return septets(text) if is_gsm7(text) else ucs2_units(text)


def limit(text: str) -> int:
    """One segment of the alphabet `text` goes in."""
    return GSM7_LIMIT if is_gsm7(text) else UCS2_LIMIT


def cut(text: str, room: int, *, gsm7: bool) -> str:
    """The longest start of `text` that takes at most `room` of a segment in GSM-7 (or
    UCS-2); never half a character."""
    used = 0
    for n, char in enumerate(text):
        if gsm7:
            used += 2 if char in GSM7_ESCAPED else 1
        else:
            used += 2 if ord(char) > 0xFFFF else 1
        if used > room:
            return text[:n]
    return text


def ucs2_worth(head: str, middle: str, tail: str) -> bool:
    """head + middle + tail may go as UCS-2: one segment leaves `middle` (a summary) whole,
    or at least UCS2_LEAST units."""
    room = UCS2_LIMIT - ucs2_units(head) - ucs2_units(tail)
    return room >= min(UCS2_LEAST, ucs2_units(middle))


def as_sent(head: str, middle: str, tail: str) -> tuple[str, str, str]:
    """head, middle and tail as a short text sends them: as they are in GSM-7, or in UCS-2
    where `ucs2_worth`; else each spelled in GSM-7's letters."""
    if is_gsm7(head + middle + tail) or ucs2_worth(head, middle, tail):
        return head, middle, tail
    return spelled(head), spelled(middle), spelled(tail)


def spelled(text: str) -> str:
    """`text` in GSM-7's letters: every character GSM-7 has as it is, each run of those it
    lacks as anyascii spells it (Cyrillic and Greek transliterated, CJK in pinyin or
    romaji, an emoji as its :name:, punctuation as its ASCII kin), a run anyascii spells as
    nothing as one "?" unless it was invisible (`_INVISIBLE`)."""
    if is_gsm7(text):
        return text
    return _NOT_GSM7_RUN.sub(_spelled_run, text)


def _spelled_run(run: re.Match[str]) -> str:
    spelling = anyascii(run[0])
    if not is_gsm7(spelling):  # rare: str.translate looks up every character in Python
        spelling = spelling.translate(_ASCII_LEFT)
    if spelling or all(unicodedata.category(char) in _INVISIBLE for char in run[0]):
        return spelling
    return "?"
