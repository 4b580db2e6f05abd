"""The SQLite writer's thread: a COMMIT handed over starts before the loop goes on.

The loop holds the GIL while it serves requests, and a thread handed a call needs the GIL to
start it: behind a busy loop it waited for the interpreter's switch interval (5 ms) before
its COMMIT began, and once more for each system call of the WAL index's check before it.
Here the switch interval is made far longer than any test, so a thread that had to wait for
the loop to give the GIL up would never start while the loop runs: a call handed over has
started before `run`'s first step returns, because the loop waited for it, the GIL released.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from receiver.store import SqliteStore, Transaction
from receiver.store.sqlite import handoff
from receiver.store.sqlite.handoff import WriterThread


@pytest.fixture
def busy_loop() -> Iterator[None]:
    """No thread takes the GIL from the loop while a test runs (the loop must give it up)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.fixture
def thread() -> Iterator[WriterThread]:
    t = WriterThread("test-writer")
    try:
        yield t
    finally:
        t.stop()


@pytest.mark.usefixtures("busy_loop")
async def test_a_call_handed_over_has_started_when_the_loop_goes_on(
    thread: WriterThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handoff, "HAND_OVER", 30.0)  # the mechanism, not its bound
    began: list[float] = []
    blocking = threading.Event()

    def call() -> str:
        began.append(time.perf_counter())
        thread.started()
        blocking.wait(5.0)  # the GIL released, as a COMMIT's fsync
        return "committed"

    task = asyncio.create_task(thread.run(call, hand_over=True))
    await asyncio.sleep(0)  # the task's first step (the hand-over), then this, in one turn
    assert began, "the thread had not started the call when the loop went on"
    blocking.set()
    assert await task == "committed"


@pytest.mark.usefixtures("busy_loop")
async def test_a_call_not_handed_over_waits_for_the_loop(thread: WriterThread) -> None:
    # What the hand-over saves: without it, the thread starts only once the loop gives up the
    # GIL (here, when the test awaits the call's outcome and the loop waits for I/O).
    began: list[float] = []

    def call() -> None:
        began.append(time.perf_counter())

    task = asyncio.create_task(thread.run(call))
    await asyncio.sleep(0)
    assert not began
    await task
    assert began


@pytest.mark.usefixtures("busy_loop")
async def test_a_handed_over_call_that_does_not_say_it_started_holds_the_loop_at_most_hand_over(
    thread: WriterThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handoff, "HAND_OVER", 0.05)
    release = threading.Event()

    def call() -> None:
        release.wait(5.0)  # blocks before it could say so, never calling started()

    began = time.perf_counter()
    task = asyncio.create_task(thread.run(call, hand_over=True))
    await asyncio.sleep(0)
    held = time.perf_counter() - began
    assert 0.05 <= held < 1.0
    assert not task.done()
    release.set()
    await task


@pytest.mark.usefixtures("busy_loop")
async def test_a_handed_over_call_that_fails_first_lets_the_loop_go_on_at_once(
    thread: WriterThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handoff, "HAND_OVER", 30.0)

    def call() -> None:
        raise OSError("the WAL index cannot be checked")

    began = time.perf_counter()
    task = asyncio.create_task(thread.run(call, hand_over=True))
    await asyncio.sleep(0)
    assert time.perf_counter() - began < 5.0
    with pytest.raises(OSError, match="cannot be checked"):
        await task


async def test_the_sqlite_writer_hands_its_commit_over(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ackd.db")
    await store.open()
    try:
        io = store._io
        assert io is not None
        calls: list[tuple[str, bool]] = []
        run = io.run

        async def recording(call: Any, *, hand_over: bool = False) -> Any:
            calls.append((call.func.__name__, hand_over))
            return await run(call, hand_over=hand_over)

        io.run = recording  # type: ignore[method-assign]

        async def job(tx: Transaction) -> None:
            await tx.heartbeats_arrived(["watchdog"], datetime(2026, 1, 1, tzinfo=UTC))

        await store.write(job)
        assert calls == [("_commit", True)]
        assert await store.heartbeat_arrivals() == {
            "watchdog": datetime(2026, 1, 1, tzinfo=UTC)}
    finally:
        await store.close()
