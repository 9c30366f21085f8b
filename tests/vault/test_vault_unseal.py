"""unseal: verify, decide, audit durably, only then open."""

from __future__ import annotations

import pytest
from vaultkit import BUILDER, Clock, Device, content, make_device, seal_for

from keystep.audit.log import read_entries
from keystep.policy.model import Principal
from keystep.vault.base import AccessDenied, BadEnvelope, VaultError
from keystep.vault.local import LocalVault


def test_builder_with_grant_opens_and_is_audited(
    vault: LocalVault, device: Device, builder_grant
) -> None:
    builder_grant()
    blob = seal_for(vault, device, content("secret words"))
    out = vault.unseal(blob, principal=BUILDER, purpose="model-training")
    assert out.content.events[-1].data["text"] == "secret words"
    assert out.header.contributor == device.pseudonym
    last = list(read_entries(vault.audit_dir))[-1]
    assert last["event"] == "unseal-batch" and last["allowed"] is True
    assert last["batch_id"] == out.header.batch_id and last["purpose"] == "model-training"
    assert "secret words" not in (vault.audit_dir / "audit.jsonl").read_text()


def test_builder_without_grant_is_denied_and_the_refusal_is_audited(
    vault: LocalVault, device: Device
) -> None:
    blob = seal_for(vault, device)
    with pytest.raises(AccessDenied, match="no active grant"):
        vault.unseal(blob, principal=BUILDER, purpose="model-training")
    last = list(read_entries(vault.audit_dir))[-1]
    assert last["event"] == "unseal-batch" and last["allowed"] is False


def test_grant_expiry_ends_access(
    vault: LocalVault, device: Device, clock: Clock, builder_grant
) -> None:
    builder_grant()
    blob = seal_for(vault, device)
    vault.unseal(blob, principal=BUILDER, purpose="model-training")
    clock.advance(days=31)
    with pytest.raises(AccessDenied):
        vault.unseal(blob, principal=BUILDER, purpose="model-training")


def test_contributor_opens_own_batch_only(vault: LocalVault, device: Device) -> None:
    other = make_device(vault, "ben@example.org")
    mine = seal_for(vault, device)
    theirs = seal_for(vault, other)
    me = Principal(device.contributor_id, "contributor")
    assert vault.unseal(mine, principal=me, purpose="contributor-access").content.events
    with pytest.raises(AccessDenied):
        vault.unseal(theirs, principal=me, purpose="contributor-access")
    # A claimed pseudonym is ignored: the vault recomputes it from the name.
    liar = Principal(device.contributor_id, "contributor", pseudonym=other.pseudonym)
    with pytest.raises(AccessDenied):
        vault.unseal(theirs, principal=liar, purpose="contributor-access")


def test_unknown_purpose_is_a_schema_error_not_a_deny(vault: LocalVault, device: Device) -> None:
    from keystep.policy.model import PolicyError

    blob = seal_for(vault, device)
    with pytest.raises(PolicyError):
        vault.unseal(blob, principal=BUILDER, purpose="performance-review")


def test_unregistered_device_and_foreign_signature_are_refused(
    vault: LocalVault, device: Device, builder_grant
) -> None:
    builder_grant()
    other = make_device(vault, "ben@example.org")
    # Signed by ben's device key but claiming ann's device: signature fails.
    forged = seal_for(vault, device, signer=other.key)
    with pytest.raises(BadEnvelope, match="signature"):
        vault.unseal(forged, principal=BUILDER, purpose="model-training")


def test_sealing_key_is_stable_and_refused_past_retention(
    vault: LocalVault, device: Device, clock: Clock
) -> None:
    a = vault.sealing_key(device.pseudonym, "2026-11")
    assert vault.sealing_key(device.pseudonym, "2026-11") == a
    assert len(a.public_key) == 32 and a.key_id.startswith("k_")
    with pytest.raises(VaultError, match="retention"):
        vault.sealing_key(device.pseudonym, "2025-10")
    clock.advance(days=1)
    with pytest.raises(VaultError):
        vault.sealing_key(device.pseudonym, "2026-13")


def test_reopen_keeps_keys_and_pseudonyms(tmp_path, clock: Clock, builder_grant) -> None:
    from vaultkit import MASTER_ENV

    v = LocalVault.open(tmp_path / "v", create=True, clock=clock, env=MASTER_ENV)
    dev = make_device(v)
    blob = seal_for(v, dev)
    p = v.pseudonym("ann@example.org")
    v.close()
    v2 = LocalVault.open(tmp_path / "v", clock=clock, env=MASTER_ENV)
    assert v2.pseudonym("ann@example.org") == p
    me = Principal("ann@example.org", "contributor")
    assert v2.unseal(blob, principal=me, purpose="contributor-access").content.frames
    v2.close()


def test_unseal_many_shares_one_audit_write(
    vault: LocalVault, device: Device, builder_grant
) -> None:
    builder_grant()
    blobs = [seal_for(vault, device) for _ in range(5)] + [b"not an envelope"]
    before = len(list(read_entries(vault.audit_dir)))
    out = vault.unseal_many(blobs, principal=BUILDER, purpose="model-training")
    assert [type(o).__name__ for o in out] == ["Unsealed"] * 5 + ["BadEnvelope"]
    assert len(list(read_entries(vault.audit_dir))) == before + 5


def test_a_grant_edited_around_the_vault_grants_nothing(
    vault: LocalVault, device: Device, builder_grant
) -> None:
    import sqlite3

    builder_grant()
    blob = seal_for(vault, device)
    assert vault.unseal(blob, principal=BUILDER, purpose="model-training")
    db = sqlite3.connect(vault.vault_dir / "keystore.db")
    db.execute("UPDATE grants SET expires = '2099-01-01T00:00:00.000000Z'")  # "forever"
    db.commit()
    db.close()
    with pytest.raises(AccessDenied):
        vault.unseal(blob, principal=BUILDER, purpose="model-training")
    assert vault.grants() == []
