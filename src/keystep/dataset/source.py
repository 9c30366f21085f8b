"""Where the dataset builder finds sealed batches: a small interface over the collector's store."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from keystep.seal.envelope import EnvelopeError, parse_envelope
from keystep.store.base import Repository, Scope
from keystep.store.blobs import BlobStore


@dataclass(frozen=True, slots=True)
class BatchRef:
    """A stored batch's clear header fields: enough to order and select it, no content."""

    batch_id: str
    device: str
    seq: int
    contributor: str
    manifest_version: int


class BatchSource(ABC):
    """Lists stored batches (ciphertext metadata only) and reads one envelope at a time."""

    @abstractmethod
    def refs(self) -> list[BatchRef]:
        """Every visible batch."""

    @abstractmethod
    def read(self, batch_id: str) -> bytes:
        """The envelope bytes; raises KeyError when the batch is gone (e.g. erased)."""

    def ordered(self, skip: Iterable[str] = ()) -> Iterator[BatchRef]:
        """Batches per device in sequence order, so that actions may span batches."""
        done = set(skip)
        refs = [r for r in self.refs() if r.batch_id not in done]
        yield from sorted(refs, key=lambda r: (r.device, r.seq, r.batch_id))


class MemorySource(BatchSource):
    """Envelopes held in memory (tests, the benchmark). Still ciphertext."""

    def __init__(self, envelopes: Iterable[bytes] = ()) -> None:
        self._blobs: dict[str, bytes] = {}
        self._refs: dict[str, BatchRef] = {}
        for blob in envelopes:
            self.add(blob)

    def add(self, blob: bytes, *, batch_id: str | None = None) -> None:
        """Add an envelope; one that does not parse still gets listed (under ``batch_id``)."""
        try:
            h = parse_envelope(blob).header
            ref = BatchRef(h.batch_id, h.device, h.seq, h.contributor, h.manifest_version)
        except EnvelopeError:
            if batch_id is None:
                raise
            ref = BatchRef(batch_id, "?", 0, "?", 0)
        self._blobs[ref.batch_id] = blob
        self._refs[ref.batch_id] = ref

    def remove(self, batch_id: str) -> None:
        self._blobs.pop(batch_id, None)
        self._refs.pop(batch_id, None)

    def refs(self) -> list[BatchRef]:
        return list(self._refs.values())

    def read(self, batch_id: str) -> bytes:
        return self._blobs[batch_id]


class RepositorySource(BatchSource):
    """The collector's repository (metadata) and blob store, seen with the builder's scope."""

    def __init__(self, repo: Repository, blobs: BlobStore, scope: Scope) -> None:
        self.repo = repo
        self.blobs = blobs
        self.scope = scope
        self._keys: dict[str, str] = {}

    def refs(self) -> list[BatchRef]:
        out = []
        for rec in self.repo.list_batches(scope=self.scope):
            self._keys[rec.batch_id] = rec.blob_key
            out.append(
                BatchRef(rec.batch_id, rec.device, rec.seq, rec.contributor, rec.manifest_version)
            )
        return out

    def read(self, batch_id: str) -> bytes:
        key = self._keys.get(batch_id)
        if key is None:
            rec = self.repo.get_batch(batch_id, scope=self.scope)
            if rec is None:
                raise KeyError(batch_id)
            key = rec.blob_key
        return self.blobs.get(key)
