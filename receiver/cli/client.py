"""A small client of ackd's own API, for the command line (`ackd ack 42`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import quote

from receiver.core.frozen import frozen

T = TypeVar("T")


def run_async(call: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(call), asyncio imported now: the modules that build the parser (respond,
    learning) import this one, and asyncio (with ssl and subprocess) was half of what `ackd
    --help` imported."""
    import asyncio

    return asyncio.run(call)


def ask(call: Coroutine[Any, Any, T], what: str, url: str) -> T | None:
    """The answer to `call`, asked of the ackd at `url` now; or None once the reason is on
    stderr: the API's error after `what` (the command, and what it was about), or "cannot
    reach ackd at URL: why". Every command that asks a running ackd answers through this."""
    try:
        return run_async(call)
    except ApiError as exc:
        print(f"{what}: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"cannot reach ackd at {url}: {exc}", file=sys.stderr)
    return None


@frozen
class ApiError(Exception):
    status: int
    message: str

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}"


class Unreachable(OSError):
    """ackd could not be asked: the URL is not one, or the connection failed. An OSError, as
    a refused connection is, so every command says "cannot reach ackd at URL: why"."""


@frozen
class Client:
    base_url: str
    token: str
    timeout: float = 10.0

    async def act(self, incident_id: int, action: str, body: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/incidents/{incident_id}/{action}", body or {})

    async def reassign(self, incident_id: int, body: dict[str, str]) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/incidents/{incident_id}/reassign", body)

    async def add_responder(self, incident_id: int, user: str) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/incidents/{incident_id}/responders",
                                {"user": user})

    async def set_severity(self, incident_id: int, severity: str) -> dict[str, Any]:
        return await self._call("PUT", f"/api/v1/incidents/{incident_id}/severity",
                                {"severity": severity})

    async def declare(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/api/v1/incidents", body)

    async def assign_role(self, incident_id: int, role: str, user: str) -> dict[str, Any]:
        return await self._call("PUT", f"/api/v1/incidents/{incident_id}/roles/{quote(role)}",
                                {"user": user})

    async def clear_role(self, incident_id: int, role: str) -> dict[str, Any]:
        return await self._call(
            "DELETE", f"/api/v1/incidents/{incident_id}/roles/{quote(role)}", None)

    async def note(self, incident_id: int, text: str) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/incidents/{incident_id}/notes", {"text": text})

    async def feed(self, kind: str, name: str, revoke: bool = False) -> dict[str, Any]:
        """The signed address of a person's or a schedule's calendar feed; `revoke`: a new
        one, every earlier one stops."""
        return await self._call("DELETE" if revoke else "GET",
                                f"/api/v1/{kind}s/{quote(name)}/feed", None)

    async def incidents(self, **query: str) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/incidents", None, query)

    async def overrides(self, schedule: str) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/schedules/{quote(schedule)}/overrides", None)

    async def add_override(self, schedule: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/schedules/{quote(schedule)}/overrides", body)

    async def delete_override(self, schedule: str, override_id: int) -> dict[str, Any]:
        return await self._call(
            "DELETE", f"/api/v1/schedules/{quote(schedule)}/overrides/{override_id}", None)

    async def oncall(self, team: str, at: str) -> dict[str, Any]:
        """Who is on call for `team` at `at`, per layer, with its schedule's name and zone."""
        return await self._call("GET", f"/api/v1/teams/{quote(team)}/oncall", None, {"at": at})

    async def postmortem(self, incident_id: int) -> str:
        return await self._text(f"/api/v1/incidents/{incident_id}/postmortem")

    async def report(self, since: str) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/reports", None, {"since": since})

    async def drill(self, team: str, severity: str | None) -> dict[str, Any]:
        body = {"team": team, **({"severity": severity} if severity else {})}
        return await self._call("POST", "/api/v1/drills", body)

    async def drill_report(self, incident_id: int) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/drills/{incident_id}", None)

    async def _text(self, path: str) -> str:
        status, text = await self._exchange("GET", path, None, None)
        if status >= 400:
            try:
                message = str(json.loads(text).get("error", text))
            except (json.JSONDecodeError, AttributeError):
                message = text[:200]
            raise ApiError(status, message)
        return text

    async def heartbeats(self) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/heartbeats", None)

    async def maintenance(self) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/maintenance", None)

    async def add_maintenance(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/api/v1/maintenance", body)

    async def delete_maintenance(self, window_id: int) -> dict[str, Any]:
        return await self._call("DELETE", f"/api/v1/maintenance/{window_id}", None)

    async def reload(self) -> tuple[bool, dict[str, Any]]:
        """POST /-/reload: (True, what the reload changed and found) or (False, the refusal,
        whose `problems` are the answer); ApiError for any other failure."""
        status, text = await self._exchange("POST", "/-/reload", None, None)
        data = _decoded(text)
        if status == 422 and isinstance(data.get("problems"), list):
            return False, data
        return True, _checked(status, data)

    async def last_reload(self) -> dict[str, Any]:
        """GET /-/reload: the last reload that took, its checks as they stand now."""
        return await self._call("GET", "/-/reload", None)

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        status, text = await self._exchange(method, path, body, query)
        return _checked(status, _decoded(text))

    async def _exchange(
        self, method: str, path: str, body: dict[str, Any] | None, query: dict[str, str] | None
    ) -> tuple[int, str]:
        url = self.base_url.rstrip("/") + path
        if not url.lower().startswith(("http://", "https://")):
            raise Unreachable(f"not an http(s) URL: {self.base_url!r} (e.g. http://127.0.0.1:9095)")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        # Imported at the first call, not with this module: the parser's modules (respond,
        # learning) import this one, and aiohttp's client (about 0.3 s of CPU) is for the
        # commands that call ackd, not for `ackd --help` (tests/test_cli_imports.py).
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
                method, url, json=body, params=query, headers=headers
            ) as response:
                return response.status, await response.text()
        except aiohttp.InvalidURL:
            raise Unreachable(f"not a valid URL: {self.base_url!r}") from None
        except aiohttp.ClientError as exc:  # the connection broke, or the answer was not HTTP
            if isinstance(exc, OSError):
                raise
            raise Unreachable(f"{type(exc).__name__}: {exc}") from None


def _decoded(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"error": text[:200]}
    return data if isinstance(data, dict) else {"error": str(data)[:200]}


def _checked(status: int, data: dict[str, Any]) -> dict[str, Any]:
    if status >= 400:
        message = str(data.get("error", data))
        # The field (or the scope) the answer names, as the API gives it.
        named = data.get("scope") or data.get("field")
        raise ApiError(status, f"{named}: {message}" if named else message)
    return data
