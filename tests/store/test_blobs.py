"""The BlobStore contract, run against a folder and an S3-compatible server."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from keystep.store.blobs import BlobError, BlobNotFound, BlobPut, BlobStore, FolderBlobStore
from keystep.store.factory import open_blobs


def test_put_get_exists_delete(blobs: BlobStore) -> None:
    assert not blobs.exists("v1/2026-11/p/a")
    blobs.put("v1/2026-11/p/a", b"sealed-a")
    assert blobs.exists("v1/2026-11/p/a")
    assert blobs.get("v1/2026-11/p/a") == b"sealed-a"
    assert blobs.delete("v1/2026-11/p/a") is True
    assert blobs.delete("v1/2026-11/p/a") is False
    assert not blobs.exists("v1/2026-11/p/a")
    with pytest.raises(BlobNotFound):
        blobs.get("v1/2026-11/p/a")


def test_put_is_idempotent(blobs: BlobStore) -> None:
    blobs.put("k", b"x" * 5000)
    blobs.put("k", b"x" * 5000)
    assert blobs.get("k") == b"x" * 5000
    assert list(blobs.iter_keys()) == ["k"]


def test_put_many_stores_each_and_refuses_a_bad_key_alone(blobs: BlobStore) -> None:
    puts = [
        BlobPut("v1/p/a", b"a" * 3000, hashlib.sha256(b"a" * 3000).digest()),
        BlobPut("../escape", b"b", hashlib.sha256(b"b").digest()),
        BlobPut("v1/p/c", b"c", hashlib.sha256(b"c").digest()),
    ]
    out = blobs.put_many(puts)
    assert out[0] is None and out[2] is None
    assert isinstance(out[1], BlobError)
    assert blobs.get("v1/p/a") == b"a" * 3000 and blobs.get("v1/p/c") == b"c"
    assert blobs.put_many(puts[:1]) == [None]  # again: a no-op
    assert list(blobs.iter_keys()) == ["v1/p/a", "v1/p/c"]


def test_keys_are_listed_in_order_by_prefix(blobs: BlobStore) -> None:
    keys = ["v1/2026-12/p/c", "v1/2026-11/q/b", "v1/2026-11/p/a", "other"]
    for k in keys:
        blobs.put(k, k.encode())
    assert list(blobs.iter_keys()) == sorted(keys)
    assert list(blobs.iter_keys("v1/2026-11/")) == ["v1/2026-11/p/a", "v1/2026-11/q/b"]
    assert list(blobs.iter_keys("nothing")) == []


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", "", "a b", "a/"])
def test_unsafe_keys_are_refused(blobs: BlobStore, key: str) -> None:
    with pytest.raises(BlobError):
        blobs.put(key, b"x")


def test_empty_and_large_blobs_round_trip(blobs: BlobStore) -> None:
    big = os.urandom(3 * 1024 * 1024)
    blobs.put("big", big)
    blobs.put("empty", b"")
    assert blobs.get("big") == big
    assert blobs.get("empty") == b""


def test_folder_blobs_are_private_and_leave_no_temporary_files(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = FolderBlobStore(tmp_path / "blobs")
        store.put("v1/2026-11/p/a", b"x")
    finally:
        os.umask(old)
    root = tmp_path / "blobs"
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    assert [p.name for p in root.rglob("*") if p.is_file()] == ["a"]


def test_open_blobs_understands_folders_and_s3(tmp_path: Path) -> None:
    assert isinstance(open_blobs(tmp_path / "b"), FolderBlobStore)
    with pytest.raises(BlobError):
        open_blobs("ftp://nope/x")
    with pytest.raises(BlobError):
        open_blobs("s3:///no-bucket")


def test_a_torn_blob_left_by_a_crash_is_replaced_by_the_retry(tmp_path: Path) -> None:
    store = FolderBlobStore(tmp_path / "blobs")
    store.put("v1/p/a", b"sealed")
    (tmp_path / "blobs" / "v1" / "p" / "a").write_bytes(b"sea")  # a write cut short
    store.put("v1/p/a", b"sealed")
    assert store.get("v1/p/a") == b"sealed"
    assert list(store.iter_keys()) == ["v1/p/a"]
