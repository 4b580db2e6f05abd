"""A write queued for a store's writer task, and how its caller is answered: each store's
writer runs a batch of these in one transaction, and a caller hears only after the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from receiver.store.base import Transaction

T = TypeVar("T")


@dataclass(slots=True)
class Job(Generic[T]):
    run: Callable[[Transaction], Awaitable[T]]
    future: asyncio.Future[T]


# A job run: its result, or the error it failed with (its own, not the store's).
Outcome = tuple[Job[Any], Any, BaseException | None]


def answer(outcomes: Iterable[Outcome]) -> None:
    """Each caller its job's result or error (a caller already answered is left alone)."""
    for job, result, error in outcomes:
        if job.future.done():
            continue
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)
