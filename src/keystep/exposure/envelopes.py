"""Sealed stores hold sealed things only: every outbox row and blob parses as a v1 envelope."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from keystep.exposure.base import Check, Finding, ScanContext, walk
from keystep.seal.envelope import EnvelopeError, parse_envelope


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
    name = "blob-envelopes"

    def run(self, ctx: ScanContext) -> Iterable[Finding]:
        if ctx.blobs_dir is None or not ctx.blobs_dir.exists():
            return
        for p in walk(ctx.blobs_dir):
            if not p.is_file() or p.is_symlink() or p.name.startswith(".put-"):
                continue
            try:
                parse_envelope(p.read_bytes())
            except EnvelopeError as exc:
                yield self.finding(
                    p,
                    f"not a v1 envelope ({exc})",
                    f"the blob store holds only sealed batches: rm {p}",
                )
