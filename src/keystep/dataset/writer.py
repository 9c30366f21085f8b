"""The interface every dataset format's writer implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from keystep.dataset.schema import Row


class DatasetWriter(ABC):
    """Appends rows to a dataset folder. Each export run adds its own files (``run``), so an
    incremental export never rewrites what an earlier run wrote."""

    def __init__(self, out: Path, *, run: int) -> None:
        self.out = out
        self.run = run
        self.files: list[Path] = []
        self.rows = 0

    @abstractmethod
    def write(self, rows: list[Row]) -> None:
        """Append rows (in order)."""

    @abstractmethod
    def close(self) -> list[Path]:
        """Finish this run's files (only now are they complete) and return them."""
