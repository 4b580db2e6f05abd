"""The run-time overrides in memory, and the schedules as people changed them.

The store is the truth: the roster is loaded from it at start and told of each change once
it committed. `schedule(planned)` lays the run-time overrides over a schedule of the running
config; the result is kept until the config or the overrides change, so the on-call memo
(`schedules.OnCallMemo`, which keys on the schedule object) keeps its answers meanwhile and
drops them as soon as anything changes. A config reload brings new schedule objects, over
which the same overrides are laid again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from receiver.oncall.overrides import RuntimeOverride, with_runtime
from receiver.oncall.schedules import Schedule


class Roster:
    def __init__(self) -> None:
        self._overrides: dict[int, RuntimeOverride] = {}
        self._laid: dict[str, tuple[Schedule, Schedule]] = {}
        # Told (once committed) that who is on call may have changed: handoff notices replan.
        self.listeners: list[Callable[[], None]] = []

    def load(self, overrides: Iterable[RuntimeOverride]) -> None:
        self._overrides = {o.id: o for o in overrides}
        self._changed()

    def added(self, overrides: Iterable[RuntimeOverride]) -> None:
        self._overrides.update((o.id, o) for o in overrides)
        self._changed()

    def removed(self, ids: Iterable[int]) -> None:
        for override_id in ids:
            self._overrides.pop(override_id, None)
        self._changed()

    def forget_ended(self, now: datetime) -> None:
        """Overrides that ended change nothing any more (the store keeps them for the record)."""
        ended = [i for i, o in self._overrides.items() if o.leg.end <= now]
        if ended:
            self.removed(ended)

    def of(self, schedule: str) -> list[RuntimeOverride]:
        return sorted((o for o in self._overrides.values() if o.schedule == schedule),
                      key=lambda o: o.id)

    def schedule(self, planned: Schedule) -> Schedule:
        """`planned` (the running config's) with its run-time overrides laid over it."""
        kept = self._laid.get(planned.name)
        if kept is not None and kept[0] is planned:
            return kept[1]
        laid = with_runtime(planned, self.of(planned.name))
        self._laid[planned.name] = (planned, laid)
        return laid

    def _changed(self) -> None:
        self._laid.clear()
        for listener in self.listeners:
            listener()
