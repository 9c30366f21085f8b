"""The Vault contract: every implementation (in-process, remote over TCP and a unix socket)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from vaultkit import BUILDER, STEWARD_A, STEWARD_B, T0, Clock, content, make_device, seal_for

from keystep.audit.events import ConsentGivenEvent
from keystep.policy.model import BreakGlass, Grant, PolicyError, Principal
from keystep.vault.base import AccessDenied, BadEnvelope, Vault, VaultError
from keystep.vault.local import LocalVault


def test_enroll_is_idempotent_and_pseudonymous(any_vault: Vault) -> None:
    p = any_vault.enroll_contributor("ann@example.org")
    assert (
        p
        == any_vault.enroll_contributor("ann@example.org")
        == any_vault.pseudonym("ann@example.org")
    )
    assert p.startswith("p_") and "ann" not in p
    assert any_vault.pseudonym("ben@example.org") != p


def test_round_trip_for_a_granted_builder(any_vault: Vault, clock: Clock) -> None:
    dev = make_device(any_vault)
    blob = seal_for(any_vault, dev, content("round trip"), period="2026-11")
    with pytest.raises(AccessDenied):
        any_vault.unseal(blob, principal=BUILDER, purpose="model-training")
    g = any_vault.create_grant(
        BUILDER,
        "model-training",
        "sealed-batches",
        expires=clock.now + timedelta(days=1),
        by=STEWARD_A,
    )
    assert isinstance(g, Grant) and g.grant_id in [x.grant_id for x in any_vault.grants()]
    out = any_vault.unseal(blob, principal=BUILDER, purpose="model-training")
    assert out.content.events[-1].data["text"] == "round trip"
    assert out.header.contributor == dev.pseudonym
    keys = any_vault.unseal_keys([blob], principal=BUILDER, purpose="model-training")
    assert isinstance(keys[0], bytes) and len(keys[0]) == 32
    any_vault.revoke_grant(g.grant_id, by=STEWARD_A)
    with pytest.raises(AccessDenied):
        any_vault.unseal(blob, principal=BUILDER, purpose="model-training")


def test_errors_keep_their_type(any_vault: Vault) -> None:
    dev = make_device(any_vault)
    blob = seal_for(any_vault, dev, period="2026-11")
    with pytest.raises(PolicyError):
        any_vault.unseal(blob, principal=BUILDER, purpose="curiosity")
    with pytest.raises(BadEnvelope):
        any_vault.unseal(b"garbage", principal=BUILDER, purpose="model-training")
    with pytest.raises(AccessDenied):
        any_vault.unseal(blob, principal=Principal("hr", "operator"), purpose="model-training")
    with pytest.raises(VaultError):
        any_vault.sealing_key(dev.pseudonym, "1999-01")


def test_break_glass_needs_two_stewards_and_shows_in_the_feed(
    any_vault: Vault, clock: Clock
) -> None:
    dev = make_device(any_vault)
    blob = seal_for(any_vault, dev, period="2026-11")
    investigator = Principal("carol", "steward")
    with pytest.raises(AccessDenied):
        any_vault.unseal(blob, principal=investigator, purpose="security-investigation")
    with pytest.raises(PolicyError):
        any_vault.open_break_glass(
            investigator,
            dev.pseudonym,
            approvers=(STEWARD_A, STEWARD_A),
            justification="x",
            expires=clock.now + timedelta(hours=1),
        )
    with pytest.raises(PolicyError):
        any_vault.open_break_glass(
            investigator,
            dev.pseudonym,
            approvers=(STEWARD_A, STEWARD_B),
            justification="x",
            expires=clock.now + timedelta(hours=25),
        )
    with pytest.raises(AccessDenied):
        any_vault.open_break_glass(
            investigator,
            dev.pseudonym,
            approvers=(STEWARD_A, Principal("mgr", "operator")),
            justification="x",
            expires=clock.now + timedelta(hours=1),
        )
    bg = any_vault.open_break_glass(
        investigator,
        dev.pseudonym,
        approvers=(STEWARD_A, STEWARD_B),
        justification="incident 7",
        expires=clock.now + timedelta(hours=2),
    )
    assert isinstance(bg, BreakGlass)
    assert any_vault.unseal(blob, principal=investigator, purpose="security-investigation")
    feed = any_vault.feed(
        dev.pseudonym,
        principal=Principal(dev.contributor_id, "contributor"),
        purpose="contributor-access",
    )
    names = [e.name for e in feed]
    assert "break-glass-opened" in names and names[-1] == "unseal-batch"
    assert any(e.justification == "incident 7" for e in feed)
    clock.advance(hours=3)
    with pytest.raises(AccessDenied):
        any_vault.unseal(blob, principal=investigator, purpose="security-investigation")
    any_vault.revoke_grant(bg.grant_id, by=STEWARD_A, justification="investigation closed")
    feed = any_vault.feed(dev.pseudonym, principal=STEWARD_B, purpose="security-investigation")
    assert feed[-1].name == "break-glass-closed"


def test_feed_is_the_contributors_own(any_vault: Vault) -> None:
    ann = make_device(any_vault)
    ben = make_device(any_vault, "ben@example.org")
    any_vault.record(
        ConsentGivenEvent(
            t=T0,
            principal=ann.pseudonym,
            role="contributor",
            contributor=ann.pseudonym,
            manifest_version=1,
        )
    )
    mine = any_vault.feed(
        ann.pseudonym,
        principal=Principal(ann.contributor_id, "contributor"),
        purpose="contributor-access",
    )
    assert "consent-given" in [e.name for e in mine]
    with pytest.raises(AccessDenied):
        any_vault.feed(
            ben.pseudonym,
            principal=Principal(ann.contributor_id, "contributor"),
            purpose="contributor-access",
        )
    with pytest.raises(AccessDenied):
        any_vault.read_audit(
            principal=Principal("ops", "operator"), purpose="security-investigation"
        )
    assert any_vault.read_audit(
        principal=Principal("aud", "auditor"), purpose="security-investigation"
    )


def test_erase_and_verify(any_vault: Vault, clock: Clock) -> None:
    dev = make_device(any_vault)
    blob = seal_for(any_vault, dev, period="2026-11")
    any_vault.create_grant(
        BUILDER,
        "model-training",
        "sealed-batches",
        expires=clock.now + timedelta(days=1),
        by=STEWARD_A,
    )
    any_vault.set_legal_hold(dev.pseudonym, ["2026-11"], by=STEWARD_A, reason="case")
    assert [h.period for h in any_vault.legal_holds()] == ["2026-11"]
    any_vault.release_legal_hold(dev.pseudonym, ["2026-11"], by=STEWARD_A, reason="done")
    assert any_vault.erase_contributor(dev.pseudonym, by=STEWARD_B) == 1
    with pytest.raises(VaultError):
        any_vault.unseal(blob, principal=BUILDER, purpose="model-training")
    assert any_vault.expire_periods(clock.now, by=Principal("ops", "operator")) == []
    any_vault.checkpoint()
    report = any_vault.verify_audit(principal=Principal("aud", "auditor"))
    assert report.ok and report.entries > 5
    assert len(any_vault.audit_public_key()) == 32
    assert "master_key" in any_vault.describe() or any_vault.describe()["kind"] == "remote"


def test_remote_refuses_a_bad_token_and_fails_closed_when_unreachable(
    vault: LocalVault, tmp_path
) -> None:
    from keystep.vault.base import AuditUnavailable
    from keystep.vault.remote import RemoteVault
    from keystep.vault.server import VaultServer

    server = VaultServer(vault, token="right").start()
    try:
        with (
            RemoteVault(server.url, token="wrong") as client,
            pytest.raises(AccessDenied, match="token"),
        ):
            client.pseudonym("ann")
        url = server.url
    finally:
        server.stop()
    with (
        RemoteVault(url, token="right", timeout=2) as client,
        pytest.raises(AuditUnavailable, match="unreachable"),
    ):
        client.unseal(b"x", principal=BUILDER, purpose="model-training")


def test_vault_runs_as_its_own_process(tmp_path) -> None:
    import os
    import subprocess
    import sys
    import time

    from vaultkit import MASTER_ENV

    from keystep.vault.remote import RemoteVault

    LocalVault.open(tmp_path / "v", create=True, env=MASTER_ENV).close()
    sock, token_file = tmp_path / "vault.sock", tmp_path / "token"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keystep.vault.server",
            "--vault-dir",
            str(tmp_path / "v"),
            "--socket",
            str(sock),
            "--token-file",
            str(token_file),
        ],
        env={**os.environ, **MASTER_ENV},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("vault serving on unix://")
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        with RemoteVault(f"unix://{sock}", token=token_file.read_text().strip()) as client:
            p = client.enroll_contributor("ann@example.org")
            assert client.pseudonym("ann@example.org") == p
            assert client.describe()["kind"] == "remote"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    deadline = time.monotonic() + 5
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    v = LocalVault.open(tmp_path / "v", env=MASTER_ENV)
    try:
        assert v.verify_audit(principal=Principal("aud", "auditor")).ok
    finally:
        v.close()
