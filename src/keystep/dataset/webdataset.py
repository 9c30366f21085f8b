"""WebDataset tar shards: per step ``<key>.json`` (the columns) and ``<key>.<ext>`` (the screen)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Final

from keystep.dataset.schema import Row
from keystep.dataset.writer import DatasetWriter

ROWS_PER_SHARD: Final = 1024
# Image extensions by magic bytes, so that WebDataset decoders pick the right codec.
_MAGIC: Final = ((b"\xff\xd8", "jpg"), (b"\x89PNG", "png"), (b"RIFF", "webp"))


def image_ext(data: bytes) -> str:
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    return "bin"


class WebDatasetWriter(DatasetWriter):
    def __init__(self, out: Path, *, run: int, rows_per_shard: int = ROWS_PER_SHARD) -> None:
        super().__init__(out, run=run)
        self.rows_per_shard = rows_per_shard
        out.mkdir(parents=True, exist_ok=True)
        self._tar: tarfile.TarFile | None = None
        self._partial: Path | None = None
        self._final: Path | None = None
        self._in_shard = 0

    def _add(self, name: str, data: bytes) -> None:
        assert self._tar is not None
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 0  # identical output whichever engine or day built it
        self._tar.addfile(info, io.BytesIO(data))

    def write(self, rows: list[Row]) -> None:
        for row in rows:
            if self._tar is None:
                self._final = self.out / f"shard-{self.run:04d}-{len(self.files):06d}.tar"
                self._partial = self._final.with_name("." + self._final.name + ".partial")
                # The shard stays open across write() calls, hence no context manager.
                self._tar = tarfile.open(  # noqa: SIM115
                    self._partial, "w", format=tarfile.USTAR_FORMAT
                )
                self._in_shard = 0
            # WebDataset splits keys at the first dot: keep the key dot-free.
            key = f"{row.episode_id}_{row.step:06d}"
            columns = json.dumps(row.columns(), ensure_ascii=False, sort_keys=True)
            self._add(f"{key}.json", columns.encode("utf-8"))
            if row.screenshot is not None:
                self._add(f"{key}.{image_ext(row.screenshot)}", row.screenshot)
            self._in_shard += 1
            self.rows += 1
            if self._in_shard >= self.rows_per_shard:
                self._finish()

    def _finish(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        assert self._partial is not None and self._final is not None
        os.replace(self._partial, self._final)
        self.files.append(self._final)
        self._tar = None

    def close(self) -> list[Path]:
        self._finish()
        return self.files
