"""Switching a SQLite database to WAL mode when other processes open it at the same time.

The switch takes an exclusive lock, and SQLite answers "database is locked" at once, without
calling the busy handler, when another connection is in the middle of its own switch or of a
last-connection clean-up. A status command polled while the recorder creates its outbox hit
exactly that. So the switch is retried until the connection's own busy timeout has passed.
"""

from __future__ import annotations

import sqlite3
import time


def enable_wal(db: sqlite3.Connection, timeout: float) -> None:
    """``PRAGMA journal_mode=WAL``, retried for up to ``timeout`` seconds while locked."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        else:
            if str(mode).lower() == "wal":
                return
            # Another connection holds a lock that kept the mode from changing: try again.
            if time.monotonic() + pause > deadline:
                raise sqlite3.OperationalError("database is locked")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc)
    return "locked" in msg or "busy" in msg
