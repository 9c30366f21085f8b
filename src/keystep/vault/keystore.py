"""The key store: one SQLite file in the vault folder; every secret in it is AES-GCM encrypted.

KEKs, the pseudonym key and the audit signing key are encrypted under the master key;
period private keys under their contributor's KEK. Each ciphertext's associated data names
its row, so a ciphertext copied into another row does not open. ``secure_delete`` plus a
VACUUM after destroying keys makes sure the bytes are gone from the file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keystep.vault.base import VaultError

KEYSTORE_NAME: Final = "keystore.db"
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS contributors (
    pseudonym TEXT PRIMARY KEY,
    kek BLOB,                 -- AES-GCM(master, aad="kek|"+pseudonym); NULL once erased
    created TEXT NOT NULL,
    erased TEXT
);
CREATE TABLE IF NOT EXISTS period_keys (
    key_id TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    period TEXT NOT NULL,
    public_key BLOB NOT NULL,
    private_key BLOB,         -- AES-GCM(KEK, aad="period|"+key_id); NULL once destroyed
    created TEXT NOT NULL,
    destroyed TEXT,
    destroyed_why TEXT,
    UNIQUE (pseudonym, period)
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    pseudonym TEXT NOT NULL,
    registered TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('grant', 'break-glass')),
    principal TEXT NOT NULL,
    role TEXT NOT NULL,
    purpose TEXT NOT NULL,
    data_class TEXT,
    contributor TEXT,
    expires TEXT NOT NULL,    -- required: there is no grant without an expiry
    created TEXT NOT NULL,
    created_by TEXT NOT NULL,
    approvers TEXT,
    justification TEXT NOT NULL DEFAULT '',
    revoked TEXT
);
CREATE TABLE IF NOT EXISTS legal_holds (
    pseudonym TEXT NOT NULL,
    period TEXT NOT NULL,
    set_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    set_at TEXT NOT NULL,
    PRIMARY KEY (pseudonym, period)
);
"""


class KeyStoreError(VaultError):
    """The key store cannot be opened or a secret in it does not decrypt."""


def seal_secret(key: bytes, plaintext: bytes, aad: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad.encode())


def open_secret(key: bytes, blob: bytes, aad: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], aad.encode())
    except InvalidTag as exc:
        raise KeyStoreError(f"a key-store secret ({aad.split('|')[0]}) does not decrypt") from exc


class KeyStore:
    """Thin, locked access to the SQLite file. The vault decides; this stores."""

    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.exists()
        if new:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA secure_delete=ON")
            # A rollback journal (not WAL) so destroyed keys do not linger in a -wal file.
            self._db.execute("PRAGMA journal_mode=DELETE")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise KeyStoreError(f"the key store {path} cannot be opened: {exc}") from exc
        self._lock = threading.RLock()
        if new:
            self.set_meta("schema_version", str(SCHEMA_VERSION).encode())
        else:
            version = self.get_meta("schema_version")
            if version != str(SCHEMA_VERSION).encode():
                raise KeyStoreError(f"unknown key store schema version {version!r}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits to the file."""
        return int(self.query("PRAGMA data_version")[0][0])

    def get_meta(self, name: str) -> bytes | None:
        rows = self.query("SELECT value FROM meta WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def set_meta(self, name: str, value: bytes) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def compact(self) -> None:
        """Rewrite the file so destroyed keys leave no bytes behind (free pages included)."""
        with self._lock:
            self._db.execute("VACUUM")

    def close(self) -> None:
        with self._lock:
            self._db.close()
