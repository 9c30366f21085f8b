"""Batch upload through a real collector on PostgreSQL: idempotent acks, and every kind of
bad input refused with a clear 4xx and a reason, audited where it matters, nothing stored."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import CollectorProc, SimDevice, enroll_sim

from keystep.store.pg_admin import TempDatabase

pytestmark = pytest.mark.postgres


def stored(pg: TempDatabase, root: Path) -> tuple[int, int]:
    with psycopg.connect(pg.admin_url) as conn:
        row = conn.execute("SELECT count(*) FROM keystep.batches").fetchone()
    blobs = root / "blobs"
    files = sum(1 for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else 0
    assert row is not None
    return int(row[0]), files


def audit_names(c: CollectorProc) -> list[str]:
    import json

    names = []
    for f in (c.root / f"vault-{c.name}").rglob("audit*.jsonl"):
        for line in f.read_text().splitlines():
            names.append(json.loads(line.split(" ", 1)[1])["event"])
    return names


@pytest.fixture
def setup(collectors: Callable[..., CollectorProc]) -> tuple[CollectorProc, SimDevice, SimDevice]:
    c = collectors("up", max_batch_bytes=256 * 1024)
    return c, enroll_sim(c, "alice"), enroll_sim(c, "bob")


def test_same_batch_twice_gets_the_same_ack(
    setup: tuple[CollectorProc, SimDevice, SimDevice], pg: TempDatabase
) -> None:
    _, alice, _ = setup
    env = alice.seal()
    first = alice.upload(env)
    assert first.status_code == 200, first.text
    again = alice.upload(env)
    assert again.status_code == 200
    assert {k: again.json()[k] for k in ("batch_id", "sha256")} == {
        k: first.json()[k] for k in ("batch_id", "sha256")
    }
    assert again.json()["duplicate"] is True
    with alice.http(alice.contributor_token) as h:
        mine = h.get("/v1/me/batches").json()
    assert [b["batch_id"] for b in mine] == [first.json()["batch_id"]]


def _forged(d: SimDevice) -> bytes:
    env = bytearray(d.seal())
    env[-100] ^= 1  # inside the ciphertext: the signature no longer covers these bytes
    return bytes(env)


# (name, how to make the request, expected status, words in the reason, audited event)
CASES: list[tuple[str, Callable[[SimDevice, SimDevice], httpx.Response], int, str, str | None]] = [
    ("oversized", lambda a, b: a.upload(a.seal(size=400 * 1024)), 413, "exceeds", None),
    (
        "wrong content type",
        lambda a, b: a.upload(a.seal(), content_type="application/json"),
        415,
        "application/octet-stream",
        None,
    ),
    (
        "no credential",
        lambda a, b: httpx.post(
            f"{a.server}/v1/batches",
            content=a.seal(),
            headers={"Content-Type": "application/octet-stream"},
        ),
        401,
        "Bearer",
        None,
    ),
    (
        "unknown credential",
        lambda a, b: a.upload(a.seal(), token=f"ksd.{a.device_id}.nope"),
        401,
        "credential",
        None,
    ),
    (
        "contributor token cannot upload",
        lambda a, b: a.upload(a.seal(), token=a.contributor_token),
        403,
        "role device",
        None,
    ),
    ("not an envelope", lambda a, b: a.upload(b"hello" * 100), 400, "envelope", None),
    ("bad signature", lambda a, b: a.upload(_forged(a)), 403, "signature", "upload-refused"),
    (
        "signed by another key",
        lambda a, b: a.upload(a.seal(key=Ed25519PrivateKey.generate())),
        403,
        "signature",
        "upload-refused",
    ),
    (
        "another device's batch",
        lambda a, b: a.upload(b.seal()),
        403,
        "another device",
        "upload-refused",
    ),
    (
        "another contributor's key",
        lambda a, b: a.upload(a.seal(contributor=b.pseudonym)),
        403,
        "another contributor",
        "upload-refused",
    ),
    (
        "undeclared kind",
        lambda a, b: a.upload(a.seal(kinds=("clipboard.copy",))),
        422,
        "not in manifest",
        None,
    ),
    (
        "unpublished manifest",
        lambda a, b: a.upload(a.seal(manifest_version=7)),
        403,
        "consent",
        None,
    ),
    (
        "device clock hours ahead",
        lambda a, b: a.upload(a.seal(t=time.time() + 5 * 3600)),
        422,
        "hour",
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "make", "status", "words", "audited"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_with_a_reason_and_nothing_is_stored(
    setup: tuple[CollectorProc, SimDevice, SimDevice],
    pg: TempDatabase,
    name: str,
    make: Callable[[SimDevice, SimDevice], httpx.Response],
    status: int,
    words: str,
    audited: str | None,
) -> None:
    c, alice, bob = setup
    before, audit_before = stored(pg, c.root), audit_names(c)
    r = make(alice, bob)
    assert r.status_code == status, r.text
    assert words.lower() in r.json()["detail"].lower()
    assert stored(pg, c.root) == before
    new = audit_names(c)[len(audit_before) :]
    if audited:
        assert audited in new
    else:
        assert "upload-refused" not in new


def test_conflicts_are_409_and_audited(
    setup: tuple[CollectorProc, SimDevice, SimDevice], pg: TempDatabase
) -> None:
    c, alice, _ = setup
    env = alice.seal()
    ok = alice.upload(env)
    assert ok.status_code == 200
    before = stored(pg, c.root)
    bid = ok.json()["batch_id"]
    same_id = alice.upload(alice.seal(batch_id=bid, seq=1))
    assert same_id.status_code == 409 and "different bytes" in same_id.json()["detail"]
    same_seq = alice.upload(alice.seal(seq=1))
    assert same_seq.status_code == 409 and "seq" in same_seq.json()["detail"]
    assert stored(pg, c.root) == before
    assert audit_names(c).count("batch-conflict") == 2


def test_revoked_device_is_refused_and_audited(
    setup: tuple[CollectorProc, SimDevice, SimDevice], pg: TempDatabase
) -> None:
    c, alice, _ = setup
    with c.staff() as s:
        assert s.post(f"/v1/devices/{alice.device_id}/revoke").status_code == 204
    before = stored(pg, c.root)
    r = alice.upload(alice.seal())
    assert r.status_code == 403 and "revoked" in r.json()["detail"]
    assert stored(pg, c.root) == before
    assert "upload-refused" in audit_names(c)
    with alice.http(alice.contributor_token) as h:
        assert h.get("/v1/me/batches").status_code == 401


def test_no_consent_means_no_upload_and_no_lease(
    collectors: Callable[..., CollectorProc], pg: TempDatabase
) -> None:
    c = collectors("nc")
    dev = enroll_sim(c, "carol", consent=False)
    r = dev.upload(dev.seal())
    assert r.status_code == 403 and "consent" in r.json()["detail"]
    with dev.http() as h:
        lease = h.post("/v1/lease")
    assert lease.status_code == 403 and "consent" in lease.json()["detail"]
    dev.consent()
    assert dev.upload(dev.seal()).status_code == 200
    with dev.http(dev.contributor_token) as h:
        assert h.post("/v1/consent/withdraw").status_code == 200
    assert dev.upload(dev.seal()).status_code == 403


def test_device_clock_hours_behind_is_accepted(
    setup: tuple[CollectorProc, SimDevice, SimDevice],
) -> None:
    """An offline outbox legitimately holds batches from hours ago."""
    _, alice, _ = setup
    assert alice.upload(alice.seal(t=time.time() - 5 * 3600)).status_code == 200


def test_enrollment_code_works_once(collectors: Callable[..., CollectorProc]) -> None:
    import base64

    from harness import enrollment_code

    c = collectors("codes")
    code = enrollment_code(c, "dave")
    pk = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    first = httpx.post(f"{c.url}/v1/devices", json={"code": code, "public_key": pk})
    assert first.status_code == 201
    again = httpx.post(f"{c.url}/v1/devices", json={"code": code, "public_key": pk})
    assert again.status_code == 403 and "code" in again.json()["detail"]
