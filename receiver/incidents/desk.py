"""The incident desk: people working an incident (roles, notes), one writer job each.

Each use case reads the incident and its roles, asks the pure modules (roles.py, notes.py)
what to write, and writes it together with its timeline event, so a change and its record
commit or fail as one. The actor is the principal's name (see core/access.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.model import Incident, TimelineEvent
from receiver.incidents import notes, roles
from receiver.incidents.roles import Role, RoleChange, RoleHolder
from receiver.store import Store, Transaction
from receiver.telemetry.logformat import fields

log = logging.getLogger(__name__)

class IncidentDesk:
    def __init__(self, store: Store, clock: Clock, config: Callable[[], Config]) -> None:
        self._store = store
        self._clock = clock
        self._config = config

    async def roles(self, incident_id: int) -> dict[Role, RoleHolder]:
        """The roles held now; NotFound for an unknown incident."""

        async def job(tx: Transaction) -> dict[Role, RoleHolder]:
            await tx.incident(incident_id)
            return await tx.roles(incident_id)

        return await self._store.write(job)

    async def assign(
        self, incident_id: int, role: Role, user: str, actor: str
    ) -> dict[Role, RoleHolder]:
        users = self._config().users

        async def job(tx: Transaction) -> dict[Role, RoleHolder]:
            incident = await tx.incident(incident_id)
            held = await tx.roles(incident_id)
            change = roles.assign(incident, held, role, user, actor, users, self._clock.now())
            return await self._write(tx, incident, held, change)

        result = await self._store.write(job)
        log.info("incident #%d: %s is %s (by %s)", incident_id, user, role.label, actor,
                 extra=fields("role_assigned", incident_id))
        return result

    async def clear(self, incident_id: int, role: Role, actor: str) -> dict[Role, RoleHolder]:
        async def job(tx: Transaction) -> dict[Role, RoleHolder]:
            incident = await tx.incident(incident_id)
            held = await tx.roles(incident_id)
            change = roles.clear(incident, held, role, actor, self._clock.now())
            return await self._write(tx, incident, held, change)

        return await self._store.write(job)

    async def note(self, incident_id: int, text: str, actor: str) -> TimelineEvent:
        """Post a note; from whoever speaks for the incident, it is a status update."""

        async def job(tx: Transaction) -> TimelineEvent:
            incident = await tx.incident(incident_id)
            held = await tx.roles(incident_id)
            event = notes.note(incident, held, text, actor, self._clock.now())
            await tx.append(incident_id, [event])
            return event

        return await self._store.write(job)

    async def _write(
        self, tx: Transaction, incident: Incident, held: dict[Role, RoleHolder],
        change: RoleChange,
    ) -> dict[Role, RoleHolder]:
        if change.event is None:
            return held  # nothing changed
        if change.holder is None:
            await tx.clear_role(incident.id, change.role)
        else:
            await tx.set_role(incident.id, change.holder)
        await tx.append(incident.id, [change.event])
        return roles.applied(held, change)
