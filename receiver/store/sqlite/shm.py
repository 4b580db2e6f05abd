"""The WAL index file (`<db>-shm`): is it still safe for SQLite to write?

SQLite maps the -shm file into memory and writes to it on every transaction, the readers' too.
When the file can no longer take writes through that mapping (made immutable, truncated under
the mapping, its file system remounted read-only), the first store to a page of it raises
SIGBUS and the process dies on the spot, with no word said. SQLite cannot see it coming; we
can: a few system calls on a descriptor of our own, before each transaction, find each of
those states, and the store refuses the transaction (503, retried by Alertmanager) instead of
letting SQLite touch the mapping. What was committed before is in the WAL, which the next
opening of the database reads again. The check and the writes are not atomic: the file
turning unwritable while a transaction is under way (milliseconds, most of them the commit's
fsync; the writer checks before BEGIN and again before COMMIT) still ends in SIGBUS.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
from pathlib import Path

from receiver.core.errors import StoreUnavailable

FS_IOC_GETFLAGS = 0x80086601  # linux/fs.h, on 64-bit Linux
FS_IMMUTABLE_FL = 0x00000010
FS_APPEND_FL = 0x00000020


class ShmGuard:
    def __init__(self, db: Path) -> None:
        self.path = Path(f"{db}-shm")
        self._fd: int | None = None
        self._size = 0
        self._flags_supported = True

    def open(self) -> None:
        """Start watching; call once SQLite has opened the database in WAL mode."""
        with contextlib.suppress(FileNotFoundError):
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self._size = os.fstat(self._fd).st_size

    def close(self) -> None:
        """Call only once SQLite's connections to the database are closed: closing any
        descriptor of a file drops every POSIX lock the process holds on it, SQLite's own
        locks on the WAL index included, and another process could then take it over."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def problem(self) -> str | None:
        """Why SQLite must not touch the file now, or None."""
        fd = self._fd
        if fd is None:
            return None
        stat = os.fstat(fd)
        if stat.st_nlink == 0:
            return "was deleted while in use"
        if stat.st_size < self._size:
            return f"was truncated while in use ({stat.st_size} bytes, was {self._size})"
        self._size = stat.st_size  # SQLite only ever grows it while it is open
        if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
            return "is on a file system mounted read-only"
        flags = self._flags(fd)
        if flags & FS_IMMUTABLE_FL:
            return "is immutable (chattr +i)"
        if flags & FS_APPEND_FL:
            return "is append-only (chattr +a)"
        return None

    def check(self) -> None:
        """Raise StoreUnavailable naming the file and the cause, if it cannot take writes."""
        try:
            problem = self.problem()
        except OSError as exc:
            problem = f"cannot be checked ({exc})"
        if problem is not None:
            raise StoreUnavailable(
                f"{self.path} {problem}: SQLite cannot write its WAL index, so the store takes"
                " no transaction until it is writable again"
            )

    def _flags(self, fd: int) -> int:
        if not self._flags_supported:
            return 0
        found = array.array("l", [0])
        try:
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, found)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                self._flags_supported = False  # a file system without inode flags
                return 0
            raise
        return int(found[0])
