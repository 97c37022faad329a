"""The store file before SQLite writes to it: one server per file (a lock), and only a file that is ours.

Why a lock: two servers on one file each number rows from what they read at start, so the second
one's every batch collides with the first one's ("UNIQUE constraint failed") and is refused
forever.  The lock is an ``flock`` on ``<store>.lock`` beside the file (released by the kernel
when the process dies, however it dies); the file holds who took it, so the refusal names them.

Why check before opening: SQLite writes as soon as it is asked to (switching to WAL rewrites the
header, creating tables adds pages), so a file that is not an otel-corr store -- another program's
database, a text file, a copy cut short -- must be refused before the first statement, with one
line saying what it is.  An absent or empty file is ours to create; an existing SQLite file must
carry our ``application_id`` (or, written before it existed, our tables and store format).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from ..exceptions import StoreError

__all__ = ["APPLICATION_ID", "StoreLock", "check_store_file"]

#: ``PRAGMA application_id`` of every otel-corr store: "otco".
APPLICATION_ID = 0x6F74636F
_MAGIC = b"SQLite format 3\x00"
_ASIDE = "move it aside or pass --db with another file"


class StoreLock:
    """An exclusive lock on a store file for this process; :class:`StoreError` naming the holder if taken."""

    def __init__(self, path: Path, owner: str) -> None:
        self.path = path.with_name(path.name + ".lock")
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        if not _try_lock(self._fd):
            holder = os.pread(self._fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            self._fd = None
            raise StoreError(
                f"{path} is in use by another otel-corr serve ({holder}): one store has one server;"
                " stop that one or pass --db with another file"
            )
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, owner.encode(), 0)

    def release(self) -> None:
        """Give the lock up (the file stays: removing it could let two servers lock two different files)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


if sys.platform == "win32":  # pragma: no cover - the tests run on Linux

    def _try_lock(fd: int) -> bool:
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:

    def _try_lock(fd: int) -> bool:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def check_store_file(path: Path) -> bool:
    """Raise :class:`StoreError` (one line) unless ``path`` can be our store; True if it is new (absent or empty).

    Nothing is written: a file that fails a check is left exactly as it was.
    """
    directory = path.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot use {path}: it is in a read-only directory, and SQLite creates {path.name}-wal and"
            f" {path.name}-shm beside it; pass --db with a file in a writable directory"
        )
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return True
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"{path} is read-only: make it writable, or pass --db with another file")
    if size == 0:
        return True
    with open(path, "rb") as file:
        header = file.read(100)
    if not header.startswith(_MAGIC):
        raise StoreError(f"{path} is not an SQLite database, so not an otel-corr store: {_ASIDE}")
    if len(header) < 100:
        raise StoreError(f"{path} is truncated ({size} bytes, less than an SQLite header): {_ASIDE}")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count is valid when its change counter matches "version-valid-for" (bytes 92-95).
    # Not with a WAL left behind: a checkpoint cut short writes page 1 (with the new count) before the
    # last pages, and the WAL, which SQLite replays on open, still holds them all.
    wal = path.with_name(path.name + "-wal")
    unreplayed = wal.exists() and wal.stat().st_size > 0
    if header[24:28] == header[92:96] and size < pages * page_size and not unreplayed:
        raise StoreError(f"{path} is truncated ({size:,} bytes of {pages * page_size:,}): {_ASIDE}")
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:
            application_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} cannot be read as SQLite ({exc}): {_ASIDE}") from None
    # Stores of format 4 and 5 were written before the application ID: they are known by their tables.
    if application_id != APPLICATION_ID and not (application_id == 0 and {"spans", "resources"} <= tables):
        raise StoreError(
            f"{path} is another program's SQLite database (application_id {application_id}, user_version"
            f" {version}, {len(tables)} tables), not an otel-corr store: {_ASIDE}"
        )
    return False
