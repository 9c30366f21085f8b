"""Several processes opening a new outbox (or collector database) at once all get it.

`keystep status` polled while the recorder creates its outbox once failed with "database is
locked": SQLite refuses a concurrent switch to WAL mode at once, without waiting.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from keystep.outbox import Outbox, OutboxError
from keystep.store.base import RepositoryError
from keystep.store.sqlite import SqliteRepository

ROUNDS = 30
OPENERS = 6


def _open_outbox(path: str, start: float) -> str | None:
    while time.time() < start:
        pass
    try:
        box = Outbox(Path(path))
        box.counts()
        box.close()
    except OutboxError as exc:
        return str(exc)
    return None


def _open_repository(path: str, start: float) -> str | None:
    while time.time() < start:
        pass
    try:
        SqliteRepository(Path(path)).close()
    except RepositoryError as exc:
        return str(exc)
    return None


def _race(opener: object, tmp_path: Path) -> list[str]:
    errors: list[str] = []
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(OPENERS) as pool:
        for n in range(ROUNDS):
            path = str(tmp_path / f"r{n}" / "db.sqlite")
            start = time.time() + 0.05
            results = pool.starmap(opener, [(path, start)] * OPENERS)  # type: ignore[arg-type]
            errors += [r for r in results if r]
    return errors


def test_processes_opening_a_new_outbox_at_once_all_get_it(tmp_path: Path) -> None:
    assert _race(_open_outbox, tmp_path) == []


def test_processes_opening_a_new_collector_database_at_once_all_get_it(tmp_path: Path) -> None:
    assert _race(_open_repository, tmp_path) == []
