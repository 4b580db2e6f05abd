"""The incident-role rows inside one writer batch (migration 9): who holds each role now."""

from __future__ import annotations

from receiver.incidents.roles import Role, RoleHolder
from receiver.store.codec import from_us, to_us
from receiver.store.sqlite.statements import Statements

_KNOWN = frozenset(r.value for r in Role)


class RoleStatements(Statements):
    """One row a held role; the timeline keeps every change."""

    async def roles(self, incident_id: int) -> dict[Role, RoleHolder]:
        rows = await self._all(
            "SELECT role, user, since, assigned_by FROM incident_roles WHERE incident_id = ?",
            (incident_id,),
        )
        found = {}
        for role, user, since, by in rows:
            if role in _KNOWN:
                known = Role(role)
                found[known] = RoleHolder(known, user, from_us(since), by)
            # else: written by a later ackd that knows more roles, not ours to show
        return found

    async def set_role(self, incident_id: int, holder: RoleHolder) -> None:
        await self._all(
            "INSERT INTO incident_roles (incident_id, role, user, since, assigned_by)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (incident_id, role) DO UPDATE SET"
            " user = excluded.user, since = excluded.since, assigned_by = excluded.assigned_by",
            (incident_id, holder.role.value, holder.user, to_us(holder.since), holder.by),
        )

    async def clear_role(self, incident_id: int, role: Role) -> None:
        await self._all(
            "DELETE FROM incident_roles WHERE incident_id = ? AND role = ?",
            (incident_id, role.value),
        )
