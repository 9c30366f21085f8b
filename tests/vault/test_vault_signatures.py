"""Both signature backends (libsodium, OpenSSL) accept and refuse exactly the same envelopes."""

from __future__ import annotations

import pytest
import uuid6
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from vaultkit import content

from keystep.model.batch import encode_content
from keystep.seal.envelope import EnvelopeError, parse_envelope, seal_batch
from keystep.vault.signatures import DeviceVerifier

pytest.importorskip("nacl")

DEVICE = Ed25519PrivateKey.generate()
PUBLIC = DEVICE.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw
)
RECIPIENT = (
    X25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
)


def _blob(signer: Ed25519PrivateKey = DEVICE) -> bytes:
    return seal_batch(
        encode_content(content()),
        batch_id=str(uuid6.uuid7()),
        device="d1",
        seq=1,
        contributor="p_x",
        period="2026-11",
        t_hour="2026-11-01T09:00:00Z",
        manifest_version=1,
        redaction_version="r1",
        kinds=["pointer.down"],
        key_id="k_1",
        recipient=RECIPIENT,
        device_key=signer,
    )


def _accepts(backend: str, blob: bytes) -> bool:
    try:
        env = parse_envelope(blob)
    except EnvelopeError:
        return False
    try:
        DeviceVerifier(PUBLIC, backend=backend).verify(env)
    except EnvelopeError:
        return False
    return True


BLOB = _blob()


@settings(max_examples=150, deadline=None)
@given(offset=st.integers(0, 1 << 20), xor=st.integers(1, 255))
def test_backends_agree_on_tampered_envelopes(offset: int, xor: int) -> None:
    b = bytearray(BLOB)
    b[offset % len(b)] ^= xor
    assert _accepts("libsodium", bytes(b)) is _accepts("openssl", bytes(b)) is False


def test_backends_agree_on_honest_and_foreign_signatures() -> None:
    assert _accepts("libsodium", BLOB) and _accepts("openssl", BLOB)
    foreign = _blob(Ed25519PrivateKey.generate())
    assert not _accepts("libsodium", foreign) and not _accepts("openssl", foreign)
