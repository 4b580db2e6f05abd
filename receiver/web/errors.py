"""Every error ackd answers is JSON naming what was wrong, its own and aiohttp's alike.

Besides the handlers, aiohttp answers by itself, in text/plain:
- the router and the body readers raise `web.HTTPException`s: 404 for an unknown path, 405
  for a wrong method, 413 for a body over `client_max_size`;
- the connection handler answers a request it cannot parse (a header line over 8,190 bytes,
  a broken request line) and an exception no handler caught, and logs it with a traceback
  quoting the start of the offending line: an `Authorization` header would put a credential
  in the log.
`JsonErrorRunner` serves connections through `JsonErrorHandler`, which answers all of these in
JSON (same status and headers) and logs a bad request as one line quoting nothing the client
sent. Not a middleware: a middleware runs, with aiohttp's own one for the current app, around
every request (20,000 instructions per webhook, see `web/actions.add_link_routes`); this
costs a request one function call and a comparison.

aiohttp offers no public hook for its own answers to a malformed request, so this subclasses
its connection handler through undocumented parts (`finish_response`, `handle_error`,
`AppRunner._make_server`, `Server._kwargs`): pyproject.toml admits only the aiohttp minor
version the tests run on.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from receiver.web.responses import error

log = logging.getLogger(__name__)

# What each of aiohttp's own refusals names: the part of the request that was wrong.
_FIELDS = {404: "path", 405: "method", 413: "body", 414: "path", 431: "headers"}
_MESSAGES = {
    404: "no such path",
    405: "method not allowed here",
    413: "the body is too large",
}
# Headers of aiohttp's answer that describe its text body, not the refusal.
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})


def _as_json(request: BaseRequest, exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
    message = _MESSAGES.get(exc.status) or (exc.reason or "refused").lower()
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"{exc.method} is not allowed here (allowed: {allowed})"
    elif exc.status == 413:
        message = f"the body is larger than {request.client_max_size} bytes"
    return error(exc.status, message, _FIELDS.get(exc.status, "request"), headers=headers)


class JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, with its own error answers in JSON."""

    def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> Coroutine[Any, Any, tuple[web.StreamResponse, bool]]:
        # A raised HTTPException arrives here as the response; an answer a handler made
        # itself (a page's HTML, a feed's text/calendar) is left as it is.
        if (resp.status >= 400 and isinstance(resp, web.HTTPException)
                and resp.content_type == "text/plain"):
            resp = _as_json(request, resp)
        return super().finish_response(request, resp, start_time)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            # The client's fault: one line, no traceback, and nothing quoted from the request
            # (the exception's message holds the start of the bad line, which may be a token).
            log.info("refused a malformed request from %s: %s (%d)",
                     request.remote, type(exc).__name__, status)
            if isinstance(exc, LineTooLong):
                response = error(status, f"a header line is longer than {self.max_field_size} "
                                 "bytes", "headers")
            else:
                response = error(status, "malformed HTTP request", "request")
        elif status >= 500:
            if status == 500:
                log.error("unhandled error answering %s %s", request.method, request.path,
                          exc_info=exc)
                response = error(500, "internal error (see the ackd log)")
            else:
                response = error(status, "the request timed out")
        else:
            log.info("refused a request from %s (%d)", request.remote, status)
            response = error(status, "bad request", "request")
        if request.writer.output_size > 0:
            raise ConnectionError("part of a response is sent already: cannot answer an error")
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """An AppRunner whose connections are served by JsonErrorHandler."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _JsonErrorServer(
            server.request_handler, request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation, loop=server._loop,
            **server._kwargs,
        )
