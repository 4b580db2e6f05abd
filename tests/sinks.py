"""Local endpoints that real Apprise delivers to in tests: an HTTP sink and an SMTP sink.

Both listen on 127.0.0.1, on a port the OS picks, inside the test's own event loop, and record
what arrived so tests assert on it. Apprise runs its blocking sends on worker threads, so the
loop stays free to serve these sinks while a test awaits a delivery.

    async with HttpSink() as sink:
        delivery = await notifier.send(sink.url("json", "/ana"), message)
        [request] = await sink.wait_for(1)
        assert request.json["title"] == message.title

    async with SmtpSink() as smtp:
        await notifier.send(smtp.url(to="ana@example.com"), message)
        [mail] = await smtp.wait_for(1)
        assert mail.subject == message.title

`HttpSink(SinkMode.HUNG)` accepts requests and never answers; `SinkMode.SLOW` holds each
one `hold` seconds, then answers 200 (a real gateway's send takes that long);
`SinkMode.ERROR` answers 500; `SinkMode.REFUSING` holds a port with no listener, so
connections are refused. `pause()` holds every request that arrives (after recording it)
until `resume()`, then it is answered as its mode says: a send whose end the test chooses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from enum import StrEnum
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"
DEFAULT_WAIT = 10.0

T = TypeVar("T")


class Arrivals(Generic[T]):
    """A list of things that arrived, and a way to await the next ones without sleeping."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._changed = asyncio.Event()

    def add(self, item: T) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait_for(self, count: int, within: float) -> list[T]:
        """The first `count` items, once they are in; TimeoutError after `within` seconds."""
        async with asyncio.timeout(within):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.items[:count]


# -- HTTP ------------------------------------------------------------------------------------


class SinkMode(StrEnum):
    OK = "ok"  # answer 200 at once
    HUNG = "hung"  # read the request, then never answer
    SLOW = "slow"  # read the request, wait `hold` seconds, then answer 200
    ERROR = "error"  # answer 500
    REFUSING = "refusing"  # no listener on the port: connections are refused


@dataclass(frozen=True)
class SinkRequest:
    """One request as the sink received it. `json` and `form` are set when the body is one."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    json: Any = None
    form: Mapping[str, str] | None = None
    received_at: float = field(default_factory=time.time)  # wall clock, when it arrived


class HttpSink:
    """An aiohttp server on 127.0.0.1 that records every request (see the module docstring)."""

    def __init__(self, mode: SinkMode = SinkMode.OK, hold: float = 1.0) -> None:
        self.mode = mode
        self.hold = hold  # seconds a SLOW sink holds each request
        self.port = 0
        self._arrivals: Arrivals[SinkRequest] = Arrivals()
        self._runner: web.AppRunner | None = None
        self._placeholder: socket.socket | None = None
        # Set on stop, so hung handlers return and the server can shut down promptly.
        self._release = asyncio.Event()
        self._open = asyncio.Event()  # cleared while paused
        self._open.set()

    @property
    def requests(self) -> list[SinkRequest]:
        """Every request that arrived (also those left hanging), in order."""
        return self._arrivals.items

    def url(self, scheme: str = "json", path: str = "/", **params: str) -> str:
        """An Apprise URL for this sink, e.g. url("form", "/ops") -> form://127.0.0.1:PORT/ops."""
        query = f"?{urlencode(params)}" if params else ""
        return f"{scheme}://{HOST}:{self.port}{path}{query}"

    async def wait_for(self, count: int = 1, within: float = DEFAULT_WAIT) -> list[SinkRequest]:
        """The first `count` requests, once they arrived."""
        return await self._arrivals.wait_for(count, within)

    def pause(self) -> None:
        """Hold every request from now on until resume() (or stop)."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    async def start(self) -> Self:
        if self.mode is SinkMode.REFUSING:
            self._placeholder = _bound_socket()
            self.port = self._placeholder.getsockname()[1]
            return self
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._release.set()
        self._open.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        self._arrivals.add(await _record(request))
        await self._open.wait()
        if self.mode is SinkMode.HUNG:
            await self._release.wait()
            return web.Response(status=503, text="sink stopped")
        if self.mode is SinkMode.SLOW:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.hold)
        if self.mode is SinkMode.ERROR:
            return web.Response(status=500, text="sink says no")
        return web.Response(status=200, text="ok")


async def _record(request: web.Request) -> SinkRequest:
    body = await request.read()
    parsed_json: Any = None
    form: dict[str, str] | None = None
    if request.content_type == "application/json":
        parsed_json = json.loads(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = {k: str(v) for k, v in (await request.post()).items()}
    return SinkRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers=dict(request.headers),
        body=body,
        json=parsed_json,
        form=form,
    )


def _bound_socket() -> socket.socket:
    """A socket bound to a free loopback port and not listening: the port refuses connections
    and no other test can take it while the socket is open."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    return sock


# -- SMTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpMessage:
    """One message as the SMTP sink received it; `text` is its plain-text body."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    text: str
    email: EmailMessage = field(repr=False)


class _Handler:
    """aiosmtpd's handler protocol: called once per message with the whole envelope."""

    def __init__(self, arrivals: Arrivals[SmtpMessage]) -> None:
        self._arrivals = arrivals

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        parsed = message_from_bytes(data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        body = parsed.get_body(preferencelist=("plain", "html"))
        self._arrivals.add(
            SmtpMessage(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                subject=str(parsed["subject"] or ""),
                text=body.get_content() if isinstance(body, EmailMessage) else "",
                email=parsed,
            )
        )
        return "250 Message accepted for delivery"


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 (plain SMTP, no TLS, no auth) that records messages.

    aiosmtpd's SMTP protocol is served straight from the test's loop rather than through a
    threaded Controller, so the OS picks the port (no probe-then-bind race) and there is no
    second loop to stop.
    """

    def __init__(self) -> None:
        self.port = 0
        self._arrivals: Arrivals[SmtpMessage] = Arrivals()
        self._server: asyncio.Server | None = None

    @property
    def messages(self) -> list[SmtpMessage]:
        return self._arrivals.items

    def url(self, to: str = "ana@example.com", sender: str = "ackd@example.com") -> str:
        """A mailto:// URL that makes Apprise speak plain SMTP to this sink."""
        return f"mailto://{HOST}:{self.port}?{urlencode({'from': sender, 'to': to})}"

    async def wait_for(self, count: int = 1, within: float = DEFAULT_WAIT) -> list[SmtpMessage]:
        """The first `count` messages, once they arrived."""
        return await self._arrivals.wait_for(count, within)

    async def start(self) -> Self:
        loop = asyncio.get_running_loop()
        handler = _Handler(self._arrivals)
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.localhost", loop=loop), HOST, 0
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
