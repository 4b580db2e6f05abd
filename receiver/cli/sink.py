"""`ackd sink`: a local listener that prints every message posted to it (pages, and the notes
that follow them), to watch ackd at work.

The example configuration's contacts are `json://127.0.0.1:9099/NAME` URLs, so nothing leaves
the machine. Apprise's json:// plugin POSTs each message as a JSON object with `title` and
`message`; form:// and xml:// post other shapes, printed as they came. The sink answers 200,
so every delivery succeeds (a plain file server answers POST with 501, and ackd would count
every page as failed and escalate to the end). It shows what would have been sent; it is not
a notification channel.

Each arrival is headed "message to PATH", not "page to": what Apprise posts does not say
whether ackd sent a page or a note. Its `type` is Apprise's colour (info, success, warning,
failure), and a stakeholder channel's note on a SEV1 is a "failure" as the page is; only the
title's wording, which templates change, would tell them apart.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import datetime
from typing import TextIO

from aiohttp import web

# Alert data reaches the terminal here: control characters (escape sequences that could
# redraw the screen) are shown escaped; newlines and tabs are the message's own layout.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if chr(c) not in "\n\t"}


def safe(text: str) -> str:
    return text.translate(_CONTROL)


def describe(path: str, body: bytes, at: datetime) -> str:
    """One delivery as a block of text: a header line naming the time and the path (the
    recipient, in the example's URLs), then the title and the message."""
    header = f"--- {at:%H:%M:%S} message to {safe(path)}"
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        payload = None
    if isinstance(payload, dict) and ("title" in payload or "message" in payload):
        title = safe(str(payload.get("title") or ""))
        message = safe(str(payload.get("message") or ""))
        lines = [header, title, *("    " + line for line in message.splitlines())]
    else:
        lines = [header, safe(body.decode("utf-8", errors="replace"))]
    return "\n".join(lines) + "\n"


def make_app(out: TextIO) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        out.write(describe(request.path, body, datetime.now().astimezone()))
        out.flush()
        return web.json_response({"status": "received"})

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", receive)
    return app


async def run(
    host: str, port: int, out: TextIO = sys.stdout, stop: asyncio.Event | None = None
) -> None:
    """Serve until `stop` is set, or without one until SIGINT or SIGTERM. OSError if the
    address cannot be bound."""
    runner = web.AppRunner(make_app(out), access_log=None, handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if stop is None else ()
    stop = stop or asyncio.Event()
    try:
        await web.TCPSite(runner, host, port).start()
        out.write(f"ackd sink: printing every message posted to http://{host}:{port}/ "
                  "(Ctrl-C stops)\n")
        out.flush()
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
