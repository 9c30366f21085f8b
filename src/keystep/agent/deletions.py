"""Uploaded batches the collector must delete: ``keystep forget`` adds, the agent drains.

The queue is a small versioned JSON file in the home's state folder. Both writers take an
exclusive lock on a sibling lock file around each read-modify-write, so an id added by
``forget`` while the agent is removing confirmed ones is never lost. An id leaves the queue
only after the collector confirmed the deletion.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from keystep.home import Home, ensure_private_dir, write_json

QUEUE_VERSION: Final = 1


class DeletionQueue:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, home: Home) -> DeletionQueue:
        return cls(home.state_dir / "collector_deletions.json")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        ensure_private_dir(self.path.parent)
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)  # a home file: never readable by others
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read(self) -> list[str]:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{self.path} is unreadable; fix or delete it") from exc
        if not isinstance(doc, dict) or doc.get("version") != QUEUE_VERSION:
            raise RuntimeError(f"{self.path} has an unknown version")
        return [str(i) for i in doc.get("batch_ids", [])]

    def _write(self, ids: Iterable[str]) -> None:
        write_json(self.path, {"version": QUEUE_VERSION, "batch_ids": sorted(set(ids))})

    def ids(self) -> list[str]:
        with self._locked():
            return self._read()

    def add(self, batch_ids: Iterable[str]) -> list[str]:
        """Queue ``batch_ids``; returns everything queued now."""
        with self._locked():
            ids = sorted(set(self._read()) | set(batch_ids))
            self._write(ids)
            return ids

    def remove(self, batch_ids: Iterable[str]) -> None:
        """Drop ids the collector confirmed deleted (ids queued meanwhile stay)."""
        done = set(batch_ids)
        with self._locked():
            self._write(i for i in self._read() if i not in done)
