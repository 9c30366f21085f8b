"""Erasure and retention destroy keys: earlier copies of sealed data never open again."""

from __future__ import annotations

import resource
import signal
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from vaultkit import BUILDER, STEWARD_A, STEWARD_B, Clock, Device, make_device, seal_for

from keystep.audit.log import read_entries
from keystep.policy.model import Principal
from keystep.vault.base import AccessDenied, AuditUnavailable, VaultError
from keystep.vault.local import LocalVault, period_expired

OPERATOR = Principal("ops", "operator")


def _kek_blob(vault: LocalVault, pseudonym: str) -> bytes:
    db = sqlite3.connect(vault.vault_dir / "keystore.db")
    (blob,) = db.execute(
        "SELECT kek FROM contributors WHERE pseudonym = ?", (pseudonym,)
    ).fetchone()
    db.close()
    return bytes(blob)


def test_erasure_makes_an_earlier_copy_unopenable(
    vault: LocalVault, device: Device, builder_grant
) -> None:
    builder_grant()
    other = make_device(vault, "ben@example.org")
    copy_of_home = [seal_for(vault, device) for _ in range(3)]
    theirs = seal_for(vault, other)
    kek_ciphertext = _kek_blob(vault, device.pseudonym)
    db = sqlite3.connect(vault.vault_dir / "keystore.db")
    period_ciphertexts = [
        bytes(r[0])
        for r in db.execute(
            "SELECT private_key FROM period_keys WHERE pseudonym = ?", (device.pseudonym,)
        )
    ]
    db.close()
    assert period_ciphertexts
    destroyed = vault.erase_contributor(device.pseudonym, by=STEWARD_A, justification="request")
    assert destroyed == 1
    for blob in copy_of_home:
        with pytest.raises(VaultError):
            vault.unseal(blob, principal=BUILDER, purpose="model-training")
    # Other contributors are untouched.
    assert vault.unseal(theirs, principal=BUILDER, purpose="model-training").content.events
    # The wrapped KEK's bytes are gone from the key store file, not just unlinked from a row.
    keystore_bytes = (vault.vault_dir / "keystore.db").read_bytes()
    assert kek_ciphertext not in keystore_bytes
    assert not any(c in keystore_bytes for c in period_ciphertexts)
    with pytest.raises(VaultError, match="erased"):
        vault.sealing_key(device.pseudonym, "2026-11")
    with pytest.raises(VaultError, match="erased"):
        vault.enroll_contributor(device.contributor_id)


def test_erasure_survives_reopen_with_the_same_master_key(tmp_path, clock: Clock) -> None:
    from vaultkit import MASTER_ENV

    v = LocalVault.open(tmp_path / "v", create=True, clock=clock, env=MASTER_ENV)
    dev = make_device(v)
    blob = seal_for(v, dev)
    v.erase_contributor(dev.pseudonym, by=Principal(dev.contributor_id, "contributor"))
    v.close()
    v2 = LocalVault.open(tmp_path / "v", clock=clock, env=MASTER_ENV)
    with pytest.raises(VaultError):
        v2.unseal(
            blob,
            principal=Principal(dev.contributor_id, "contributor"),
            purpose="contributor-access",
        )
    v2.close()


def test_contributor_may_erase_only_themselves(vault: LocalVault, device: Device) -> None:
    other = make_device(vault, "ben@example.org")
    with pytest.raises(AccessDenied):
        vault.erase_contributor(other.pseudonym, by=Principal(device.contributor_id, "contributor"))
    with pytest.raises(AccessDenied):
        vault.erase_contributor(other.pseudonym, by=OPERATOR)


@pytest.mark.parametrize(
    ("period", "now", "expired"),
    [
        ("2026-11", datetime(2027, 11, 30, 23, 59, tzinfo=UTC), False),
        ("2026-11", datetime(2027, 12, 1, 0, 0, tzinfo=UTC), True),
        ("2026-12", datetime(2027, 12, 31, tzinfo=UTC), False),
        ("2026-12", datetime(2028, 1, 1, tzinfo=UTC), True),
    ],
)
def test_period_is_kept_twelve_whole_months_after_it_ends(period, now, expired) -> None:
    assert period_expired(period, now, 12) is expired


