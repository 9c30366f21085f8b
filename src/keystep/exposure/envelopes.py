"""Sealed stores hold sealed things only: every outbox row and blob parses as a v1 envelope."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from keystep.exposure.base import Check, Finding, ScanContext, walk
from keystep.seal.envelope import EnvelopeError, parse_envelope
from keystep.store.segments import SEGMENT_MAGIC, SegmentDamaged, read_segment, segment_number


class OutboxEnvelopeCheck(Check):
    name = "outbox-envelopes"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        if ctx.outbox_db is None or not ctx.outbox_db.exists():
            return
        db = sqlite3.connect(f"file:{ctx.outbox_db}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT batch_id, envelope FROM batches WHERE envelope IS NOT NULL"
            ).fetchall()
        finally:
            db.close()
        for batch_id, envelope in rows:
            try:
                parse_envelope(
                    bytes(envelope) if not isinstance(envelope, str) else envelope.encode()
                )
            except EnvelopeError as exc:
                yield self.finding(
                    f"{ctx.outbox_db} batch {batch_id}",
                    f"not a v1 envelope ({exc})",
                    f"delete the row: keystep forget, or sqlite3 {ctx.outbox_db} "
                    f"\"DELETE FROM batches WHERE batch_id='{batch_id}'\"",
                )


class BlobEnvelopeCheck(Check):
    """Every blob is a v1 envelope: each file of a blob folder, and each live record of a
    segment file (``segments:`` stores), read without opening the store (nothing is
    repaired)."""

    name = "blob-envelopes"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        if ctx.blobs_dir is None or not ctx.blobs_dir.exists():
            return
        files = [
            p
            for p in walk(ctx.blobs_dir)
            if p.is_file() and not p.is_symlink() and not p.name.startswith(".put-")
        ]
        numbers = [n for n in map(segment_number, files) if n is not None]
        last = max(numbers, default=None)
        for p in files:
            with open(p, "rb") as fh:
                is_segment = fh.read(len(SEGMENT_MAGIC)) == SEGMENT_MAGIC
            if is_segment:
                yield from self._segment(p, active=segment_number(p) == last)
                continue
            try:
                parse_envelope(p.read_bytes())
            except EnvelopeError as exc:
                yield self.finding(
                    p,
                    f"not a v1 envelope ({exc})",
                    f"the blob store holds only sealed batches: rm {p}",
                )

    def _segment(self, path: Path, *, active: bool) -> Iterator[Finding]:
        try:
            for key, data in read_segment(path):
                try:
                    parse_envelope(data)
                except EnvelopeError as exc:
                    yield self.finding(
                        f"{path} blob {key}",
                        f"not a v1 envelope ({exc})",
                        "the blob store holds only sealed batches: delete the blob through "
                        "the store (SegmentBlobStore.delete zeroes its bytes)",
                    )
        except SegmentDamaged as exc:
            # The active segment may end in a torn write nobody acknowledged (the store
            # cuts it when it opens); anywhere else unreadable bytes could be anything.
            if not active:
                yield self.finding(
                    path,
                    f"unreadable from offset {exc.offset}: what follows cannot be checked",
                    "restore the segment from a backup, or move the store aside and re-ingest",
                )
