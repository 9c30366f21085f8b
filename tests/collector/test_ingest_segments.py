"""Ingest into the segment blob store, on SQLite and PostgreSQL: concurrent uploads share
fsyncs and commits, every acknowledged batch is readable after a reopen, and conflicting
or deleted batches leave no bytes behind."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from pathlib import Path

import pytest
import uuid6
from ingest_support import NOW, World

from keystep.collector.ingest import Ack, BatchConflict, ingest_batch
from keystep.store.base import Scope
from keystep.store.segments import SegmentBlobStore
from keystep.store.writer import BatchWriter


def on_segments(world: World, tmp_path: Path) -> World:
    return dataclasses.replace(world, blobs=SegmentBlobStore(tmp_path / "segments"))  # type: ignore[arg-type]


def ingest(w: World, envelope: bytes, device_id: str, writer: BatchWriter | None = None) -> Ack:
    return ingest_batch(
        w.repo, w.blobs, envelope, device_id=device_id, manifest_lookup=w.lookup,
        audit=w.audit, now=NOW, writer=writer,
    )  # fmt: skip


def test_concurrent_uploads_are_all_acknowledged_and_durable(world: World, tmp_path: Path) -> None:
    """Through one shared writer, as the service uploads: blobs and rows of concurrent
    uploads go to disk in shared group commits."""
    w = on_segments(world, tmp_path)
    writer = BatchWriter(w.repo, w.blobs)
    envs = [(d.device_id, d.seal()) for _ in range(20) for d in (w.alice, w.bob)]
    acks: list[Ack] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def upload(part: list[tuple[str, bytes]]) -> None:
        for device_id, env in part:
            try:
                ack = ingest(w, env, device_id, writer)
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                acks.append(ack)

    # Each device's batches stay on one thread, in seq order, as an outbox sends them.
    parts = [envs[i::8] for i in range(8)]
    threads = [threading.Thread(target=upload, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(acks) == 40
    assert writer._group.items == 40
    w.blobs.close()
    reopened = SegmentBlobStore(tmp_path / "segments")
    rows = w.repo.list_batches(scope=Scope.builder())
    assert {r.batch_id for r in rows} == {a.batch_id for a in acks}
    by_digest = {hashlib.sha256(e).hexdigest(): e for _, e in envs}
    for r in rows:
        assert reopened.get(r.blob_key) == by_digest[r.sha256]
    assert sorted(reopened.iter_keys()) == sorted(r.blob_key for r in rows)


def test_conflicting_uploads_leave_only_the_acknowledged_bytes(
    world: World, tmp_path: Path
) -> None:
    w = on_segments(world, tmp_path)
    bid = str(uuid6.uuid7())
    envs = [w.alice.seal(b"RACE-%d" % i * 400, batch_id=bid, seq=1) for i in range(6)]
    outcomes: list[object] = []

    def go(env: bytes) -> None:
        try:
            outcomes.append(ingest(w, env, "dev-alice"))
        except BatchConflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=go, args=(e,)) for e in envs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    (ack,) = [o for o in outcomes if isinstance(o, Ack)]
    (rec,) = w.repo.list_batches(scope=Scope.builder())
    assert list(w.blobs.iter_keys()) == [rec.blob_key]
    assert hashlib.sha256(w.blobs.get(rec.blob_key)).hexdigest() == ack.sha256
    raw = b"".join(p.read_bytes() for p in (tmp_path / "segments").glob("seg-*.kss"))
    kept = w.blobs.get(rec.blob_key)
    for env in envs:  # the refused envelopes' ciphertext is gone from the disk
        assert (env in raw) == (env == kept)


def test_a_writer_of_other_stores_is_refused(world: World, tmp_path: Path) -> None:
    w = on_segments(world, tmp_path)
    elsewhere = BatchWriter(w.repo, SegmentBlobStore(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="another repository or blob store"):
        ingest(w, w.alice.seal(), "dev-alice", elsewhere)
    assert w.repo.list_batches(scope=Scope.builder()) == []
