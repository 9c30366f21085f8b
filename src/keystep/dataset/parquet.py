"""Parquet shards under ``data/`` (DESIGN.md, trajectory dataset), loadable by `datasets`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import pyarrow.parquet as pq

from keystep.dataset.schema import SCHEMA, Row, schema_with_metadata, to_table
from keystep.dataset.writer import DatasetWriter

# Rows per row group: bounded memory (screenshots make rows ~100-200 kB) while keeping
# groups large enough for efficient reads.
ROWS_PER_GROUP: Final = 128
ROWS_PER_FILE: Final = 4096
# Screenshots are already compressed images: zstd over them costs CPU and saves nothing.
COMPRESSION: Final = {
    name: ("none" if name.startswith("screenshot") else "zstd")
    for name in ("screenshot.bytes", "screenshot.path", *SCHEMA.names)
    if name != "screenshot"
}
DICTIONARY_COLUMNS: Final = [n for n in SCHEMA.names if n not in ("screenshot", "ts")]


class ParquetWriter(DatasetWriter):
    def __init__(
        self,
        out: Path,
        *,
        run: int,
        rows_per_group: int = ROWS_PER_GROUP,
        rows_per_file: int = ROWS_PER_FILE,
    ) -> None:
        super().__init__(out, run=run)
        self.rows_per_group = rows_per_group
        self.rows_per_file = rows_per_file
        self._buffer: list[Row] = []
        self._writer: pq.ParquetWriter | None = None
        self._partial: Path | None = None
        self._final: Path | None = None
        self._in_file = 0
        (out / "data").mkdir(parents=True, exist_ok=True)

    def write(self, rows: list[Row]) -> None:
        self._buffer.extend(rows)
        while len(self._buffer) >= self.rows_per_group:
            self._flush(self._buffer[: self.rows_per_group])
            del self._buffer[: self.rows_per_group]

    def _flush(self, rows: list[Row]) -> None:
        if not rows:
            return
        if self._writer is None:
            n = len(self.files)
            self._final = self.out / "data" / f"train-{self.run:04d}-{n:05d}.parquet"
            # Hidden until complete, so a reader never sees a file without its footer.
            self._partial = self._final.with_name("." + self._final.name + ".partial")
            self._writer = pq.ParquetWriter(
                self._partial,
                schema_with_metadata(),
                compression=COMPRESSION,
                use_dictionary=DICTIONARY_COLUMNS,
            )
            self._in_file = 0
        self._writer.write_table(to_table(rows))
        self._in_file += len(rows)
        self.rows += len(rows)
        if self._in_file >= self.rows_per_file:
            self._finish_file()

    def _finish_file(self) -> None:
        if self._writer is None or self._partial is None or self._final is None:
            return
        self._writer.close()
        os.replace(self._partial, self._final)
        self.files.append(self._final)
        self._writer = None

    def close(self) -> list[Path]:
        self._flush(self._buffer)
        self._buffer = []
        self._finish_file()
        return self.files
