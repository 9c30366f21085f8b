"""Mutation tests: a clean deployment has no finding; each injected misconfiguration is found."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import zstandard
from exposurekit import Deployment

from keystep.exposure import default_checks, scan
from keystep.exposure.base import ScanContext
from keystep.policy.model import Principal
from keystep.vault.local import LocalVault


def _keystore_sql(d: Deployment, sql: str, params: tuple[object, ...] = ()) -> None:
    db = sqlite3.connect(d.vault_dir / "keystore.db")
    db.execute(sql, params)
    db.commit()
    db.close()


def _with_vault(d: Deployment, fn: Callable[[LocalVault], object]) -> None:
    v = LocalVault.open(d.vault_dir)
    try:
        fn(v)
    finally:
        v.close()


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tamper_audit(d: Deployment) -> None:
    log = d.vault_dir / "audit" / "audit.jsonl"
    data = bytearray(log.read_bytes())
    data[80] ^= 0x20
    log.write_bytes(bytes(data))


MUTATIONS: dict[str, tuple[str, Callable[[Deployment], object]]] = {
    "home folder world-readable": ("home-modes", lambda d: os.chmod(d.home.root, 0o755)),
    "outbox folder group-readable": ("home-modes", lambda d: os.chmod(d.home.outbox_dir, 0o750)),
    "outbox database 0644": ("sqlite-modes", lambda d: os.chmod(d.home.outbox_db, 0o644)),
    "blob file 0644": (
        "home-modes",
        lambda d: os.chmod(d.home.blobs_dir / "ab" / "batch-1", 0o644),
    ),
    "blob folder 0755": ("home-modes", lambda d: os.chmod(d.home.blobs_dir, 0o755)),
    "device key 0644": ("home-modes", lambda d: os.chmod(d.home.device_key_file, 0o644)),
    "key store 0644": ("sqlite-modes", lambda d: os.chmod(d.vault_dir / "keystore.db", 0o644)),
    "vault folder 0755": ("vault-modes", lambda d: os.chmod(d.vault_dir, 0o755)),
    "master key file 0640": ("vault-modes", lambda d: os.chmod(d.vault_dir / "master.key", 0o640)),
    "audit log 0644": (
        "vault-modes",
        lambda d: os.chmod(d.vault_dir / "audit" / "audit.jsonl", 0o644),
    ),
    "plain file in the blob store": (
        "blob-envelopes",
        lambda d: (d.home.blobs_dir / "ab" / "leak.json").write_text("{}"),
    ),
    "truncated envelope in the blob store": (
        "blob-envelopes",
        lambda d: (d.home.blobs_dir / "ab" / "batch-2").write_bytes(d.envelope[:100]),
    ),
    "unsealed row in the outbox": ("outbox-envelopes", lambda d: _outbox_put(d, b"KSC1{...}")),
    "decoded batch content in the state folder": (
        "unsealed-content",
        lambda d: (d.home.state_dir / "dump.bin").write_bytes(b"KSC1\x00\x00\x00\x02{}"),
    ),
    "zstd-compressed event JSON in a spill folder": (
        "unsealed-content",
        lambda d: _spill(
            d,
            zstandard.ZstdCompressor().compress(
                b'[{"t":1,"kind":"text.typed","text":"my secret memo"}]'
            ),
        ),
    ),
    "zlib-compressed event JSON in temp": (
        "unsealed-content",
        lambda d: _temp(d, zlib.compress(b'{"kind": "pointer.down", "x": 1}')),
    ),
    "keystep temp folder world-readable": ("temp-modes", lambda d: _temp_dir(d, 0o755)),
    "grant without expiry": (
        "grant-expiry",
        lambda d: _keystore_sql(d, "UPDATE grants SET expires = '' WHERE kind = 'grant'"),
    ),
    "grant past expiry still on record": (
        "grant-expiry",
        lambda d: _keystore_sql(
            d,
            "UPDATE grants SET expires = ? WHERE kind = 'grant'",
            (_iso(datetime.now(UTC) - timedelta(days=1)),),
        ),
    ),
    "grant for ten years (written around the vault)": (
        "grant-expiry",
        lambda d: _keystore_sql(
            d,
            "UPDATE grants SET expires = ? WHERE kind = 'grant'",
            (_iso(datetime.now(UTC) + timedelta(days=3650)),),
        ),
    ),
    "open break-glass": (
        "break-glass",
        lambda d: _with_vault(
            d,
            lambda v: v.open_break_glass(
                Principal("carol", "steward"),
                v.pseudonym("ann@example.org"),
                approvers=(Principal("a", "steward"), Principal("b", "steward")),
                justification="incident",
                expires=datetime.now(UTC) + timedelta(hours=2),
            ),
        ),
    ),
    "key store copied into the home": (
        "vault-location",
        lambda d: (d.home.state_dir / "keystore.db").write_bytes(
            (d.vault_dir / "keystore.db").read_bytes()
        ),
    ),
    "audit log tampered": ("audit-chain", _tamper_audit),
    "symlink in the home": (
        "home-modes",
        lambda d: (d.home.state_dir / "link").symlink_to("/etc/hostname"),
    ),
}


def _outbox_put(d: Deployment, blob: bytes) -> None:
    db = sqlite3.connect(d.home.outbox_db)
    db.execute(
        "INSERT INTO batches (batch_id, seq, t_start, t_end, envelope, state)"
        " VALUES ('x', 99, 0, 1, ?, 'pending')",
        (blob,),
    )
    db.commit()
    db.close()


def _spill(d: Deployment, data: bytes) -> None:
    spill = d.home.root / "spill"
    spill.mkdir(mode=0o700, exist_ok=True)
    (spill / "frames.zst").write_bytes(data)
    os.chmod(spill / "frames.zst", 0o600)


def _temp(d: Deployment, data: bytes) -> None:
    p = d.ctx.temp_dir / "keystep-spill-1"
    p.write_bytes(data)
    os.chmod(p, 0o600)


def _temp_dir(d: Deployment, mode: int) -> None:
    p = d.ctx.temp_dir / "keystep-work"
    p.mkdir()
    os.chmod(p, mode)


def _scan(ctx: ScanContext) -> list[str]:
    return [f"{f.check}: {f.where}: {f.problem}" for f in scan(ctx, default_checks()).findings]


def test_a_fresh_deployment_is_clean(deployment: Deployment) -> None:
    assert _scan(deployment.ctx) == []


def test_enough_kinds_of_mutation() -> None:
    assert len(MUTATIONS) >= 10
    assert len({check for check, _ in MUTATIONS.values()}) >= 9


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_is_reported(deployment: Deployment, name: str) -> None:
    check, mutate = MUTATIONS[name]
    mutate(deployment)
    report = scan(deployment.ctx, default_checks())
    assert any(f.check == check for f in report.findings), (name, _scan(deployment.ctx))
    assert all(f.fix for f in report.findings)


def test_the_contributors_everyday_commands_leave_it_clean(deployment: Deployment) -> None:
    """What the CLI writes into the home (state, locks, queues) is private too, under the
    usual umask."""
    env = {**os.environ, "KEYSTEP_HOME": str(deployment.home.root)}
    for args in (
        ("status",),
        ("status", "--json"),
        ("pause", "--for", "1m"),
        ("resume",),
        ("exclude", "--title", "Payroll"),
        ("forget", "--last", "10m"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "keystep.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=lambda: os.umask(0o022),
        )
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
    assert _scan(deployment.ctx) == []
