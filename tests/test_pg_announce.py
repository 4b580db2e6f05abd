"""The deadline announcements of a PostgreSQL replica's batches, gathered into few statements
(store/postgres/announce.py): the sender on its own, with a recording twin of the statement."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from receiver.store.postgres.announce import GATHER, Announcer


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


async def test_the_batches_of_one_gathering_are_announced_in_one_statement() -> None:
    sent = _Sent()
    announcer = Announcer(sent)
    began = time.monotonic()
    announcer.add(["1:100"])
    await asyncio.sleep(GATHER / 5)
    announcer.add(["2:200", "3:300"])  # while the first waits: the same statement
    await asyncio.sleep(GATHER * 3)
    announcer.add(["4:400"])  # after it went: the next
    await asyncio.sleep(GATHER * 3)
    assert sent.sent == [["1:100", "2:200", "3:300"], ["4:400"]]
    assert sent.at[0] - began >= GATHER * 0.9  # it waited for others to join


async def test_closing_sends_what_is_pending_at_once() -> None:
    sent = _Sent()
    announcer = Announcer(sent)
    announcer.add(["1:100"])
    began = time.monotonic()
    await announcer.close()
    assert sent.sent == [["1:100"]]
    assert time.monotonic() - began < GATHER


async def test_a_failed_send_leaves_the_next_ones_to_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent = _Sent(fail_first=True)
    announcer = Announcer(sent)
    with caplog.at_level(logging.ERROR):
        announcer.add(["1:100"])
        await asyncio.sleep(GATHER * 3)
        announcer.add(["2:200"])
        await announcer.close()
    assert sent.sent == [["2:200"]]
    assert "announcing 1 deadline(s) failed" in caplog.text
