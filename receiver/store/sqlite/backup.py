"""`ackd backup PATH`: a consistent copy of the store, taken while ackd serves.

It opens the database file itself rather than asking the running daemon: it works whether
ackd runs or not, needs no API token, and never moves a large file through the daemon's event
loop. SQLite's online backup API copies every page inside one read transaction, so the copy is
the database as of one commit; in WAL mode that read blocks nobody, and the daemon keeps
committing beside it. The copy is written next to PATH, switched to a single self-contained
file (journal_mode=DELETE), checked (quick_check), synced, and only then renamed to PATH: a
failed backup never leaves a half-written file under the name of a good one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from receiver.core.errors import AckdError
from receiver.core.frozen import frozen

BUSY_TIMEOUT_S = 10.0


class BackupError(AckdError):
    """The backup could not be made; the message says why, in one line."""


@frozen(slots=True)
class BackupResult:
    path: Path
    size: int
    incidents: int


def backup(db: Path, target: Path) -> BackupResult:
    if not db.is_file():
        raise BackupError(f"no store at {db} (check data_dir and storage.path in the config)")
    if target.is_dir():
        raise BackupError(f"{target} is a directory: give the path of the file to write")
    if not target.parent.is_dir():
        # Else the error named the hidden file written first: "No such file or directory:
        # '/var/backups/ackd/.ackd.db.partial'".
        raise BackupError(f"{target.parent} is not a directory: create it, or give a path in"
                          " an existing one")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        _copy(db, partial)
        incidents = _check(partial)
        _sync(partial)
        os.replace(partial, target)
        _sync_dir(target.parent)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup of {db} to {target} failed: {exc}") from exc
    return BackupResult(target, target.stat().st_size, incidents)


def _copy(db: Path, partial: Path) -> None:
    # The copy holds what the store holds (names, incidents): readable by its owner alone.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        with contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as copy:
            source.backup(copy)  # all pages in one step: one read transaction, one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")
    finally:
        source.close()


def _check(copy: Path) -> int:
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"the copy fails quick_check: {problems[0]}")
        return int(conn.execute("SELECT count(*) FROM incidents").fetchone()[0])


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
