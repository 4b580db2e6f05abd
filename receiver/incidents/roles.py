"""Incident roles: who commands, leads the technical work, communicates and writes it down.

Pure decisions over the roles an incident has now: assigning a role (a hand-over when someone
held it), clearing one, and who a status note or a cadence reminder concerns. The store keeps
the current holders; the timeline keeps every change with who made it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from enum import StrEnum

from receiver.core.errors import InvalidTransition, NotFound, PayloadError
from receiver.core.frozen import frozen
from receiver.core.model import EventKind, Incident, TimelineEvent


class Role(StrEnum):
    COMMANDER = "commander"
    TECH_LEAD = "tech_lead"
    COMMS_LEAD = "comms_lead"
    SCRIBE = "scribe"

    @property
    def label(self) -> str:
        return _TITLES[self]


_TITLES = {
    Role.COMMANDER: "incident commander",
    Role.TECH_LEAD: "technical lead",
    Role.COMMS_LEAD: "communications lead",
    Role.SCRIBE: "scribe",
}


@frozen(slots=True)
class RoleHolder:
    role: Role
    user: str
    since: datetime
    by: str  # who assigned it


Holders = Mapping[Role, RoleHolder]


@frozen(slots=True)
class RoleChange:
    """What to write: the new holder (None: the role is cleared) and the timeline event; no
    event when nothing changes (assigning the holder again)."""

    role: Role
    holder: RoleHolder | None
    event: TimelineEvent | None


class UnknownRole(NotFound):
    """A path names a role that does not exist: 404 naming the field `role`."""


def applied(before: Holders, change: RoleChange) -> dict[Role, RoleHolder]:
    """The roles held once `change` is written."""
    after = dict(before)
    if change.holder is None:
        after.pop(change.role, None)
    else:
        after[change.role] = change.holder
    return after


def parse_role(text: str) -> Role:
    """A role named in a path; UnknownRole otherwise, since the path names no resource."""
    try:
        return Role(text)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise UnknownRole(f"unknown role {text!r}; one of {known}") from None


def assign(
    incident: Incident, holders: Holders, role: Role, user: str, actor: str,
    users: Collection[str], now: datetime,
) -> RoleChange:
    """`user` takes `role`. A role someone else held is handed over: the event names both."""
    _check_open(incident, "roles")
    if user not in users:
        raise PayloadError("user", f"unknown user {user!r}")
    held = holders.get(role)
    if held is not None and held.user == user:
        return RoleChange(role, held, None)
    detail = {"role": role.value, "user": user, "previous": held.user if held else None}
    event = TimelineEvent(now, EventKind.ROLE_ASSIGNED, actor, detail)
    return RoleChange(role, RoleHolder(role, user, now, actor), event)


def clear(incident: Incident, holders: Holders, role: Role, actor: str,
          now: datetime) -> RoleChange:
    """Nobody holds `role` any more; clearing a role nobody holds changes nothing."""
    _check_open(incident, "roles")
    held = holders.get(role)
    if held is None:
        return RoleChange(role, None, None)
    detail = {"role": role.value, "previous": held.user}
    return RoleChange(role, None, TimelineEvent(now, EventKind.ROLE_CLEARED, actor, detail))


def speaks_for(holders: Holders, author: str) -> bool:
    """Whether a note by `author` is a status update: it is when they are the communications
    lead, or the commander while nobody is (the commander communicates until they delegate)."""
    comms = holders.get(Role.COMMS_LEAD)
    if comms is not None:
        return comms.user == author
    commander = holders.get(Role.COMMANDER)
    return commander is not None and commander.user == author


def accountable(incident: Incident, holders: Holders) -> str | None:
    """Who is reminded that a status update is due: the commander, else whoever holds the
    incident's acknowledgement (not once it is triggered again: an unack says "not me"),
    else nobody."""
    commander = holders.get(Role.COMMANDER)
    return accountable_of(None if commander is None else commander.user,
                          incident.acknowledged_by if incident.acknowledgement_stands else None)


def accountable_of(commander: str | None, acknowledged_by: str | None) -> str | None:
    """`accountable`, from the commander's name and whoever acknowledged."""
    return commander if commander is not None else acknowledged_by


def _check_open(incident: Incident, what: str) -> None:
    if not incident.is_open:
        raise InvalidTransition(
            f"incident {incident.id} is resolved (by {incident.resolved_by}); its {what} "
            "can no longer change"
        )
