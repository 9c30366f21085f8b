"""The master secret: passphrase (Argon2id), environment, OS keyring, or a private key file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from keystep.vault.local import LocalVault
from keystep.vault.master import MasterKeyError, create_master, load_master, real_keyring

FAST_ARGON2 = {"iterations": 1, "lanes": 1, "memory_cost": 8 * 1024}


class MemoryKeyring:
    """The keyring backend API (set/get/delete_password), in memory.

    Not a KeyringBackend subclass on purpose: keyring discovers every subclass and would
    make it the process-wide default keyring for the tests that follow.
    """

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], str] = {}

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_headless_default_is_a_private_key_file(tmp_path: Path) -> None:
    m = create_master(tmp_path, env={}, use_keyring=False)
    assert m.source == "file" and _mode(tmp_path / "master.key") == 0o600
    assert "master.key" in m.describe() and "0600" in m.describe()
    assert load_master(tmp_path, env={}).key == m.key
    assert base64.b64encode(m.key).decode() not in repr(m)


def test_passphrase_derives_the_key_with_argon2id(tmp_path: Path) -> None:
    m = create_master(tmp_path, passphrase="correct horse battery", env={}, argon2=FAST_ARGON2)
    assert m.source == "passphrase" and not (tmp_path / "master.key").exists()
    assert m.key not in (tmp_path / "master.json").read_bytes()
    assert load_master(tmp_path, passphrase="correct horse battery", env={}).key == m.key
    with pytest.raises(MasterKeyError, match="passphrase is wrong"):
        load_master(tmp_path, passphrase="wrong horse", env={})
    with pytest.raises(MasterKeyError, match="passphrase"):
        load_master(tmp_path, env={})
    assert load_master(tmp_path, env={"KEYSTEP_PASSPHRASE": "correct horse battery"}).key == m.key


def test_environment_key_for_automation(tmp_path: Path) -> None:
    key = os.urandom(32)
    env = {"KEYSTEP_MASTER_KEY": base64.b64encode(key).decode()}
    m = create_master(tmp_path, env=env)
    assert m.source == "env" and m.key == key and not (tmp_path / "master.key").exists()
    assert load_master(tmp_path, env=env).key == key
    with pytest.raises(MasterKeyError, match="not set"):
        load_master(tmp_path, env={})
    with pytest.raises(MasterKeyError, match="not this vault"):
        load_master(tmp_path, env={"KEYSTEP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()})
    with pytest.raises(MasterKeyError, match="32 bytes"):
        create_master(
            tmp_path / "x", env={"KEYSTEP_MASTER_KEY": base64.b64encode(b"short").decode()}
        )


def test_os_keyring_when_a_backend_exists(tmp_path: Path) -> None:
    ring = MemoryKeyring()
    m = create_master(tmp_path, env={}, keyring_backend=ring)
    assert m.source == "keyring" and len(ring.store) == 1
    assert not (tmp_path / "master.key").exists()
    assert load_master(tmp_path, env={}, keyring_backend=ring).key == m.key
    ring.store.clear()
    with pytest.raises(MasterKeyError, match="keyring has no entry"):
        load_master(tmp_path, env={}, keyring_backend=ring)


def test_this_machine_has_no_real_keyring() -> None:
    # The fail backend (no D-Bus secret service) must not count as a keyring.
    assert real_keyring() is None or getattr(real_keyring(), "priority", 0) > 0


def test_vault_folder_and_files_are_private(tmp_path: Path) -> None:
    v = LocalVault.open(tmp_path / "v", create=True, env={})
    v.enroll_contributor("ann")
    v.close()
    root = tmp_path / "v"
    assert _mode(root) == 0o700
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            assert _mode(Path(dirpath) / d) == 0o700, d
        for f in filenames:
            assert _mode(Path(dirpath) / f) == 0o600, f
    assert "master" in v.describe()["master_key"]


def test_a_vault_needs_its_master_key(tmp_path: Path) -> None:
    env: dict[str, Any] = {"KEYSTEP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    LocalVault.open(tmp_path / "v", create=True, env=env).close()
    from keystep.vault.base import VaultError

    with pytest.raises(VaultError):
        LocalVault.open(tmp_path / "v", env={})
    with pytest.raises(VaultError, match="no vault"):
        LocalVault.open(tmp_path / "nothing")
