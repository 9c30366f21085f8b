"""Sealing a batch on the device: envelope v1 to the vault's public key for the period.

The device holds its own Ed25519 signing key and a cache of the vault's *public* sealing
keys (``device/sealing_keys.json``); it never holds anything that opens a sealed batch.
When a batch falls into a period with no cached key (month rollover), ``fetch_key`` asks
the vault for that period's public key and the cache is updated.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uuid6
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from keystep.home import write_json
from keystep.model.batch import BatchContent, encode_content
from keystep.model.manifest import Manifest
from keystep.model.periods import hour_of, period_of
from keystep.seal.device import DeviceKeyError, load_device_key
from keystep.seal.envelope import seal_batch

__all__ = ["DeviceKeyError", "FetchKey", "SealError", "Sealer", "load_device_key", "period_of"]


class SealError(RuntimeError):
    """A batch cannot be sealed (no key for its period, unreadable keys). No content inside."""


@dataclass(frozen=True)
class PublicSealingKey:
    key_id: str
    public_key: bytes
    pseudonym: str
    period: str


FetchKey = Callable[[str], Any]  # period -> an object with key_id/public_key/pseudonym/period


class Sealer:
    def __init__(
        self,
        *,
        device_id: str,
        device_key: Ed25519PrivateKey,
        pseudonym: str,
        manifest: Manifest,
        keys_file: Path,
        fetch_key: FetchKey | None = None,
    ) -> None:
        self.device_id = device_id
        self._device_key = device_key
        self.pseudonym = pseudonym
        self._manifest = manifest
        self._keys_file = keys_file
        self._fetch = fetch_key
        self._keys = self._read_cache()
        self._checked: set[str] = set()

    def _read_cache(self) -> dict[str, PublicSealingKey]:
        try:
            doc = json.loads(self._keys_file.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SealError(f"the sealing key cache {self._keys_file} is unreadable") from exc
        try:
            return {
                period: PublicSealingKey(
                    key_id=str(e["key_id"]),
                    public_key=base64.b64decode(e["public_key"]),
                    pseudonym=str(e["pseudonym"]),
                    period=str(e["period"]),
                )
                for period, e in doc.items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SealError(f"the sealing key cache {self._keys_file} is corrupt") from exc

    def key_for(self, period: str) -> PublicSealingKey:
        key = self._keys.get(period)
        if key is not None and key.pseudonym == self.pseudonym:
            if period not in self._checked:
                # Checks the key, and loads OpenSSL's X25519 now rather than at the first seal.
                try:
                    X25519PublicKey.from_public_bytes(key.public_key)
                except ValueError as exc:
                    raise SealError(f"the cached sealing key for {period} is invalid") from exc
                self._checked.add(period)
            return key
        if self._fetch is None:
            raise SealError(f"no sealing key for period {period} and no vault to ask")
        try:
            got = self._fetch(period)
        except Exception as exc:
            raise SealError(f"the vault gave no sealing key for {period}: {exc}") from exc
        key = PublicSealingKey(
            str(got.key_id), bytes(got.public_key), str(got.pseudonym), str(got.period)
        )
        if len(key.public_key) != 32 or key.pseudonym != self.pseudonym:
            raise SealError(f"the vault's sealing key for {period} does not fit this device")
        self._keys[period] = key
        write_json(
            self._keys_file,
            {
                p: {
                    "key_id": k.key_id,
                    "public_key": base64.b64encode(k.public_key).decode("ascii"),
                    "pseudonym": k.pseudonym,
                    "period": k.period,
                }
                for p, k in sorted(self._keys.items())
            },
        )
        return key

    def seal(self, content: BatchContent, *, seq: int, t_start: float) -> tuple[str, bytes]:
        """Returns ``(batch_id, envelope)``."""
        period = period_of(t_start)
        key = self.key_for(period)
        batch_id = str(uuid6.uuid7())
        envelope = seal_batch(
            encode_content(content),
            batch_id=batch_id,
            device=self.device_id,
            seq=seq,
            contributor=self.pseudonym,
            period=period,
            t_hour=hour_of(t_start),
            manifest_version=self._manifest.version,
            redaction_version=self._manifest.redaction_version,
            kinds=sorted({e.kind for e in content.events}),
            key_id=key.key_id,
            recipient=key.public_key,
            device_key=self._device_key,
        )
        return batch_id, envelope
