"""The trust commands: audit verify/log/exposure, erase, maintain, grant/hold (CLI samples)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from keystep.cli import main as cli_main
from keystep.cli.setup import init_home
from keystep.cli.trust import add_grant_commands
from keystep.home import Home
from keystep.outbox.sqlite import Outbox
from keystep.policy.model import Principal
from keystep.vault.base import VaultError
from keystep.vault.local import LocalVault


@pytest.fixture(autouse=True)
def private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared /tmp holds other programs' (and other tests') keystep-* entries."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "home")
    init_home(h, contributor="ann@example.org", vault_dir=tmp_path / "home-vault")
    return h


def run(home: Home, *argv: str) -> int:
    return cli_main.main(["--home", str(home.root), *argv])


def _grant_cli(home: Home, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=str(home.root))
    sub = parser.add_subparsers(dest="command", required=True)
    add_grant_commands(sub, cli_main._add)
    args = parser.parse_args(list(argv))
    args.home = str(home.root)
    return cli_main._resolve(args.handler)(args)


def _vault(home: Home) -> LocalVault:
    return LocalVault.open(Path(home.read_config()["vault"]["path"]))


def test_audit_verify_passes_then_catches_tampering(home: Home, capsys) -> None:
    assert run(home, "audit", "verify") == 0
    assert "audit log OK" in capsys.readouterr().out
    log = Path(home.read_config()["vault"]["path"]) / "audit" / "audit.jsonl"
    log.write_bytes(log.read_bytes().replace(b"builder", b"Builder", 1))
    assert run(home, "audit", "verify") == 1
    assert "FAILED" in capsys.readouterr().out


def test_audit_log_is_the_contributors_feed(home: Home, capsys) -> None:
    assert run(home, "audit", "log", "--contributor", "ann@example.org", "--json") == 0
    entries = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {"contributor-enrolled", "device-registered", "grant-created"} <= {
        e["event"] for e in entries
    }
    assert all("ann@example.org" not in json.dumps(e) for e in entries)


def test_erase_needs_confirmation_and_then_nothing_opens(home: Home, capsys) -> None:
    from vaultkit import Device, seal_for

    v = _vault(home)
    cfg = home.read_config()
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(home.device_key_file.read_bytes(), None)
    dev = Device(cfg["device_id"], key, "ann@example.org", cfg["pseudonym"])  # type: ignore[arg-type]
    blob = seal_for(v, dev)
    v.close()
    outbox = Outbox(home.outbox_db)
    outbox.put("0190f5e2-7c4a-7d2e-9b1a-000000000001", 1, 1.0, 2.0, blob)
    outbox.close()
    copy_of_home = blob

    assert run(home, "erase") == 2  # stdin is not a terminal: no prompt, no erasure
    assert run(home, "erase", "--yes") == 0
    out = capsys.readouterr().out
    assert "erased ann@example.org" in out and "1 rows deleted" in out
    v = _vault(home)
    try:
        with pytest.raises(VaultError):
            v.unseal(
                copy_of_home,
                principal=Principal("ann@example.org", "contributor"),
                purpose="contributor-access",
            )
    finally:
        v.close()
    assert Outbox(home.outbox_db).counts()["pending"] == 0


def test_maintain_destroys_expired_periods(home: Home, capsys) -> None:
    assert run(home, "maintain") == 0
    assert "nothing to expire" in capsys.readouterr().out
    assert run(home, "maintain", "--now", "2035-01-01T00:00:00Z") == 0
    assert "retention: destroyed" in capsys.readouterr().out


def test_grant_commands(home: Home, capsys) -> None:
    assert (
        _grant_cli(
            home,
            "grant",
            "create",
            "--principal",
            "rita",
            "--role",
            "researcher",
            "--purpose",
            "dataset-review",
            "--data-class",
            "released-datasets",
            "--days",
            "7",
        )
        == 0
    )
    assert (
        _grant_cli(
            home,
            "grant",
            "create",
            "--principal",
            "rita",
            "--role",
            "researcher",
            "--purpose",
            "gossip",
            "--data-class",
            "released-datasets",
            "--days",
            "7",
        )
        == 2
    )
    assert (
        _grant_cli(
            home,
            "grant",
            "break-glass",
            "--steward",
            "carol",
            "--contributor",
            "ann@example.org",
            "--approver",
            "a",
            "--approver",
            "a",
            "--justification",
            "x",
        )
        == 2
    )
    assert (
        _grant_cli(
            home,
            "grant",
            "break-glass",
            "--steward",
            "carol",
            "--contributor",
            "ann@example.org",
            "--approver",
            "a",
            "--approver",
            "b",
            "--justification",
            "incident 9",
            "--hours",
            "2",
        )
        == 0
    )
    assert (
        _grant_cli(
            home,
            "hold",
            "set",
            "--contributor",
            "ann@example.org",
            "--period",
            "2026-11",
            "--reason",
            "litigation",
        )
        == 0
    )
    capsys.readouterr()
    assert _grant_cli(home, "grant", "list") == 0
    listing = capsys.readouterr().out
    assert "rita (researcher)" in listing and "break-glass carol" in listing
    # An open break-glass is an exposure finding until it is closed.
    assert run(home, "audit", "exposure") == 1
    assert "break-glass" in capsys.readouterr().out
    bg = next(x.split()[0] for x in listing.splitlines() if "break-glass" in x)
    assert _grant_cli(home, "grant", "revoke", bg) == 0
    assert run(home, "audit", "exposure") == 0


def test_cli_processes_sample(home: Home) -> None:
    """Through real processes: exit statuses and the versioned JSON report."""
    env = {**os.environ, "KEYSTEP_HOME": str(home.root)}
    exe = [sys.executable, "-m", "keystep.cli.main"]
    r = subprocess.run(
        [*exe, "audit", "exposure", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == 1
    os.chmod(home.device_key_file, 0o644)
    r = subprocess.run(
        [*exe, "audit", "exposure"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1 and "chmod 600" in r.stdout
    r = subprocess.run(
        [*exe, "audit", "verify"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "audit log OK" in r.stdout
