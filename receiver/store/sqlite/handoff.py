"""The writer's thread: the calls of the SQLite writer that may block, one at a time.

The writer runs its statements on the event loop; what may block goes here: BEGIN IMMEDIATE
when another process holds the write lock, COMMIT (the fsync, and the checkpoint after it),
opening and closing the connection. A COMMIT comes once a batch, so the hop is on the loop's
path of every webhook that writes. `loop.run_in_executor` makes it through a
`concurrent.futures` Future chained to an asyncio one (a _WorkItem, a Condition, three locks,
and a callback on each side); here the loop makes one asyncio future and puts the call on a
queue, and the thread hands the outcome back with `call_soon_threadsafe`.

A call the thread is handed needs the GIL to start, and the loop holds it while it serves
requests: the thread waited for the interpreter's switch interval (5 ms) before its COMMIT
began, at the 90th percentile of a storm's commits, and up to three times more for the WAL
index's checks before it (each system call gives the GIL up and takes it back). So the loop
can hand a call over (`run(..., hand_over=True)`): it waits, the GIL released, until the call
says it reached what blocks (`started`, on the thread), at most HAND_OVER: the thread's
wake-up, 0.26-0.56 ms at the median on the loaded 2-core machine (docs/scaling.md, session 14).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]

# The longest the loop waits for a call it hands over to start (see the module's docstring).
HAND_OVER = 0.002


class WriterThread:
    """One thread that runs the calls given to `run` in order, each awaited by its caller."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, call: Callable[[], T], *, hand_over: bool = False) -> T:
        """`call()` on the thread; its result, or what it raised. A caller cancelled while it
        waits leaves the call to finish on the thread, as run_in_executor would. With
        `hand_over`, the loop first waits (blocking, the GIL released) until the call says it
        `started` its blocking part, or it ended, or HAND_OVER passed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if hand_over:
            self._started.clear()  # the writer awaits each call: none is running now
        self._calls.put((call, future, loop))
        if hand_over:
            self._started.wait(HAND_OVER)
        return await future

    def started(self) -> None:
        """On the thread, by a call about to block (a COMMIT's fsync, its GIL released): the
        loop, waiting in `run(..., hand_over=True)`, goes on."""
        self._started.set()

    def stop(self) -> None:
        """Finish the calls given so far, then end the thread (blocks until it has)."""
        self._calls.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            call, future, loop = item
            try:
                result = call()
            except BaseException as exc:  # handed to the caller, whatever it is
                self._started.set()  # a loop waiting for it to start waits no longer
                _hand_back(loop, _fail, future, exc)
            else:
                self._started.set()
                _hand_back(loop, _settle, future, result)


def _hand_back(loop: asyncio.AbstractEventLoop, how: Callable[..., None], *args: Any) -> None:
    # A closed loop (RuntimeError): nobody waits for the outcome any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(how, *args)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the caller may have been cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
