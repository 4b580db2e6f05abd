"""A Notifier for tests of its callers: delivers nothing, remembers everything."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta

from receiver.core.frozen import frozen
from receiver.notify.notifier import Delivery, DeliveryStatus, Message, mask


@frozen(slots=True)
class Outcome:
    """How RecordingNotifier answers one attempt: after `delay`, with `status`."""

    status: DeliveryStatus = DeliveryStatus.SUCCESS
    delay: timedelta = timedelta(0)
    error: str = ""


DELIVERED = Outcome()


class RecordingNotifier:
    """A Notifier that delivers nothing and remembers everything, for tests of callers.

    Every attempt is recorded in `sent` as (url, message), whatever its outcome. Outcomes are
    set per URL: one Outcome for every attempt, or a sequence taken in order whose last entry
    repeats (e.g. [failure, success] to exercise a retry). Unlisted URLs get `default`.
    """

    def __init__(
        self,
        outcomes: Mapping[str, Outcome | Sequence[Outcome]] | None = None,
        default: Outcome = DELIVERED,
    ) -> None:
        self.sent: list[tuple[str, Message]] = []
        self.closed = False
        self._default = default
        self._outcomes: dict[str, list[Outcome]] = {}
        for url, outcome in (outcomes or {}).items():
            self.set_outcome(url, outcome)

    def set_outcome(self, url: str, outcome: Outcome | Sequence[Outcome]) -> None:
        planned = [outcome] if isinstance(outcome, Outcome) else list(outcome)
        if not planned:
            raise ValueError(f"no outcomes given for {mask(url)}")
        self._outcomes[url] = planned

    def messages(self, url: str) -> list[Message]:
        """Every message sent (attempted) to `url`, in order."""
        return [m for u, m in self.sent if u == url]

    async def send(self, url: str, message: Message) -> Delivery:
        if self.closed:
            return Delivery(DeliveryStatus.FAILURE, 0.0, "the notifier is closed")
        self.sent.append((url, message))
        outcome = self._next(url)
        if outcome.delay > timedelta(0):
            await asyncio.sleep(outcome.delay.total_seconds())
        error = outcome.error or ("" if outcome.status is DeliveryStatus.SUCCESS
                                  else f"simulated {outcome.status.value}")
        return Delivery(outcome.status, outcome.delay.total_seconds(), error)

    async def close(self) -> None:
        self.closed = True

    def _next(self, url: str) -> Outcome:
        planned = self._outcomes.get(url)
        if not planned:
            return self._default
        return planned.pop(0) if len(planned) > 1 else planned[0]
