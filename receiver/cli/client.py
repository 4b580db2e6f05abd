"""A small client of ackd's own API, for the command line (`ackd ack 42`)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp

from receiver.core.frozen import frozen


@frozen
class ApiError(Exception):
    status: int
    message: str

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}"


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

    async def oncall(self, schedule: str, at: str) -> dict[str, Any]:
        return await self._call(
            "GET", f"/api/v1/schedules/{quote(schedule)}/oncall", None, {"at": at})
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
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
            self.base_url.rstrip("/") + path, headers=headers
        ) as response:
            text = await response.text()
            if response.status >= 400:
                try:
                    message = str(json.loads(text).get("error", text))
                except (json.JSONDecodeError, AttributeError):
                    message = text[:200]
                raise ApiError(response.status, message)
            return text

    async def heartbeats(self) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/heartbeats", None)

    async def maintenance(self) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/maintenance", None)

    async def add_maintenance(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/api/v1/maintenance", body)

    async def delete_maintenance(self, window_id: int) -> dict[str, Any]:
        return await self._call("DELETE", f"/api/v1/maintenance/{window_id}", None)

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
            method, self.base_url.rstrip("/") + path, json=body, params=query, headers=headers
        ) as response:
            text = await response.text()
            try:
                data = json.loads(text) if text else {}
            except json.JSONDecodeError:
                data = {"error": text[:200]}
            if response.status >= 400:
                message = str(data.get("error", data))
                # The field (or the scope) the answer names, as the API gives it.
                named = data.get("scope") or data.get("field")
                raise ApiError(response.status, f"{named}: {message}" if named else message)
            result: dict[str, Any] = data
            return result