def test_retention_destroys_expired_periods_except_under_legal_hold(
    vault: LocalVault, device: Device, clock: Clock, builder_grant
) -> None:
    other = make_device(vault, "ben@example.org")
    nov_mine = seal_for(vault, device, period="2026-11")
    nov_theirs = seal_for(vault, other, period="2026-11")
    clock.now = datetime(2026, 12, 5, tzinfo=UTC)
    dec_mine = seal_for(vault, device, period="2026-12")
    vault.set_legal_hold(other.pseudonym, ["2026-11"], by=STEWARD_B, reason="case 42")
    with pytest.raises(AccessDenied):
        vault.set_legal_hold(device.pseudonym, ["2026-11"], by=OPERATOR, reason="x")

    clock.now = datetime(2027, 12, 1, 0, 0, 1, tzinfo=UTC)
    builder_grant()
    expired = vault.expire_periods(clock.now, by=OPERATOR)
    assert expired == [(device.pseudonym, "2026-11")]
    with pytest.raises(VaultError, match="destroyed"):
        vault.unseal(nov_mine, principal=BUILDER, purpose="model-training")
    assert vault.unseal(nov_theirs, principal=BUILDER, purpose="model-training")
    assert vault.unseal(dec_mine, principal=BUILDER, purpose="model-training")

    # The hold and the expiry both appear in the contributors' feeds.
    theirs = vault.feed(
        other.pseudonym,
        principal=Principal(other.contributor_id, "contributor"),
        purpose="contributor-access",
    )
    assert any(e.name == "legal-hold-set" and e.justification == "case 42" for e in theirs)
    mine = vault.feed(device.pseudonym, principal=STEWARD_A, purpose="security-investigation")
    assert any(e.name == "period-expired" for e in mine)

    vault.release_legal_hold(other.pseudonym, ["2026-11"], by=STEWARD_A, reason="closed")
    assert vault.expire_periods(clock.now, by=OPERATOR) == [(other.pseudonym, "2026-11")]
    assert vault.expire_periods(clock.now, by=OPERATOR) == []


def test_legal_hold_blocks_erasure_until_released(vault: LocalVault, device: Device) -> None:
    vault.set_legal_hold(device.pseudonym, ["2026-11"], by=STEWARD_A, reason="litigation")
    with pytest.raises(VaultError, match="legal hold"):
        vault.erase_contributor(device.pseudonym, by=STEWARD_A)
    vault.release_legal_hold(device.pseudonym, ["2026-11"], by=STEWARD_A, reason="done")
    vault.erase_contributor(device.pseudonym, by=STEWARD_A)


def test_audit_write_failure_refuses_the_unseal(
    vault: LocalVault, device: Device, builder_grant
) -> None:
    builder_grant()
    blob = seal_for(vault, device)
    log = vault.audit_dir / "audit.jsonl"
    size = log.stat().st_size
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # A real write failure: the file may not grow (as on a full disk).
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        with pytest.raises(AuditUnavailable):
            vault.unseal(blob, principal=BUILDER, purpose="model-training")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    # The log stays failed (fail closed) until the vault is reopened.
    with pytest.raises(AuditUnavailable):
        vault.unseal(blob, principal=BUILDER, purpose="model-training")
    assert log.stat().st_size == size
    assert all(
        e.get("batch_id") is None or e["allowed"] is not True for e in read_entries(vault.audit_dir)
    )


def test_a_second_process_sees_erasure_and_grants_at_once(
    vault: LocalVault, device: Device, clock: Clock
) -> None:
    """The web service keeps a vault open while CLI commands change the key store."""
    from vaultkit import MASTER_ENV

    blob = seal_for(vault, device)
    other = LocalVault.open(vault.vault_dir, clock=clock, env=MASTER_ENV)
    try:
        with pytest.raises(AccessDenied):
            vault.unseal(blob, principal=BUILDER, purpose="model-training")
        other.create_grant(
            BUILDER,
            "model-training",
            "sealed-batches",
            expires=clock.now + timedelta(days=1),
            by=STEWARD_A,
        )
        assert vault.unseal(blob, principal=BUILDER, purpose="model-training")  # keys now cached
        other.erase_contributor(device.pseudonym, by=STEWARD_B)
        with pytest.raises(VaultError, match=r"erased|destroyed|unregistered"):
            vault.unseal(blob, principal=BUILDER, purpose="model-training")
    finally:
        other.close()
    vault.checkpoint()
    assert vault.verify_audit(principal=OPERATOR).ok
