"""The incident-role rows inside one batch on PostgreSQL (migration 9): who holds each role
now. "user" is a reserved word in PostgreSQL: the column is quoted wherever it is named."""

from __future__ import annotations

from receiver.incidents.roles import Role, RoleHolder
from receiver.store.codec import from_us, to_us
from receiver.store.postgres.statements import Statements

_KNOWN = frozenset(r.value for r in Role)


class RoleStatements(Statements):
    """One row a held role; the timeline keeps every change."""

    async def roles(self, incident_id: int) -> dict[Role, RoleHolder]:
        rows = await self._all(
            'SELECT role, "user", since, assigned_by FROM incident_roles'
            " WHERE incident_id = $1", incident_id,
        )
        found = {}
        for role, user, since, by in rows:
            if role in _KNOWN:  # else written by a later ackd that knows more roles
                known = Role(role)
                found[known] = RoleHolder(known, user, from_us(since), by)
        return found

    async def set_role(self, incident_id: int, holder: RoleHolder) -> None:
        await self._run(
            'INSERT INTO incident_roles (incident_id, role, "user", since, assigned_by)'
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (incident_id, role) DO UPDATE SET"
            ' "user" = excluded."user", since = excluded.since,'
            " assigned_by = excluded.assigned_by",
            incident_id, holder.role.value, holder.user, to_us(holder.since), holder.by,
        )

    async def clear_role(self, incident_id: int, role: Role) -> None:
        await self._run(
            "DELETE FROM incident_roles WHERE incident_id = $1 AND role = $2",
            incident_id, role.value,
        )
