"""The device's Ed25519 signing key: one loader for every component that needs it."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class DeviceKeyError(ValueError):
    """A device key that is missing, unreadable or not Ed25519."""


def load_device_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise DeviceKeyError(f"cannot read the device key {path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise DeviceKeyError(f"the device key {path} is unreadable or corrupt") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise DeviceKeyError(f"the device key {path} is not an Ed25519 key")
    return key


def device_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def raw_public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()
