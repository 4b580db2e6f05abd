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
letters: Cyrillic transliterated, quotes and dashes as their ASCII kin, accented Latin
letters GSM-7 lacks without their accents, and each run of what has no spelling (CJK,
Arabic...) as one "?".
"""

from __future__ import annotations

import re
import unicodedata

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

# Cyrillic (Russian, Ukrainian, Belarusian) in Latin letters, as a reader of either expects
# from a passport or a road sign; the capital is the first letter's.
_CYRILLIC = dict(zip(
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяєіїґў",
    ["a", "b", "v", "g", "d", "e", "yo", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p",
     "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya",
     "ye", "i", "yi", "g", "u"], strict=True))
_PUNCTUATION = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2022": "*", "\u00b7": ".",
    "\u2192": "->", "\u2190": "<-", "\u2265": ">=", "\u2264": "<=", "\u00d7": "x",
    "\u0142": "l", "\u0141": "L", "\u0111": "d", "\u0110": "D", "\u0131": "i",
}
# A run of characters with no spelling, with the spaces and punctuation between them (CJK's
# full-width commas spell as commas): one "?".
# One pass in C each: a short text is measured several times as it is fitted.
_NOT_GSM7 = re.compile("[^" + re.escape("".join(sorted(_GSM7))) + "]")
_ESCAPED = re.compile("[" + re.escape("".join(sorted(GSM7_ESCAPED))) + "]")
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")
_UNSPELLED = re.compile(r"\x00(?:[\s,.;:!?]*\x00)*")


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
    """`text` in GSM-7's letters: its own where GSM-7 has them, Cyrillic transliterated,
    punctuation as its ASCII kin, a letter GSM-7 lacks without its accents (NFKD), and each
    run of characters with no spelling as one "?"."""
    if is_gsm7(text):
        return text
    return _UNSPELLED.sub("?", "".join(_spelled(char) for char in text))


def _spelled(char: str) -> str:
    if char in _GSM7:
        return char
    latin = _CYRILLIC.get(char.lower())
    if latin is not None:
        return latin.capitalize() if char != char.lower() else latin
    if char in _PUNCTUATION:
        return _PUNCTUATION[char]
    kept = "".join(c for c in unicodedata.normalize("NFKD", char) if c in _GSM7)
    return kept or "\x00"
