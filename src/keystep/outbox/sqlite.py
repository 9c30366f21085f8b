"""The outbox: sealed envelopes waiting for upload, in SQLite with a write-ahead log.

Fsync policy: the database runs in WAL mode with ``synchronous=FULL``, and every ``put``,
``acknowledge`` and ``forget`` is one transaction. SQLite fsyncs the WAL at each commit, so
when ``put`` returns the batch survives a crash, ``kill -9`` or power loss; checkpoints
fsync the main file before the WAL is reused. A crash mid-transaction rolls back on the
next open, so the outbox is never half-written. ``secure_delete`` overwrites freed pages
so a forgotten batch's bytes do not linger in the file.

Only sealed v1 envelopes are stored; after upload (``acknowledge``) the envelope bytes go
but ``(batch_id, t_start, t_end)`` stay, so ``forget`` can name uploaded batches to delete
on the collector too.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from keystep.home import ensure_private_dir
from keystep.sqlite_wal import enable_wal

SCHEMA_VERSION: Final = 1
PENDING: Final = "pending"
ACKNOWLEDGED: Final = "acknowledged"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL,
    t_start  REAL NOT NULL,
    t_end    REAL NOT NULL,
    envelope BLOB,
    state    TEXT NOT NULL CHECK (state IN ('pending', 'acknowledged')),
    CHECK ((state = 'pending') = (envelope IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS batches_time ON batches (t_start, t_end);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class OutboxError(RuntimeError):
    """The outbox cannot be opened or written (disk full, unreadable, newer schema)."""


@dataclass(frozen=True, slots=True)
class PendingBatch:
    batch_id: str
    seq: int
    t_start: float
    t_end: float
    envelope: bytes


def _reason(exc: sqlite3.Error) -> str:
    msg = str(exc)
    if "full" in msg:
        return "the disk is full"
    return msg or type(exc).__name__


class Outbox:
    """Safe to share between threads of one process; several processes may open it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            ensure_private_dir(path.parent)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
            enable_wal(self._db, timeout=30)
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(f"{path} has outbox schema {version}, newer than this keystep")
            if version < SCHEMA_VERSION:
                with self._tx():
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            self._db.execute(stmt)
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the outbox {path}: {_reason(exc)}") from exc
        except OSError as exc:
            raise OutboxError(f"cannot open the outbox {path}: {exc.strerror}") from exc

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def reserve_seq(self) -> int:
        """The next batch sequence number, durably (numbers are never reused, even after forget)."""
        with self._lock, self._tx():
            row = self._db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
            nxt = (row[0] if row else 0) + 1
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES ('seq', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (nxt,),
            )
        return int(nxt)

    def put(self, batch_id: str, seq: int, t_start: float, t_end: float, envelope: bytes) -> None:
        with self._lock, self._tx():
            self._db.execute(
                "INSERT INTO batches (batch_id, seq, t_start, t_end, envelope, state) "
                "VALUES (?, ?, ?, ?, ?, 'pending')",
                (batch_id, seq, t_start, t_end, envelope),
            )

    def pending(self, limit: int | None = None) -> list[PendingBatch]:
        """Envelopes not yet acknowledged, oldest first."""
        sql = (
            "SELECT batch_id, seq, t_start, t_end, envelope FROM batches "
            "WHERE state = 'pending' ORDER BY seq"
        )
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (limit,)
        with self._lock:
            rows = self._run(sql, params)
        return [PendingBatch(r[0], int(r[1]), float(r[2]), float(r[3]), bytes(r[4])) for r in rows]

    def acknowledge(self, batch_id: str) -> None:
        """The collector has it: drop the bytes, keep the id and time range for ``forget``."""
        with self._lock, self._tx():
            self._db.execute(
                "UPDATE batches SET envelope = NULL, state = 'acknowledged' "
                "WHERE batch_id = ? AND state = 'pending'",
                (batch_id,),
            )

    def forget(self, t0: float, t1: float) -> list[str]:
        """Delete every batch overlapping ``[t0, t1]`` whole; returns their ids (any state)."""
        with self._lock, self._tx():
            rows = self._db.execute(
                "SELECT batch_id FROM batches WHERE t_start <= ? AND t_end >= ?", (t1, t0)
            ).fetchall()
            self._db.execute("DELETE FROM batches WHERE t_start <= ? AND t_end >= ?", (t1, t0))
        return [str(r[0]) for r in rows]

    def overlapping(self, t0: float, t1: float) -> list[tuple[str, str]]:
        """``(batch_id, state)`` of every batch overlapping ``[t0, t1]``."""
        with self._lock:
            rows = self._run(
                "SELECT batch_id, state FROM batches WHERE t_start <= ? AND t_end >= ? "
                "ORDER BY seq",
                (t1, t0),
            )
        return [(str(r[0]), str(r[1])) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._run(
                "SELECT state, COUNT(*), COALESCE(SUM(LENGTH(envelope)), 0) "
                "FROM batches GROUP BY state",
                (),
            )
        out = {PENDING: 0, ACKNOWLEDGED: 0, "pending_bytes": 0}
        for state, n, size in rows:
            out[str(state)] = int(n)
            if state == PENDING:
                out["pending_bytes"] = int(size)
        return out

    def _run(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        try:
            return list(self._db.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox: {_reason(exc)}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error); sqlite errors become OutboxError."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write the outbox: {_reason(exc)}") from exc

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.Error as err:
                self._rollback()
                raise OutboxError(f"cannot write the outbox: {_reason(err)}") from err
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise OutboxError(f"cannot write the outbox: {_reason(exc)}") from exc

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
