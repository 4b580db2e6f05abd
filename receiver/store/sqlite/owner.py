"""One ackd per store: an exclusive lock on `<db>.lock`, taken before the store opens.

Two daemons on one database both run its outbox and its deadlines. The second's opening ends
the leases of the first's sends in flight (it takes them for a crash's), and its dispatcher
sends them again: the same page twice. A second `ackd serve` reached the store before it found
its port busy, so even a start that failed could do it. The lock is flock(2) on a file of its
own: the kernel drops it when the process dies, SIGKILL included, so a crash never leaves a
stale lock; and it is not SQLite's file, whose POSIX locks any close of a descriptor of it
would drop (see shm.py). `ackd backup` reads the store beside a running ackd and takes no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from receiver.core.errors import StartupError

FILE_MODE = 0o600


class StoreInUse(StartupError):
    """Another process holds the store's lock."""


class StoreOwner:
    """The lock that makes this process the store's only daemon, held from start to stop."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise StoreInUse naming the holder's pid when it wrote one."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise StartupError(f"cannot open the store's lock {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            by = f"another ackd (pid {holder})" if holder else "another ackd"
            raise StoreInUse(
                f"the store {self.db_path} is in use by {by}: stop it, or give this one a"
                " data directory of its own (--data-dir)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no pid left behind to mislead whoever reads it later
        os.close(fd)  # closing the only descriptor of the file ends the flock


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isascii() and text.isdigit() else None
