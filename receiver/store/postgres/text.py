"""Text as PostgreSQL holds it: every string, NUL (U+0000) included, stored and read back.

PostgreSQL's text refuses NUL ("invalid byte sequence for encoding UTF8: 0x00"), and SQLite
takes it. A label or annotation value, a summary, a comment may hold one (JSON spells it
\\u0000), and Alertmanager retries a webhook answered 5xx for ever: refusing it there would
keep the group out for good. So the PostgreSQL store escapes, reversibly: NUL as SOH (U+0001)
then "0", SOH itself as SOH then "1". The mapping is one-to-one, so equality (a group key,
a team filter) holds between escaped values as between the values; text without NUL or SOH
(all but a handful of values) is stored as it is.

The connection's codec for `text` (register) does it for every text parameter and column.
It does not reach text inside other values, which the store escapes itself (escape):
- elements of a text[] parameter or column (asyncpg's array codecs keep their own element
  codec): group keys asked for by the array;
- strings inside a JSON parameter that PostgreSQL turns into text (json_to_recordset):
  held.py's alerts and timeline events.
The store's JSON columns need nothing: msgspec writes NUL as the six characters \\u0000.
"""

from __future__ import annotations

import asyncpg

_ESCAPES = {"0": "\x00", "1": "\x01"}


def escape(text: str) -> str:
    """`text` as a PostgreSQL text value holds it (without NUL)."""
    if "\x00" in text or "\x01" in text:
        return text.replace("\x01", "\x011").replace("\x00", "\x010")
    return text


def unescape(text: str) -> str:
    """The string a text value stored by escape() holds."""
    if "\x01" not in text:
        return text
    parts = text.split("\x01")
    out = [parts[0]]
    for part in parts[1:]:
        # Every SOH written since starts an escape: "0" is NUL, "1" SOH itself. One followed
        # by neither was stored before the store escaped (by an older ackd): kept as it is.
        kept = _ESCAPES.get(part[:1])
        out.append("\x01" + part if kept is None else kept + part[1:])
    return "".join(out)


async def register(conn: asyncpg.Connection) -> None:
    """Escape and unescape every text parameter and column of this connection."""
    await conn.set_type_codec(
        "text", schema="pg_catalog", encoder=escape, decoder=unescape, format="text"
    )
