"""Ingest rules: what a collector accepts, what it refuses (and then stores nothing), and how
retries and replays are answered. Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import uuid6
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ingest_support import NOW, Device, World

from keystep.audit.events import BatchConflictEvent
from keystep.collector.ingest import Ack, BatchConflict, IngestRejected, ingest_batch
from keystep.store.base import Scope


def ingest(w: World, envelope: bytes, *, device: Device | None = None, **kw: object) -> Ack:
    args: dict[str, object] = {
        "device_id": (device or w.alice).device_id,
        "manifest_lookup": w.lookup,
        "audit": w.audit,
        "now": NOW,
    }
    args.update(kw)
    return ingest_batch(w.repo, w.blobs, envelope, **args)  # type: ignore[arg-type]


def stored(w: World) -> tuple[int, int]:
    """(metadata rows, blobs): what a refusal must leave unchanged."""
    return len(w.repo.list_batches(scope=Scope.builder())), len(list(w.blobs.iter_keys()))


def test_an_accepted_batch_is_stored_durably_and_acknowledged(world: World) -> None:
    env = world.alice.seal()
    ack = ingest(world, env)
    digest = hashlib.sha256(env).hexdigest()
    assert (ack.sha256, ack.received_at, ack.duplicate) == (digest, NOW, False)
    (rec,) = world.repo.list_batches(scope=Scope.of_contributor("psAlice"))
    assert (rec.batch_id, rec.device, rec.seq, rec.size) == (ack.batch_id, "dev-alice", 1, len(env))
    assert (rec.contributor, rec.period, rec.t_hour) == (
        "psAlice",
        "2026-11",
        "2026-11-03T14:00:00Z",
    )
    assert rec.kinds == ("key.down", "pointer.move")
    assert world.blobs.get(rec.blob_key) == env
    assert ack.to_dict() == {
        "batch_id": ack.batch_id,
        "sha256": digest,
        "received_at": "2026-11-03T14:20:00.000000+00:00",
    }


def test_a_retry_gets_the_same_acknowledgement_and_writes_nothing(world: World) -> None:
    env = world.alice.seal()
    first = ingest(world, env)
    again = ingest(world, env, now=NOW + timedelta(minutes=3))
    assert (again.batch_id, again.sha256, again.received_at) == (
        first.batch_id,
        first.sha256,
        first.received_at,
    )
    assert again.duplicate
    assert stored(world) == (1, 1)
    assert world.audit_log == []


@pytest.mark.parametrize("same", ["batch_id", "seq"])
def test_other_bytes_under_a_taken_identity_are_a_409_and_audited(world: World, same: str) -> None:
    first = world.alice.seal()
    ack = ingest(world, first)
    if same == "batch_id":
        replay = world.alice.seal(batch_id=ack.batch_id, seq=1)
    else:
        replay = world.alice.seal(seq=1)
    with pytest.raises(BatchConflict) as info:
        ingest(world, replay)
    assert info.value.status == 409
    assert stored(world) == (1, 1)
    (event,) = world.audit_log
    assert isinstance(event, BatchConflictEvent)
    assert (event.device, event.contributor, event.principal) == (
        "dev-alice",
        "psAlice",
        "dev-alice",
    )
    assert world.blobs.get(world.repo.list_batches(scope=Scope.builder())[0].blob_key) == first


def _forged_by_other_key(w: World) -> bytes:
    impostor = Device("dev-alice", "psAlice", key=Ed25519PrivateKey.generate())
    return impostor.seal()


def _flip_last_byte(w: World) -> bytes:
    env = bytearray(w.alice.seal())
    env[-1] ^= 1
    return bytes(env)


def _flip_ciphertext(w: World) -> bytes:
    env = bytearray(w.alice.seal())
    env[-100] ^= 1
    return bytes(env)


REFUSALS: list[tuple[str, Callable[[World], bytes], dict[str, object], int, str]] = [
    ("oversized", lambda w: w.alice.seal(b"x" * 5000), {"max_bytes": 4096}, 413, "limit"),
    ("not an envelope", lambda w: b'{"batch": 1}', {}, 400, "bad magic"),
    ("truncated", lambda w: w.alice.seal()[:60], {}, 400, "v1 envelope"),
    ("bad signature", _flip_last_byte, {}, 403, "signature"),
    ("altered body", _flip_ciphertext, {}, 403, "signature"),
    ("signed by another key", _forged_by_other_key, {}, 403, "signature"),
    ("another contributor's batch", lambda w: w.alice.seal(contributor="psBob"), {}, 403,
     "another contributor"),
    ("another device's name", lambda w: w.alice.seal(device="dev-bob"), {}, 403,
     "another device"),
    ("unknown device", lambda w: w.alice.seal(), {"device_id": "dev-nobody"}, 403,
     "not enrolled"),
    ("kinds outside the manifest", lambda w: w.alice.seal(kinds=("key.down", "clipboard.read")),
     {}, 422, "clipboard.read"),
    ("unconsented manifest version", lambda w: w.alice.seal(manifest_version=2), {}, 403,
     "no active consent to manifest v2"),
    ("two hours in the future", lambda w: w.alice.seal(t_hour="2026-11-03T16:00:00Z"), {}, 422,
     "after the collector's clock"),
    ("an hour not in the calendar", lambda w: w.alice.seal(t_hour="2026-13-03T25:00:00Z"), {},
     400, "not an hour of the calendar"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "kwargs", "status", "reason"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_refusals_say_why_and_store_nothing(
    world: World,
    make: Callable[[World], bytes],
    kwargs: dict[str, object],
    status: int,
    reason: str,
) -> None:
    with pytest.raises(IngestRejected) as info:
        ingest(world, make(world), **kwargs)
    assert info.value.status == status
    assert reason in info.value.reason
    assert stored(world) == (0, 0)
    assert world.audit_log == []


def test_a_revoked_device_is_refused(world: World) -> None:
    world.repo.revoke_device("dev-alice", at=NOW, scope=Scope.steward())
    with pytest.raises(IngestRejected, match="revoked") as info:
        ingest(world, world.alice.seal())
    assert info.value.status == 403
    assert stored(world) == (0, 0)


def test_after_withdrawal_batches_are_refused(world: World) -> None:
    world.repo.withdraw_consent("psAlice", at=NOW, scope=Scope.of_contributor("psAlice"))
    with pytest.raises(IngestRejected, match="no active consent") as info:
        ingest(world, world.alice.seal())
    assert info.value.status == 403
    ingest(world, world.bob.seal(), device=world.bob)  # others are unaffected
    assert stored(world) == (1, 1)


def test_a_consented_but_unpublished_manifest_is_refused(world: World) -> None:
    with pytest.raises(IngestRejected, match="not published") as info:
        ingest(world, world.alice.seal(), manifest_lookup=lambda v: None)
    assert info.value.status == 422


@pytest.mark.parametrize(
    "t_hour",
    ["2026-11-03T15:00:00Z", "2026-11-03T09:00:00Z", "2026-10-30T14:00:00Z"],
    ids=["next hour", "five hours behind", "days behind"],
)
def test_a_device_clock_hours_off_is_accepted(world: World, t_hour: str) -> None:
    ingest(world, world.alice.seal(t_hour=t_hour))
    assert stored(world) == (1, 1)


def test_concurrent_retries_of_one_batch_store_it_once(world: World) -> None:
    env = world.alice.seal()
    acks: list[Ack] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            acks.append(ingest(world, env))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len({(a.batch_id, a.sha256, a.received_at) for a in acks}) == 1
    assert sum(not a.duplicate for a in acks) <= 1
    assert stored(world) == (1, 1)


def test_racing_different_bytes_under_one_id_keep_exactly_one(world: World) -> None:
    bid = str(uuid6.uuid7())
    envs = [world.alice.seal(batch_id=bid, seq=1) for _ in range(6)]
    outcomes: list[object] = []

    def go(env: bytes) -> None:
        try:
            outcomes.append(ingest(world, env))
        except BatchConflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=go, args=(e,)) for e in envs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    acks = [o for o in outcomes if isinstance(o, Ack)]
    assert len(acks) == 1
    assert len(world.audit_log) == 5
    (rec,) = world.repo.list_batches(scope=Scope.builder())
    assert list(world.blobs.iter_keys()) == [rec.blob_key]
    assert hashlib.sha256(world.blobs.get(rec.blob_key)).hexdigest() == acks[0].sha256
