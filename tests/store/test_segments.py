"""The segment blob store beyond the common contract: group fsync, crash recovery, and deletion
that destroys the bytes on disk."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from keystep.store.blobs import BlobError, BlobPut
from keystep.store.factory import open_blobs
from keystep.store.segments import SEGMENT_MAGIC, SegmentBlobStore


def segment_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.glob("seg-*.kss")))


def test_a_group_of_more_blobs_than_one_writev_takes_is_written_whole(tmp_path: Path) -> None:
    store = SegmentBlobStore(tmp_path / "s")
    blobs = {f"v1/p/{i:04d}": os.urandom(1 + i % 700) for i in range(500)}  # 1,500 buffers
    puts = [BlobPut(k, v, hashlib.sha256(v).digest()) for k, v in blobs.items()]
    assert store.put_many(puts) == [None] * len(puts)
    store.close()
    reopened = SegmentBlobStore(tmp_path / "s")
    assert {k: reopened.get(k) for k in reopened.iter_keys()} == blobs
    reopened.close()


def test_concurrent_puts_share_fsyncs_and_all_survive_a_reopen(tmp_path: Path) -> None:
    store = SegmentBlobStore(tmp_path / "s")
    blobs = {f"v1/p/{i:03d}": os.urandom(1000 + i) for i in range(120)}
    gate = threading.Barrier(12)

    def put(keys: list[str]) -> None:
        gate.wait()
        for k in keys:
            store.put(k, blobs[k])

    keys = sorted(blobs)
    threads = [threading.Thread(target=put, args=(keys[i::12],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert store._group.items == 120
    assert store._group.groups < 120  # some puts shared one write and one fdatasync
    store.close()
    again = SegmentBlobStore(tmp_path / "s")
    assert list(again.iter_keys()) == keys
    assert all(again.get(k) == v for k, v in blobs.items())


def test_delete_overwrites_the_bytes_and_the_key_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = SegmentBlobStore(root)
    secret = b"CIPHERTEXT-OF-ALICE-" * 500
    store.put("v1/2026-11/psAlice/b1", secret)
    store.put("v1/2026-11/psBob/b2", b"bob's")
    assert secret in segment_bytes(root)
    assert store.delete("v1/2026-11/psAlice/b1")
    raw = segment_bytes(root)
    assert b"CIPHERTEXT-OF-ALICE" not in raw
    assert b"psAlice" not in raw
    assert store.get("v1/2026-11/psBob/b2") == b"bob's"
    store.close()
    again = SegmentBlobStore(root)
    assert list(again.iter_keys()) == ["v1/2026-11/psBob/b2"]
    assert not again.exists("v1/2026-11/psAlice/b1")


def test_a_segment_whose_blobs_are_all_deleted_is_removed(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = SegmentBlobStore(root, segment_bytes=4096)
    for i in range(6):
        store.put(f"k{i}", bytes([i]) * 3000)
    first = sorted(root.glob("seg-*.kss"))
    assert len(first) >= 3
    store.delete("k0")
    store.delete("k1")
    assert first[0] not in sorted(root.glob("seg-*.kss"))
    assert [store.get(f"k{i}")[:1] for i in range(2, 6)] == [bytes([i]) for i in range(2, 6)]


def test_a_torn_tail_left_by_a_crash_is_cut_and_acknowledged_blobs_stay(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = SegmentBlobStore(root)
    store.put("a", b"A" * 5000)
    store.put("b", b"B" * 5000)
    store.close()
    (seg,) = root.glob("seg-*.kss")
    good = seg.stat().st_size
    with seg.open("ab") as fh:  # a record header and part of its data: an unfinished group
        fh.write(b"KSR1L\x00\x01" + (9000).to_bytes(8, "big") + bytes(32) + b"c" + b"C" * 100)
    again = SegmentBlobStore(root)
    assert list(again.iter_keys()) == ["a", "b"]
    assert seg.stat().st_size == good
    again.put("c", b"C" * 10)
    assert again.get("c") == b"C" * 10


def test_a_record_whose_bytes_never_reached_the_disk_is_dropped(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = SegmentBlobStore(root)
    store.put("a", b"A" * 5000)
    store.put("b", b"B" * 5000)
    store.close()
    (seg,) = root.glob("seg-*.kss")
    data = bytearray(seg.read_bytes())
    data[-10] ^= 0xFF  # b's data differs from its digest: written, not yet synced
    seg.write_bytes(bytes(data))
    again = SegmentBlobStore(root)
    assert list(again.iter_keys()) == ["a"]


def test_damage_in_a_sealed_segment_is_refused_not_cut(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = SegmentBlobStore(root, segment_bytes=4096)
    for i in range(3):
        store.put(f"k{i}", b"x" * 3000)
    store.close()
    first = sorted(root.glob("seg-*.kss"))[0]
    data = bytearray(first.read_bytes())
    data[len(SEGMENT_MAGIC)] ^= 0xFF  # the first record's magic
    first.write_bytes(bytes(data))
    with pytest.raises(BlobError, match="damaged"):
        SegmentBlobStore(root, segment_bytes=4096)


def test_a_replaced_blob_leaves_no_trace_of_the_old_bytes(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = SegmentBlobStore(root)
    store.put("k", b"OLD-BYTES" * 100)
    store.put("k", b"new")
    assert store.get("k") == b"new"
    assert b"OLD-BYTES" not in segment_bytes(root)
    assert list(SegmentBlobStore(root).iter_keys()) == ["k"]


def test_a_blob_altered_on_disk_is_not_returned(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = SegmentBlobStore(root)
    store.put("k", b"K" * 1000)
    loc = store.locate("k")
    assert loc is not None
    (seg,) = root.glob("seg-*.kss")
    with seg.open("r+b") as fh:
        fh.seek(loc.data_at + 5)
        fh.write(b"!")
    with pytest.raises(BlobError, match="digest"):
        store.get("k")


def test_segments_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = SegmentBlobStore(tmp_path / "s")
        store.put("v1/p/a", b"x")
    finally:
        os.umask(old)
    root = tmp_path / "s"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for p in root.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_open_blobs_understands_segments(tmp_path: Path) -> None:
    store = open_blobs(f"segments:{tmp_path / 's'}")
    assert isinstance(store, SegmentBlobStore)
    store.put("k", b"v")
    assert store.get("k") == b"v"
