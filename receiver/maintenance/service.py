"""Maintenance windows at the edge: the API's windows in the store and in memory, beside the
config's; the responder asks `windows()` before it pages (escalation/responder.py). Replicas
sharing a store read the windows again when another one changed them (`load`, on its
NOTIFY), so a window made through any replica holds every replica's pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from receiver.config.model import Config
from receiver.core.clock import Clock
from receiver.maintenance.domain import Window
from receiver.store import Store, Transaction


class Maintenance:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: Callable[[], Config],
        changed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self._api: list[Window] = []
        # Told when a window was deleted (held incidents look again at once).
        self.changed = changed

    async def load(self) -> None:
        """Read the API's windows: at start, and when another replica changed them."""
        self._api = await self._store.maintenance_windows()

    def windows(self) -> list[Window]:
        """Every window, the config's and the API's (ended ones too: callers ask for `now`)."""
        return [*self._config().maintenance, *self._api]

    async def add(self, window: Window) -> Window:
        """Store a window from the API; it holds pages from the moment it commits."""
        window = replace(window, created_at=self._clock.now())

        async def job(tx: Transaction) -> int:
            return await tx.add_window(window)

        added = replace(window, id=await self._store.write(job))
        self._api.append(added)
        return added

    async def delete(self, window_id: int) -> Window | None:
        """Remove a window from the API (None if there is no such one); what it held escalates
        from its first step at once if nothing else holds it."""
        found = self._find(window_id)
        if found is None:
            await self.load()  # made through another replica a moment ago, perhaps
            found = self._find(window_id)
        if found is None:
            return None

        async def job(tx: Transaction) -> bool:
            return await tx.delete_window(window_id)

        await self._store.write(job)
        self._api = [w for w in self._api if w.id != window_id]
        if self.changed is not None:
            await self.changed()
        return found

    def _find(self, window_id: int) -> Window | None:
        return next((w for w in self._api if w.id == window_id), None)
