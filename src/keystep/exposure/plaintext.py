"""Unsealed content on disk: decoded batch content or event JSON outside the dataset store."""

from __future__ import annotations

import gzip
import lzma
import sqlite3
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import zstandard

from keystep.exposure.base import Check, Finding, ScanContext, walk

CONTENT_MAGIC: Final = b"KSC1"  # keystep.model.batch's encoded BatchContent
# Event JSON as the recorder and the batch codec write it; sealed bytes never contain it.
EVENT_MARKERS: Final = (
    b'"kind":"text.typed"',
    b'"kind": "text.typed"',
    b'"kind":"pointer.down"',
    b'"kind": "pointer.down"',
)
MAX_FILE: Final = 64 * 1024 * 1024
MAX_INFLATE: Final = 64 * 1024 * 1024


def _inflate(data: bytes) -> bytes | None:
    """Decompress a zstd, gzip, zlib or xz payload (bounded), or None if it is none of them."""
    try:
        if data[:4] == b"\x28\xb5\x2f\xfd":
            return zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_INFLATE)
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)[:MAX_INFLATE]
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(data)[:MAX_INFLATE]
        if data[:1] == b"\x78" and data[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
            return zlib.decompressobj().decompress(data, MAX_INFLATE)
    except (zstandard.ZstdError, OSError, EOFError, lzma.LZMAError, zlib.error):
        return None
    return None


def looks_unsealed(data: bytes) -> str | None:
    """Why ``data`` looks like recorded plaintext, or None."""
    for layer, blob in (("", data), ("compressed ", _inflate(data) or b"")):
        if blob.startswith(CONTENT_MAGIC):
            return f"{layer}decoded batch content"
        if any(m in blob for m in EVENT_MARKERS):
            return f"{layer}recorded event JSON"
    return None


def _sqlite_values(path: Path) -> Iterator[tuple[str, bytes]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for v in row:
                    if isinstance(v, bytes | str):
                        yield table, v if isinstance(v, bytes) else v.encode()
    finally:
        db.close()


class UnsealedContentCheck(Check):
    """Files (and SQLite values) in the home, spill and temp folders that hold plaintext."""

    name = "unsealed-content"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        skip = [p for p in (ctx.datasets_dir, ctx.blobs_dir) if p is not None]
        roots: list[Path] = []
        if ctx.home is not None:
            roots.append(ctx.home)
        roots += [d for d in ctx.spill_dirs if ctx.home is None or ctx.home not in d.parents]
        roots += ctx.temp_entries()
        if ctx.vault_dir is not None:
            roots.append(ctx.vault_dir)
        seen: set[Path] = set()
        for root in roots:
            for p in walk(root, skip=skip):
                if p in seen or p.is_symlink() or not p.is_file():
                    continue
                seen.add(p)
                yield from self._file(p)

    def _file(self, p: Path) -> Iterator[Finding]:
        try:
            if p.stat().st_size > MAX_FILE:
                return
            data = p.read_bytes()
        except OSError:
            return
        if data.startswith(b"SQLite format 3\x00"):
            try:
                for table, value in _sqlite_values(p):
                    why = looks_unsealed(value)
                    if why:
                        yield self.finding(
                            f"{p} table {table}",
                            f"{why} stored unsealed",
                            "delete those rows; only sealed envelopes may be kept",
                        )
                        return
            except sqlite3.DatabaseError:
                return
            return
        why = looks_unsealed(data)
        if why:
            yield self.finding(
                p,
                f"{why} on disk",
                f"delete it (shred -u {p}); "
                "plaintext may exist only in memory or in a released dataset",
            )
