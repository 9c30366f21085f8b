"""Helpers for the collector tests: real v1 envelopes from real device keys."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uuid6
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keystep.audit.events import AuditEvent
from keystep.model.manifest import Manifest
from keystep.seal.envelope import seal_batch
from keystep.store.base import Repository
from keystep.store.blobs import FolderBlobStore

NOW = datetime(2026, 11, 3, 14, 20, tzinfo=UTC)
VAULT_KEY = X25519PrivateKey.generate()


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass
class Device:
    device_id: str
    contributor: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    seq: int = 0

    def seal(self, content: bytes = b"", **header: Any) -> bytes:
        """A real envelope; ``header`` overrides any clear header field."""
        self.seq += 1
        fields: dict[str, Any] = {
            "batch_id": str(uuid6.uuid7()),
            "device": self.device_id,
            "seq": self.seq,
            "contributor": self.contributor,
            "period": "2026-11",
            "t_hour": "2026-11-03T14:00:00Z",
            "manifest_version": 1,
            "redaction_version": "1",
            "kinds": ("key.down", "pointer.move"),
            "key_id": f"{self.contributor}/2026-11",
            "recipient": VAULT_KEY.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            ),
            "device_key": self.key,
        }
        fields.update(header)
        return seal_batch(content or os.urandom(2048), **fields)


@dataclass
class World:
    repo: Repository
    blobs: FolderBlobStore
    manifest: Manifest
    alice: Device
    bob: Device
    audit_log: list[AuditEvent] = field(default_factory=list)

    def audit(self, event: AuditEvent) -> None:
        self.audit_log.append(event)

    def lookup(self, version: int) -> Manifest | None:
        return self.manifest if version == self.manifest.version else None
