"""A request body's Content-Encoding, inflated here with a bound rather than by aiohttp.

Alertmanager and Grafana post plain JSON; a proxy may compress. aiohttp's parser would inflate
a compressed body as it arrives, on the loop, before any handler has run or checked a
credential, and after a refusal (401, 413) it reads the rest to keep the connection and
inflates that too: a 190 kB gzip body of 200 MB of spaces held the loop half a second, from
a client with no token. The server is started with `auto_decompress=False`; the webhook
inflates what it accepted itself, never past the body limit plus one byte, and refuses an
encoding it cannot read with a 415 naming the header (aiohttp answered `br` with a text 400
and logged a traceback for every such request).
"""

from __future__ import annotations

import zlib

from aiohttp import web

from receiver.core.errors import PayloadError

FIELD = "Content-Encoding"
# zlib's window bits: 16 + 15 for a gzip member, 15 for zlib's wrapping (HTTP's "deflate").
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_RAW_DEFLATE = -zlib.MAX_WBITS  # what some clients send as "deflate", without the wrapping
_IDENTITY = ("", "identity")


def encoding_of(request: web.Request) -> str:
    """The body's encoding in lower case; "" when it is not encoded."""
    name = request.headers.get(FIELD, "").strip().lower()
    return "" if name in _IDENTITY else name


def supported(encoding: str) -> bool:
    return encoding == "" or encoding in _WBITS


def inflate(body: bytes, encoding: str, limit: int) -> bytes | None:
    """`body` decoded, or None when it would exceed `limit` bytes: at most limit + 1 bytes are
    ever produced, whatever the body inflates to. PayloadError when it is not `encoding`."""
    if encoding == "":
        return body
    wbits = _WBITS[encoding]
    if encoding == "deflate" and body and body[0] & 0x0F != 8:  # no zlib header
        wbits = _RAW_DEFLATE
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise PayloadError("body", f"not valid {encoding} data ({exc})") from exc
    if len(out) > limit:
        return None
    if not inflater.eof:
        raise PayloadError("body", f"the {encoding} data ends before its end")
    return out
