"""Checking a batch's device signature inside the vault, on its hottest path.

The Ed25519 verify is the largest single cost of an unseal. libsodium (PyNaCl) does it in
about half the time OpenSSL does here (bench/vault.py prints both), so the vault uses it when
it is installed and falls back to ``keystep.seal.envelope.verify_signature`` (OpenSSL, via
cryptography) otherwise. Both implement RFC 8032; libsodium additionally refuses
non-canonical and small-order encodings, so it never accepts what OpenSSL would refuse.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Final

from keystep.seal.envelope import Envelope, EnvelopeError, verify_signature

BACKEND: Final = "libsodium" if importlib.util.find_spec("nacl") else "openssl"


class DeviceVerifier:
    """Verifies envelopes signed by one device key (built once per device, then cached)."""

    def __init__(self, public_key: bytes, *, backend: str = BACKEND) -> None:
        self.public_key = public_key
        self.backend = backend
        self._nacl: Any = None
        if backend == "libsodium":
            from nacl.signing import VerifyKey

            self._nacl = VerifyKey(public_key)

    def verify(self, env: Envelope) -> None:
        """Raise EnvelopeError unless the device signed exactly these bytes."""
        if self._nacl is None:
            verify_signature(env, self.public_key)
            return
        from nacl.exceptions import CryptoError  # BadSignatureError is a CryptoError

        try:
            self._nacl.verify(env.signed, env.signature)
        except (CryptoError, ValueError) as exc:
            raise EnvelopeError("device signature does not verify") from exc
