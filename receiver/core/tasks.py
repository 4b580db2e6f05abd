"""Stopping a background task: cancel it and wait until it has ended.

Every loop ackd runs in the background (the timer, the dispatcher, a store's writers, the
replicas' watch) stops the same way on shutdown; waiting for the end, not just cancelling,
means nothing of it still runs once the caller goes on to close what the task used.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (if any) and wait until it has ended; its cancellation is not an error."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
