"""Run-time overrides as a service: checks, the store, the roster, in that order.

A change is read and checked against the running config (unknown schedule, bad field, a
scope the actor lacks) before anything is written; it is written in one writer job, and only
once committed does the roster (and with it escalation) see it. Deleting a swap's leg deletes
the swap.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.core.errors import Forbidden, NotFound
from receiver.oncall.calendar import origin
from receiver.oncall.overrides import (
    Actor,
    Change,
    RuntimeOverride,
    Scope,
    idle_leg,
    overruled,
    parse_change,
    refusal,
)
from receiver.oncall.roster import Roster
from receiver.oncall.schedules import Override, Schedule, applying, next_change, on_call
from receiver.store import Store, Transaction


class OnCallService:
    def __init__(
        self, store: Store, clock: Clock, roster: Roster, config: Callable[[], Config]
    ) -> None:
        self._store = store
        self._clock = clock
        self.roster = roster
        self._config = config

    def planned(self, name: str) -> Schedule:
        """The running config's schedule `name`; NotFound names those there are."""
        found = self._config().schedules.get(name)
        if found is None:
            known = ", ".join(self._config().schedules) or "none"
            raise NotFound(f"unknown schedule {name!r}; schedules: {known}")
        return found

    def laid(self, name: str) -> Schedule:
        return self.roster.schedule(self.planned(name))

    async def create(self, name: str, body: Any, actor: Actor) -> list[RuntimeOverride]:
        planned = self.planned(name)
        now = self._clock.now()
        change = parse_change(body, planned, self._config().users, now)
        _allow(actor, change)
        idle = idle_leg(self.roster.schedule(planned), change)
        if idle is not None:
            raise idle

        async def job(tx: Transaction) -> list[RuntimeOverride]:
            made = await tx.add_overrides(name, change, actor.name, now)
            tx.after_commit(lambda: self._added(made, now))
            return made

        return await self._store.write(job)

    def _added(self, made: list[RuntimeOverride], now: datetime) -> None:
        # Those that ended decide nothing any more: the roster keeps only what may still
        # apply (the store keeps every one, for the record).
        self.roster.forget_ended(now)
        self.roster.added(made)

    async def delete(self, name: str, override_id: int, actor: Actor) -> list[RuntimeOverride]:
        self.planned(name)

        async def job(tx: Transaction) -> list[RuntimeOverride]:
            found = await tx.override_with_pair(name, override_id)
            _allow(actor, Change(tuple(o.leg for o in found), len(found) > 1))
            ids = [o.id for o in found]
            await tx.delete_overrides(ids)
            tx.after_commit(lambda: self.roster.removed(ids))
            return found

        return await self._store.write(job)

    def listing(self, name: str) -> list[dict[str, Any]]:
        planned = self.planned(name)
        now = self._clock.now()
        return [override_json(o, overruled(planned, o.leg))
                for o in self.roster.of(name) if o.leg.end > now]

    def who(self, name: str, at: datetime) -> list[dict[str, Any]]:
        """Each layer's answer at `at` and until when, saying which override decided it and
        which config override a run-time one overruled."""
        laid = self.laid(name)
        answers = []
        for layer in laid.layers:
            deciding = applying(laid, layer.name, at)
            answers.append({
                "layer": layer.name,
                "user": on_call(laid, layer.name, at),
                "until": next_change(laid, layer.name, at),
                "by": origin(laid, layer.name, at),
                "overrules": [_override_json(o) for o in deciding[:-1] if o.origin is None]
                if deciding and deciding[-1].origin else [],
            })
        return answers


def _allow(actor: Actor, change: Change) -> None:
    missing = refusal(actor, change)
    if missing is None:
        return
    if missing is Scope.ADMIN:
        people = " or ".join(sorted(change.people))
        raise Forbidden(missing, f"changing this needs scope 'admin' ({actor.name!r} may "
                                 f"change only their own shifts; this one is {people}'s)")
    raise Forbidden(missing, f"changing on-call needs scope {missing.value!r}")


def override_json(o: RuntimeOverride, overrules: list[Override]) -> dict[str, Any]:
    leg = o.leg
    return {
        "id": o.id, "schedule": o.schedule, "layer": leg.layer, "user": leg.user,
        "replaces": leg.replaces, "start": leg.start, "end": leg.end,
        "swap_with": o.swap_with, "created_by": o.created_by, "created_at": o.created_at,
        "note": o.note,
        # Run time wins where both apply: say so, naming what it overrules.
        "overrules": [_override_json(c) for c in overrules],
    }


def _override_json(o: Override) -> dict[str, Any]:
    return {"source": "config", "user": o.user, "start": o.start, "end": o.end,
            "layer": o.layer, "replaces": o.replaces}
