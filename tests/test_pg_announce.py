"""The deadline announcements of a PostgreSQL replica's batches, gathered into few statements
(store/postgres/announce.py): the sender on its own, with a recording twin of the statement."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from receiver.store.postgres.announce import Announcer

GATHERING = 0.2  # seconds: the tests' gathering, long beside a loaded machine's scheduling
LONG = 10.0


class _Sent:
    def __init__(self, fail_first: bool = False) -> None:
        self.sent: list[list[str]] = []
        self.at: list[float] = []
        self._fail = fail_first

    async def __call__(self, payloads: list[str]) -> None:
        self.at.append(time.monotonic())
        if self._fail:
            self._fail = False
            raise RuntimeError("a bug in sending")
        self.sent.append(payloads)


async def _until(done: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for `done`, polling: on a loaded machine a task runs late, never early."""
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def test_the_batches_of_one_gathering_are_announced_in_one_statement() -> None:
    sent = _Sent()
    announcer = Announcer(sent, gather=GATHERING)
    began = time.monotonic()
    announcer.add(["1:100"])
    await asyncio.sleep(0)  # the sender is gathering
    announcer.add(["2:200", "3:300"])  # while the first waits: the same statement
    await _until(lambda: len(sent.sent) == 1)
    assert sent.at[0] - began >= GATHERING * 0.99  # it waited for others to join
    announcer.add(["4:400"])  # after it went: the next
    await _until(lambda: len(sent.sent) == 2)
    assert sent.sent == [["1:100", "2:200", "3:300"], ["4:400"]]
    await announcer.close()


async def test_closing_sends_what_is_pending_at_once_and_a_reopened_store_gathers_again(
) -> None:
    sent = _Sent()
    announcer = Announcer(sent, gather=LONG)
    announcer.add(["1:100"])
    began = time.monotonic()
    await announcer.close()
    assert sent.sent == [["1:100"]]
    assert time.monotonic() - began < LONG / 2  # not after the gathering
    announcer.add(["2:200"])  # opened again (a store whose open() failed, say)
    await asyncio.sleep(GATHERING)
    assert sent.sent == [["1:100"]]  # gathering, not sent at once
    await announcer.close()
    assert sent.sent == [["1:100"], ["2:200"]]


async def test_a_failed_send_leaves_the_next_ones_to_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent = _Sent(fail_first=True)
    announcer = Announcer(sent, gather=GATHERING)
    with caplog.at_level(logging.ERROR):
        announcer.add(["1:100"])
        await _until(lambda: len(sent.at) == 1)  # the failed send
        announcer.add(["2:200"])
        await announcer.close()
    assert sent.sent == [["2:200"]]
    assert "announcing 1 deadline(s) failed" in caplog.text
