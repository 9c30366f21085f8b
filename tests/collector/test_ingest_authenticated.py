"""An upload checked against the device record its authentication read: no second device
read, the same answers (a revoked record still refuses, another device's record is not
trusted), and consent still read fresh."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ingest_support import NOW, World

from keystep.collector.ingest import IngestRejected, ingest_batch
from keystep.store.base import Scope


class Reads:
    """Counts the repository's device reads during one ingest (wrapping the real store)."""

    def __init__(self, w: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.devices = 0
        repo = w.repo
        for name in ("get_device", "device_and_consent"):
            real = getattr(repo, name)

            def counted(*a: object, _real: object = real, **kw: object) -> object:
                self.devices += 1
                return _real(*a, **kw)  # type: ignore[operator]

            monkeypatch.setattr(repo, name, counted)


def _ingest(w: World, env: bytes, **kw: object) -> object:
    return ingest_batch(
        w.repo,
        w.blobs,
        env,
        device_id=w.alice.device_id,
        manifest_lookup=w.lookup,
        audit=w.audit,
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )


def test_the_authenticated_record_saves_the_device_read(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = world.repo.get_device(world.alice.device_id, scope=Scope.collector())
    assert record is not None
    reads = Reads(world, monkeypatch)
    _ingest(world, world.alice.seal(), authenticated=record)
    assert reads.devices == 0
    _ingest(world, world.alice.seal())
    assert reads.devices > 0  # without it, the device is read again
    assert len(world.repo.list_batches(scope=Scope.builder())) == 2


def test_the_authenticated_record_is_checked_like_a_read_one(world: World) -> None:
    record = world.repo.get_device(world.alice.device_id, scope=Scope.collector())
    assert record is not None
    with pytest.raises(IngestRejected, match="revoked"):
        _ingest(world, world.alice.seal(), authenticated=replace(record, revoked_at=NOW))
    # Bob's record with Alice's id claimed is not used: Alice's is read and checked.
    bob = world.repo.get_device(world.bob.device_id, scope=Scope.collector())
    assert bob is not None
    _ingest(world, world.alice.seal(), authenticated=bob)
    # Consent is read fresh even with the record in hand.
    world.repo.withdraw_consent("psAlice", at=NOW, scope=Scope.of_contributor("psAlice"))
    with pytest.raises(IngestRejected, match="no active consent"):
        _ingest(world, world.alice.seal(), authenticated=record)
    assert len(world.repo.list_batches(scope=Scope.builder())) == 1
