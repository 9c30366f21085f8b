"""Benchmark the vault: unseals/s with the audit entry durable, and 1M-entry audit verification.

Each figure sits next to a baseline measured in the same run on the same disk: the raw
append+fdatasync rate bounds one-at-a-time unseals, and raw sha256 over the same bytes bounds
verification. Run: ``.venv/bin/python bench/vault.py [--entries 1000000] [--seconds 3]``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uuid6
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystep.audit.events import UnsealBatchEvent
from keystep.audit.log import AuditLog, last_checkpoint, verify
from keystep.model.batch import BatchContent, decode_content, encode_content
from keystep.model.events import Event
from keystep.policy.decide import decide
from keystep.policy.model import Grant, Principal
from keystep.seal.envelope import (
    Envelope,
    open_body,
    parse_envelope,
    seal_batch,
    unwrap_dek,
    verify_signature,
)
from keystep.vault import signatures
from keystep.vault.local import LocalVault
from keystep.vault.signatures import DeviceVerifier

BUILDER = Principal("builder", "builder")
STEWARD = Principal("alice", "steward")


def rate(fn: Callable[[], int], seconds: float) -> tuple[float, float]:
    """(operations per wall second, operations per CPU second of this process)."""
    n = 0
    w0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - w0 < seconds:
        n += fn()
    w, c = time.perf_counter() - w0, time.process_time() - c0
    return n / w, n / max(c, 1e-9)


def raw_fsync(d: Path, seconds: float) -> float:
    fd = os.open(d / "raw.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    line = b"x" * 300 + b"\n"

    def one() -> int:
        os.write(fd, line)
        os.fdatasync(fd)
        return 1

    r, _ = rate(one, seconds)
    os.close(fd)
    return r


def make_vault(d: Path) -> tuple[LocalVault, list[bytes]]:
    env = {"KEYSTEP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    v = LocalVault.open(d / "vault", create=True, env=env)
    p = v.enroll_contributor("bench@example.org")
    dev = Ed25519PrivateKey.generate()
    pub = dev.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    v.register_device("bench-device", pub, pseudonym=p)
    period = datetime.now(UTC).strftime("%Y-%m")
    sk = v.sealing_key(p, period)
    v.create_grant(
        BUILDER,
        "model-training",
        "sealed-batches",
        expires=datetime.now(UTC) + timedelta(days=1),
        by=STEWARD,
    )
    content = encode_content(
        BatchContent(
            events=[
                Event(1.7e9 + i, "pointer.down", {"x": i, "y": i, "button": "left"})
                for i in range(50)
            ]
        )
    )
    blobs = [
        seal_batch(
            content,
            batch_id=str(uuid6.uuid7()),
            device="bench-device",
            seq=i,
            contributor=p,
            period=period,
            t_hour=f"{period}-01T00:00:00Z",
            manifest_version=1,
            redaction_version="r1",
            kinds=["pointer.down"],
            key_id=sk.key_id,
            recipient=sk.public_key,
            device_key=dev,
        )
        for i in range(256)
    ]
    return v, blobs


def crypto_floor(v: LocalVault, blobs: list[bytes], *, decode: bool) -> int:
    """The unavoidable work without policy or audit: what the vault adds is the difference."""
    verifier = v._device("bench-device").verifier  # the same backend the vault uses
    for blob in blobs:
        env = parse_envelope(blob)
        verifier.verify(env)
        dek = unwrap_dek(env, v._period_private(env.header.key_id)[2])
        if decode:
            decode_content(open_body(env, dek))
    return len(blobs)


def _verify_once(verifier: DeviceVerifier, env: Envelope) -> int:
    verifier.verify(env)
    return 1


def _openssl_once(env: Envelope, public_key: bytes) -> int:
    verify_signature(env, public_key)
    return 1


def threaded(
    v: LocalVault, blobs: list[bytes], threads: int, seconds: float
) -> tuple[float, float]:
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            v.unseal(blobs[i % len(blobs)], principal=BUILDER, purpose="model-training")
            counts[k] += 1
            i += threads

    w0, c0 = time.perf_counter(), time.process_time()
    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    w, c = time.perf_counter() - w0, time.process_time() - c0
    return sum(counts) / w, sum(counts) / c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        rows: list[tuple[str, str, str, str]] = []
        fs = raw_fsync(d, args.seconds)
        v, blobs = make_vault(d)
        i = 0

        def one() -> int:
            nonlocal i
            i += 1
            v.unseal(blobs[i % len(blobs)], principal=BUILDER, purpose="model-training")
            return 1

        wall, cpu = rate(one, args.seconds)
        rows.append(
            (
                "unseal, one at a time (1 fdatasync each)",
                f"{wall:,.0f}/s",
                f"{cpu:,.0f}/s",
                f"raw append+fdatasync {fs:,.0f}/s",
            )
        )
        wall, cpu = threaded(v, blobs, 8, args.seconds)
        rows.append(
            (
                "unseal, 8 threads (group commit)",
                f"{wall:,.0f}/s",
                f"{cpu:,.0f}/s",
                f"raw append+fdatasync {fs:,.0f}/s",
            )
        )

        def many() -> int:
            return len(v.unseal_many(blobs[:64], principal=BUILDER, purpose="model-training"))

        _, floor_full = rate(lambda: crypto_floor(v, blobs[:64], decode=True), args.seconds)
        _, floor_key = rate(lambda: crypto_floor(v, blobs[:64], decode=False), args.seconds)
        wall, cpu = rate(many, args.seconds)
        rows.append(
            (
                "unseal_many, 64 per audit write",
                f"{wall:,.0f}/s",
                f"{cpu:,.0f}/s",
                f"parse+verify+unwrap+open+decode, no policy/audit {floor_full:,.0f}/s",
            )
        )

        def keys() -> int:
            return len(v.unseal_keys(blobs[:64], principal=BUILDER, purpose="model-training"))

        wall, cpu = rate(keys, args.seconds)
        rows.append(
            (
                "unseal_keys (verify+decide+audit+DEK), 64/write",
                f"{wall:,.0f}/s",
                f"{cpu:,.0f}/s",
                f"parse+verify+unwrap, no policy/audit {floor_key:,.0f}/s",
            )
        )
        gate_event = UnsealBatchEvent(
            t=datetime.now(UTC),
            principal="builder",
            role="builder",
            purpose="model-training",
            contributor=v.pseudonym("bench@example.org"),
            batch_id=str(uuid6.uuid7()),
            device="bench-device",
            period="2026-11",
            allowed=True,
            reason="grant",
        )

        def gate() -> int:
            # What the vault adds around the crypto: the decision and its durable entry.
            grants = v.grants()
            entries = []
            for _ in range(64):
                d = decide(
                    BUILDER,
                    "unseal",
                    "model-training",
                    contributor=gate_event.contributor,
                    grants=grants,
                    now=datetime.now(UTC),
                )
                entries.append(dataclasses.replace(gate_event, allowed=d.allowed, reason=d.reason))
            v._log.append_many(entries)
            return 64

        wall, cpu = rate(gate, args.seconds)
        rows.append(
            (
                "decision + durable audit entry, 64/write (no crypto)",
                f"{wall:,.0f}/s",
                f"{cpu:,.0f}/s",
                f"raw append+fdatasync {fs:,.0f}/s",
            )
        )
        grants = v.grants()
        now = datetime.now(UTC)
        p = v.pseudonym("bench@example.org")
        assert all(isinstance(g, Grant) for g in grants)

        def decisions() -> int:
            for _ in range(1000):
                decide(BUILDER, "unseal", "model-training", contributor=p, grants=grants, now=now)
            return 1000

        env0 = parse_envelope(blobs[0])
        pub = v._device("bench-device").verifier.public_key
        rows.append(
            (
                "Ed25519 verify, one envelope",
                "-",
                f"{1e6 / rate(lambda: _verify_once(DeviceVerifier(pub), env0), 1.0)[1]:,.0f} µs"
                f" ({signatures.BACKEND})",
                f"OpenSSL {1e6 / rate(lambda: _openssl_once(env0, pub), 1.0)[1]:,.0f} µs",
            )
        )
        wall, cpu = rate(decisions, 1.0)
        rows.append(
            ("decide() alone (no crypto, no audit)", f"{wall:,.0f}/s", f"{cpu:,.0f}/s", "-")
        )
        v.close()

        # 1M entries: written in chunks (one fdatasync per chunk), then verified from disk.
        key = Ed25519PrivateKey.generate()
        logdir = d / "big"
        log = AuditLog(logdir, signer=key.sign, checkpoint_every=100_000)
        t0 = datetime(2026, 11, 22, tzinfo=UTC)
        chunk = 10_000
        for start in range(0, args.entries, chunk):
            log.append_many(
                UnsealBatchEvent(
                    t=t0,
                    principal="builder",
                    role="builder",
                    purpose="model-training",
                    contributor="p_" + "a" * 32,
                    batch_id=f"0190f5e2-7c4a-7d2e-9b1a-{j:012d}",
                    device="bench",
                    period="2026-11",
                    allowed=True,
                    reason="grant g_0123456789abcdef",
                )
                for j in range(start, min(start + chunk, args.entries))
            )
        log.checkpoint()
        log.close()
        pub = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        data = (logdir / "audit.jsonl").read_bytes()
        w0 = time.perf_counter()
        report = verify(logdir, pub, anchor=last_checkpoint(logdir))
        vt = time.perf_counter() - w0
        assert report.ok and report.entries == args.entries, report.problems
        w0 = time.perf_counter()
        h = hashlib.sha256
        for line in data.split(b"\n"):
            h(line).digest()
        st = time.perf_counter() - w0
        rows.append(
            (
                f"audit verify, {args.entries:,} entries ({len(data) / 1e6:,.0f} MB)",
                f"{vt:.2f} s",
                "-",
                f"raw sha256 per line {st:.2f} s",
            )
        )

    w = [
        max(len(r[i]) for r in [*rows, ("measure", "wall", "per CPU core", "baseline")])
        for i in range(4)
    ]
    head = ("measure", "wall", "per CPU core", "baseline (same run)")
    print(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)))
    print("-|-".join("-" * x for x in w))
    for r in rows:
        print(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    print(
        f"targets: >= 5,000 unseals/s per core with the audit durable; verify 1M in <= 10 s "
        f"({os.cpu_count()} cores here)"
    )


if __name__ == "__main__":
    main()
