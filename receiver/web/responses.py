"""JSON error bodies that name what was wrong, and JSON renderings of domain objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import msgspec
from aiohttp import web

from receiver.core.model import Alert, GrafanaDetails, Incident, TimelineEvent
from receiver.incidents import facts
from receiver.incidents.roles import Role, RoleHolder


def error(
    status: int,
    message: str,
    field: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return _json(body, status, headers)


def unauthorized(message: str) -> web.Response:
    """401 with the challenge a client needs to know how to authenticate."""
    return error(401, message, "Authorization", headers={"WWW-Authenticate": 'Bearer realm="ackd"'})


def ok(body: Mapping[str, Any], status: int = 200) -> web.Response:
    # _json's work without its two calls: every webhook's answer
    return web.Response(body=_ENCODER.encode(body), status=status,
                        content_type="application/json", charset="utf-8")


def _json(body: Any, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=dumps(body), status=status, headers=headers, content_type="application/json",
        charset="utf-8",
    )


def dumps(value: Any) -> bytes:
    """msgspec writes datetimes (UTC as ...Z), enums and dataclasses itself."""
    return _ENCODER.encode(value)


def _default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


_ENCODER = msgspec.json.Encoder(enc_hook=_default)


def incident_json(incident: Incident) -> dict[str, Any]:
    # detected (an alert raised it), reported (declared by a person) or drill
    body = {**asdict(incident), "detection": incident.detection}
    if not incident.acknowledgement_stands:  # triggered again: nobody holds it
        body["acknowledged_by"] = body["acknowledged_at"] = None
    return body


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": alert.starts_at,
        "endsAt": alert.ends_at,
        "generatorURL": alert.generator_url,
        **(_grafana_json(alert.grafana) if alert.grafana is not None else {}),
    }


def _grafana_json(details: GrafanaDetails) -> dict[str, Any]:
    """Under Grafana's own names, as its webhook sent them."""
    return {
        "silenceURL": details.silence_url,
        "dashboardURL": details.dashboard_url,
        "panelURL": details.panel_url,
        "imageURL": details.image_url,
        "values": dict(details.values),
        "valueString": details.value_string,
    }


def event_json(event: TimelineEvent) -> dict[str, Any]:
    return {"at": event.at, "kind": event.kind, "actor": event.actor, "detail": dict(event.detail)}


def escalation_json(incident: Incident, timeline: Sequence[TimelineEvent]) -> dict[str, Any]:
    """Where the incident's escalation stands, as its timeline says: `exhausted_at` when it
    ran out (every step and repeat paged, nobody acknowledged) and still stands, with whom it
    paged; null once a person took it or a new run began. `deferred_until` while a
    low-urgency escalation waits for the team's working hours, with what it holds (`held`:
    `start`, the run's first page; `step`, `held_step` of `held_cycle`; `end`, the end of
    the last step's wait); null once it fired, started over or was taken."""
    ran_out = facts.exhausted(incident, timeline)
    hold = facts.deferred(incident, timeline)
    return {
        "exhausted_at": None if ran_out is None else ran_out.at,
        "paged": [] if ran_out is None else list(ran_out.detail.get("paged", ())),
        "deferred_until": None if hold is None else hold.until,
        "held": None if hold is None else hold.held,
        "held_step": None if hold is None else hold.step,
        "held_cycle": None if hold is None else hold.cycle,
    }


def roles_json(held: Mapping[Role, RoleHolder]) -> dict[str, Any]:
    """The roles held now, by role name: {"commander": {"user", "since", "by"}, ...}."""
    return {
        role.value: {"user": h.user, "since": h.since, "by": h.by}
        for role in Role if (h := held.get(role)) is not None
    }
