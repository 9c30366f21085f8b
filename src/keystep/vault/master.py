"""The master secret that encrypts the key store: keyring, passphrase, environment or key file.

Chosen once, when the vault is created, and recorded (never the secret itself) in
``master.json``: a passphrase when one is given (Argon2id), ``KEYSTEP_MASTER_KEY`` when it
is set (automation), the OS keyring when a real backend is available, otherwise a random
key in its own 0600 file so a headless machine still works without prompting.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from keystep.vault.base import VaultError

ENV_VAR: Final = "KEYSTEP_MASTER_KEY"
MASTER_FILE: Final = "master.json"
KEY_FILE: Final = "master.key"
KEYRING_SERVICE: Final = "keystep-vault"
MASTER_FORMAT_VERSION: Final = 1
# OWASP's second Argon2id profile (64 MiB, 3 passes); parameters are stored with the salt.
ARGON2_DEFAULTS: Final = {"iterations": 3, "lanes": 4, "memory_cost": 64 * 1024}
_CHECK: Final = b"keystep/master-check/1"

SOURCES: Final = ("passphrase", "env", "keyring", "file")


class MasterKeyError(VaultError):
    """The master secret is missing or wrong."""


@dataclass(frozen=True)
class MasterKey:
    key: bytes
    source: str
    location: str

    def describe(self) -> str:
        return {
            "passphrase": f"derived from a passphrase (Argon2id; salt in {self.location})",
            "env": f"from the {ENV_VAR} environment variable",
            "keyring": f"in the OS keyring ({self.location})",
            "file": f"in the file {self.location} (mode 0600)",
        }[self.source]

    def __repr__(self) -> str:  # never print the key
        return f"MasterKey(source={self.source!r}, location={self.location!r})"


def real_keyring() -> Any | None:
    """The OS keyring backend, or None when only the fail/null/chainer-without-backends exists."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:
        return None
    if isinstance(backend, fail.Keyring) or type(backend).__module__.endswith(".null"):
        return None
    if float(getattr(backend, "priority", 0)) <= 0:
        return None
    return backend


def _derive(passphrase: str, salt: bytes, params: Mapping[str, int]) -> bytes:
    return Argon2id(
        salt=salt,
        length=32,
        iterations=params["iterations"],
        lanes=params["lanes"],
        memory_cost=params["memory_cost"],
    ).derive(passphrase.encode("utf-8"))


def _from_env(env: Mapping[str, str]) -> bytes:
    raw = env.get(ENV_VAR)
    if not raw:
        raise MasterKeyError(f"{ENV_VAR} is not set")
    try:
        key = base64.b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise MasterKeyError(f"{ENV_VAR} is not base64") from exc
    if len(key) != 32:
        raise MasterKeyError(f"{ENV_VAR} must be 32 bytes (base64), got {len(key)}")
    return key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_value(key: bytes) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, _CHECK, None)).decode()


def _verify(key: bytes, check: str, source: str) -> None:
    raw = base64.b64decode(check)
    try:
        AESGCM(key).decrypt(raw[:12], raw[12:], None)
    except InvalidTag as exc:
        what = {
            "passphrase": "the passphrase is wrong",
            "env": f"{ENV_VAR} is not this vault's key",
        }
        raise MasterKeyError(what.get(source, f"the master key ({source}) does not match")) from exc


def create_master(
    vault_dir: Path,
    *,
    passphrase: str | None = None,
    env: Mapping[str, str] | None = None,
    keyring_backend: Any | None = None,
    use_keyring: bool = True,
    argon2: Mapping[str, int] = ARGON2_DEFAULTS,
) -> MasterKey:
    """Choose and record the master secret for a new vault folder."""
    env = os.environ if env is None else env
    record: dict[str, Any] = {"v": MASTER_FORMAT_VERSION}
    master: MasterKey | None
    if passphrase is not None:
        if not passphrase:
            raise MasterKeyError("the passphrase is empty")
        salt = os.urandom(16)
        key = _derive(passphrase, salt, argon2)
        record.update(
            source="passphrase", salt=base64.b64encode(salt).decode(), argon2=dict(argon2)
        )
        master = MasterKey(key, "passphrase", str(vault_dir / MASTER_FILE))
    elif env.get(ENV_VAR):
        key = _from_env(env)
        record.update(source="env")
        master = MasterKey(key, "env", ENV_VAR)
    else:
        backend = (
            keyring_backend
            if keyring_backend is not None
            else (real_keyring() if use_keyring else None)
        )
        master = None
        if backend is not None:
            username = "master-" + secrets.token_hex(8)
            key = secrets.token_bytes(32)
            try:
                backend.set_password(KEYRING_SERVICE, username, base64.b64encode(key).decode())
            except Exception:
                backend = None  # a keyring that cannot store (no session bus): use the file
            else:
                record.update(source="keyring", service=KEYRING_SERVICE, username=username)
                master = MasterKey(key, "keyring", f"service {KEYRING_SERVICE}, entry {username}")
        if master is None:
            key = secrets.token_bytes(32)
            _write_private(vault_dir / KEY_FILE, base64.b64encode(key) + b"\n")
            record.update(source="file", file=KEY_FILE)
            master = MasterKey(key, "file", str(vault_dir / KEY_FILE))
    assert master is not None
    record["check"] = _check_value(master.key)
    _write_private(vault_dir / MASTER_FILE, json.dumps(record, indent=2).encode() + b"\n")
    return master


def load_master(
    vault_dir: Path,
    *,
    passphrase: str | None = None,
    env: Mapping[str, str] | None = None,
    keyring_backend: Any | None = None,
) -> MasterKey:
    """Recover the master secret recorded in ``master.json`` and check it."""
    env = os.environ if env is None else env
    try:
        record = json.loads((vault_dir / MASTER_FILE).read_text())
    except FileNotFoundError as exc:
        raise MasterKeyError(f"no master secret record in {vault_dir}") from exc
    if record.get("v") != MASTER_FORMAT_VERSION:
        raise MasterKeyError(f"unknown master record version {record.get('v')!r}")
    source = record["source"]
    if source == "passphrase":
        if passphrase is None:
            passphrase = env.get("KEYSTEP_PASSPHRASE")
        if passphrase is None:
            raise MasterKeyError("this vault is locked with a passphrase; give --passphrase")
        key = _derive(passphrase, base64.b64decode(record["salt"]), record["argon2"])
        master = MasterKey(key, source, str(vault_dir / MASTER_FILE))
    elif source == "env":
        master = MasterKey(_from_env(env), source, ENV_VAR)
    elif source == "keyring":
        backend = keyring_backend if keyring_backend is not None else real_keyring()
        if backend is None:
            raise MasterKeyError("the master key is in the OS keyring, which is not available")
        stored = backend.get_password(record["service"], record["username"])
        if stored is None:
            raise MasterKeyError("the OS keyring has no entry for this vault's master key")
        master = MasterKey(
            base64.b64decode(stored),
            source,
            f"service {record['service']}, entry {record['username']}",
        )
    elif source == "file":
        path = vault_dir / record["file"]
        try:
            key = base64.b64decode(path.read_bytes().strip(), validate=True)
        except FileNotFoundError as exc:
            raise MasterKeyError(f"the master key file {path} is missing") from exc
        master = MasterKey(key, source, str(path))
    else:
        raise MasterKeyError(f"unknown master secret source {source!r}")
    _verify(master.key, record["check"], source)
    return master
