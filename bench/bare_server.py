"""The benchmark's yardstick: an aiohttp handler that only parses the JSON body and answers 200.
It parses with msgspec and runs on uvloop, as ackd does, so the ratio counts only what ackd
adds.

Run as its own process (like ackd) so the load generator never shares its event loop. The same
script serves as the local sink of ackd's json:// contacts during the benchmark, so no
notification leaves the machine.

    python bench/bare_server.py PORT
"""

from __future__ import annotations

import sys

import msgspec
import uvloop
from aiohttp import web


async def parse_only(request: web.Request) -> web.Response:
    body = await request.read()
    data = msgspec.json.decode(body)
    alerts = len(data.get("alerts", ())) if isinstance(data, dict) else 0
    return web.json_response({"status": "accepted", "alerts": alerts})


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app() -> web.Application:
    app = web.Application(client_max_size=1024 * 1024 + 1)
    app.router.add_get("/-/ready", healthy)
    app.router.add_post("/{tail:.*}", parse_only)
    return app


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: bare_server.py PORT", file=sys.stderr)
        return 2
    web.run_app(build_app(), host="127.0.0.1", port=int(argv[0]), access_log=None,
                print=None, loop=uvloop.new_event_loop())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
