"""BatchWriter: concurrent uploads share the blob sync and the row commit; no row is committed
before its blob is stored, and every writer answers as add_batch would."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import pytest
from store_support import AS_A, T0, batch

from keystep.store.base import BatchRecord, Conflict, Repository, Scope
from keystep.store.blobs import BlobError, BlobStore
from keystep.store.writer import BatchWriter


def sealed(record: BatchRecord) -> tuple[BatchRecord, bytes, bytes]:
    data = f"sealed {record.batch_id} ".encode() * 200
    digest = hashlib.sha256(data).digest()
    return replace(record, sha256=digest.hex(), size=len(data)), data, digest


def rows_wait_for_their_blobs(
    monkeypatch: pytest.MonkeyPatch, repo: Repository, blobs: BlobStore, *, hold: float = 0.0
) -> list[int]:
    """Check, as each group of rows is committed, that every blob it names is stored; a
    ``hold`` makes the commit slow, so that uploads arriving meanwhile must queue."""
    commit = repo.add_batches
    sizes: list[int] = []

    def checked(items: Sequence[tuple[BatchRecord, Scope]]) -> list[BatchRecord | BaseException]:
        missing = [r.blob_key for r, _ in items if not blobs.exists(r.blob_key)]
        assert not missing, f"rows committed before their blobs: {missing}"
        sizes.append(len(items))
        time.sleep(hold)
        return commit(items)

    monkeypatch.setattr(repo, "add_batches", checked)
    return sizes


def test_concurrent_writes_share_commits_and_each_row_follows_its_blob(
    repo: Repository, blobs: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = BatchWriter(repo, blobs)
    groups = rows_wait_for_their_blobs(monkeypatch, repo, blobs, hold=0.01)
    work = [sealed(batch(n)) for n in range(1, 49)]
    got: dict[str, BatchRecord] = {}
    errors: list[BaseException] = []

    def upload(part: list[tuple[BatchRecord, bytes, bytes]]) -> None:
        for record, data, digest in part:
            try:
                got[record.batch_id] = writer.write(record, data, sha256=digest, scope=AS_A)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=upload, args=(work[i::12],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(groups) == len(work) and len(groups) < len(work)  # some shared one commit
    assert got == {r.batch_id: r for r, _, _ in work}
    assert sorted(repo.list_batches(scope=AS_A), key=lambda r: r.seq) == [r for r, _, _ in work]
    for record, data, _ in work:
        assert blobs.get(record.blob_key) == data


def test_a_retry_gets_the_stored_row_and_other_bytes_conflict(
    repo: Repository, blobs: BlobStore
) -> None:
    writer = BatchWriter(repo, blobs)
    record, data, digest = sealed(batch(1))
    assert writer.write(record, data, sha256=digest, scope=AS_A) is record
    later = replace(record, received_at=T0 + timedelta(hours=1))
    again = writer.write(later, data, sha256=digest, scope=AS_A)
    assert again == record and again is not later
    other = data + b"!"
    other_digest = hashlib.sha256(other).digest()
    forged = replace(record, sha256=other_digest.hex(), blob_key=record.blob_key + "-other")
    with pytest.raises(Conflict):
        writer.write(forged, other, sha256=other_digest, scope=AS_A)
    assert repo.list_batches(scope=AS_A) == [record]


def test_a_blob_that_cannot_be_stored_fails_its_upload_alone_and_leaves_no_row(
    repo: Repository, blobs: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leader is held in its commit so that a good and a bad upload queue for the next
    group together: only the bad one fails, and it leaves no row."""
    writer = BatchWriter(repo, blobs)
    commit = repo.add_batches
    entered, release = threading.Event(), threading.Event()

    def held(items: Sequence[tuple[BatchRecord, Scope]]) -> list[BatchRecord | BaseException]:
        if not entered.is_set():
            entered.set()
            assert release.wait(10)
        return commit(items)

    monkeypatch.setattr(repo, "add_batches", held)
    first, good, bad = (sealed(batch(n)) for n in (1, 2, 3))
    bad = (replace(bad[0], blob_key="v1/../escape"), bad[1], bad[2])
    outcomes: dict[int, object] = {}

    def upload(n: int, w: tuple[BatchRecord, bytes, bytes]) -> None:
        try:
            outcomes[n] = writer.write(w[0], w[1], sha256=w[2], scope=AS_A)
        except BaseException as exc:
            outcomes[n] = exc

    leader = threading.Thread(target=upload, args=(1, first))
    leader.start()
    assert entered.wait(10)
    queued = [threading.Thread(target=upload, args=(n, w)) for n, w in ((2, good), (3, bad))]
    for t in queued:
        t.start()
    time.sleep(0.1)
    release.set()
    for t in [leader, *queued]:
        t.join(30)
        assert not t.is_alive()
    assert outcomes[1] is first[0] and outcomes[2] is good[0]
    assert isinstance(outcomes[3], BlobError)
    assert [r.seq for r in repo.list_batches(scope=AS_A)] == [1, 2]
