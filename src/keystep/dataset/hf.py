"""The Hugging Face `datasets` save-to-disk layout (``load_from_disk(DIR)``), written streaming."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from keystep.dataset.schema import HF_FEATURES, Row, schema_with_metadata, to_table
from keystep.dataset.writer import DatasetWriter

ROWS_PER_BATCH: Final = 128
ROWS_PER_FILE: Final = 4096


class HFWriter(DatasetWriter):
    """Arrow IPC stream shards plus ``state.json`` and ``dataset_info.json``, as
    ``Dataset.save_to_disk`` writes them; a later run adds shards and relists them all."""

    def __init__(self, out: Path, *, run: int) -> None:
        super().__init__(out, run=run)
        out.mkdir(parents=True, exist_ok=True)
        self._buffer: list[Row] = []
        self._sink: pa.OSFile | None = None
        self._stream: pa.ipc.RecordBatchStreamWriter | None = None
        self._partial: Path | None = None
        self._final: Path | None = None
        self._in_file = 0

    def write(self, rows: list[Row]) -> None:
        self._buffer.extend(rows)
        while len(self._buffer) >= ROWS_PER_BATCH:
            self._flush(self._buffer[:ROWS_PER_BATCH])
            del self._buffer[:ROWS_PER_BATCH]

    def _flush(self, rows: list[Row]) -> None:
        if not rows:
            return
        if self._stream is None:
            self._final = self.out / f"data-{self.run:04d}-{len(self.files):05d}.arrow"
            self._partial = self._final.with_name("." + self._final.name + ".partial")
            self._sink = pa.OSFile(str(self._partial), "wb")
            self._stream = pa.ipc.new_stream(self._sink, schema_with_metadata())
            self._in_file = 0
        for batch in to_table(rows).to_batches():
            self._stream.write_batch(batch)
        self._in_file += len(rows)
        self.rows += len(rows)
        if self._in_file >= ROWS_PER_FILE:
            self._finish_file()

    def _finish_file(self) -> None:
        if self._stream is None or self._sink is None:
            return
        self._stream.close()
        self._sink.close()
        assert self._partial is not None and self._final is not None
        os.replace(self._partial, self._final)
        self.files.append(self._final)
        self._stream = self._sink = None

    def close(self) -> list[Path]:
        self._flush(self._buffer)
        self._buffer = []
        self._finish_file()
        shards = sorted(p.name for p in self.out.glob("data-*.arrow"))
        fingerprint = hashlib.sha256("\n".join(shards).encode()).hexdigest()[:16]
        state: dict[str, Any] = {
            "_data_files": [{"filename": name} for name in shards],
            "_fingerprint": fingerprint,
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        info = {
            "citation": "",
            "description": "",
            "features": HF_FEATURES,
            "homepage": "",
            "license": "",
        }
        (self.out / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        (self.out / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
        return self.files
