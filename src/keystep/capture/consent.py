"""Consent state and consent receipts, kept in the data home.

Consent binds to a manifest's version *and* digest: a manifest edited without a version
bump is still a different disclosure, and recording stops until the person consents again.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keystep.home import Home, write_json, write_private
from keystep.model.manifest import Manifest
from keystep.seal.device import DeviceKeyError, load_device_key

RECEIPT_FORMAT: Final = "keystep-consent-receipt/1"


class ConsentError(RuntimeError):
    """Consent state that cannot be read or a receipt that does not verify."""


@dataclass(frozen=True)
class ConsentState:
    state: Literal["given", "withdrawn", "none"]
    manifest_version: int | None = None
    manifest_digest: str | None = None
    at: float | None = None

    def covers(self, manifest: Manifest) -> bool:
        return (
            self.state == "given"
            and self.manifest_version == manifest.version
            and self.manifest_digest == manifest.digest
        )


def read_consent(home: Home) -> ConsentState:
    """No file means no consent; an unreadable file is an error (callers treat it as none)."""
    try:
        raw = json.loads(home.consent_file.read_text("utf-8"))
    except FileNotFoundError:
        return ConsentState("none")
    except (OSError, json.JSONDecodeError) as exc:
        raise ConsentError(f"consent state {home.consent_file} is unreadable") from exc
    if raw.get("state") not in ("given", "withdrawn"):
        raise ConsentError(f"consent state {home.consent_file} is malformed")
    return ConsentState(
        raw["state"], raw.get("manifest_version"), raw.get("manifest_digest"), raw.get("at")
    )


def consented_manifest_file(home: Home, version: int) -> Path:
    return home.consent_dir / f"manifest-v{version}.yaml"


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def give_consent(home: Home, manifest: Manifest, *, device: str, pseudonym: str) -> Path:
    """Record consent to exactly this manifest and write a signed receipt; returns its path."""
    now = time.time()
    try:
        key = load_device_key(home.device_key_file)
    except DeviceKeyError as exc:
        raise ConsentError(str(exc)) from exc
    body: dict[str, Any] = {
        "format": RECEIPT_FORMAT,
        "decision": "given",
        "manifest_version": manifest.version,
        "manifest_digest": manifest.digest,
        "manifest_title": manifest.raw["title"],
        "publisher": manifest.raw["publisher"],
        "contributor": pseudonym,
        "device": device,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "device_public_key": base64.b64encode(_raw_public(key)).decode("ascii"),
    }
    receipt = dict(body, signature=base64.b64encode(key.sign(rfc8785.dumps(body))).decode("ascii"))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    path = home.consent_dir / f"receipt-v{manifest.version}-{stamp}.json"
    write_json(path, receipt)
    write_private(
        consented_manifest_file(home, manifest.version), manifest.to_yaml().encode("utf-8")
    )
    write_json(
        home.consent_file,
        {
            "state": "given",
            "manifest_version": manifest.version,
            "manifest_digest": manifest.digest,
            "at": now,
            "receipt": str(path),
        },
    )
    return path


def withdraw_consent(home: Home) -> None:
    """Withdrawal is one write; the recorder watches this file and stops within 100 ms."""
    current = read_consent(home)
    write_json(
        home.consent_file,
        {
            "state": "withdrawn",
            "manifest_version": current.manifest_version,
            "manifest_digest": current.manifest_digest,
            "at": time.time(),
        },
    )


def verify_receipt(receipt: dict[str, Any]) -> None:
    """Raise ConsentError unless the receipt's signature verifies under its device key."""
    try:
        sig = base64.b64decode(receipt["signature"])
        body = {k: v for k, v in receipt.items() if k != "signature"}
        pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(body["device_public_key"]))
        pub.verify(sig, rfc8785.dumps(body))
    except (KeyError, ValueError, InvalidSignature) as exc:
        raise ConsentError("consent receipt does not verify") from exc
    if receipt.get("format") != RECEIPT_FORMAT:
        raise ConsentError("not a keystep consent receipt")


def latest_receipt(home: Home) -> Path | None:
    receipts = sorted(home.consent_dir.glob("receipt-v*.json"), key=lambda p: p.stat().st_mtime)
    return receipts[-1] if receipts else None
