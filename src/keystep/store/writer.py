"""One group commit for an upload's blob and row: concurrent uploads share both syncs.

An acknowledged batch needs its blob durable and then its metadata row committed. Done as
two group commits (the blob store's, then the repository's), every upload waits twice and
is woken twice. :class:`BatchWriter` gathers the uploads that arrive while a group is being
stored into the next group, and its leader stores that group's blobs (one write and one
sync, with a store that ``SYNCS_GROUPS``), then their rows (one transaction), in that
order; only then is any upload of the group answered. A blob store that syncs each put on
its own (one file per blob, S3) is written by each upload's own thread first, in parallel,
and only the rows are gathered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keystep.store.base import BatchRecord, Repository, Scope
from keystep.store.blobs import BlobPut, BlobStore
from keystep.store.group import GroupCommit


@dataclass(frozen=True, slots=True)
class _Write:
    record: BatchRecord
    scope: Scope
    blob: BlobPut | None  # None: already durable (put by the uploading thread)


class BatchWriter:
    """Stores blob + row pairs of concurrent uploads in shared group commits."""

    def __init__(self, repo: Repository, blobs: BlobStore) -> None:
        self.repo = repo
        self.blobs = blobs
        self._group: GroupCommit[_Write, BatchRecord] = GroupCommit(self._commit)

    def write(
        self, record: BatchRecord, envelope: bytes, *, sha256: bytes, scope: Scope
    ) -> BatchRecord:
        """Make ``envelope`` durable under ``record.blob_key``, then commit ``record``; return
        as :meth:`Repository.add_batch` does (the stored record) or raise what it raises. The
        blob is durable before the row is committed, and both before this returns."""
        blob = BlobPut(record.blob_key, envelope, sha256)
        if not self.blobs.SYNCS_GROUPS:
            self.blobs.put(blob.key, blob.data, sha256=blob.sha256)
            return self._group(_Write(record, scope, None))
        return self._group(_Write(record, scope, blob))

    def _commit(self, writes: Sequence[_Write]) -> list[BatchRecord | BaseException]:
        failed: dict[int, BaseException] = {}
        puts = [(i, w.blob) for i, w in enumerate(writes) if w.blob is not None]
        if puts:
            outcomes = self.blobs.put_many([blob for _, blob in puts])
            failed = {i: exc for (i, _), exc in zip(puts, outcomes, strict=True) if exc is not None}
        rows = [(i, w) for i, w in enumerate(writes) if i not in failed]
        stored = self.repo.add_batches([(w.record, w.scope) for _, w in rows]) if rows else []
        out: dict[int, BatchRecord | BaseException] = dict(failed)
        out.update((i, r) for (i, _), r in zip(rows, stored, strict=True))
        return [out[i] for i in range(len(writes))]
