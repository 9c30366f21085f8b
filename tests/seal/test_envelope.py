"""Envelope v1: sealing round trips and every way a batch must refuse to open."""

from __future__ import annotations

import dataclasses

import pytest
import uuid6
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from keystep.seal.envelope import (
    MIN_PADDED,
    EnvelopeError,
    open_body,
    padme,
    parse_envelope,
    seal_batch,
    unwrap_dek,
    verify_signature,
)

DEVICE = Ed25519PrivateKey.generate()
OTHER_DEVICE = Ed25519PrivateKey.generate()
VAULT = X25519PrivateKey.generate()
OTHER_VAULT = X25519PrivateKey.generate()


def _raw(pub: object) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)  # type: ignore[attr-defined]


def seal(
    content: bytes, *, device: Ed25519PrivateKey = DEVICE, batch_id: str | None = None
) -> bytes:
    return seal_batch(
        content,
        batch_id=batch_id or str(uuid6.uuid7()),
        device="d_1",
        seq=7,
        contributor="p_abc",
        period="2026-11",
        t_hour="2026-11-22T07:00:00Z",
        manifest_version=1,
        redaction_version="r1",
        kinds=["text.typed", "pointer.down"],
        key_id="k_1",
        recipient=_raw(VAULT.public_key()),
        device_key=device,
    )


def open_all(blob: bytes, key: X25519PrivateKey = VAULT) -> bytes:
    env = parse_envelope(blob)
    verify_signature(env, _raw(DEVICE.public_key()))
    return open_body(env, unwrap_dek(env, key))


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=20000))
def test_seal_open_round_trip(content: bytes) -> None:
    blob = seal(content)
    assert open_all(blob) == content
    header = parse_envelope(blob).header
    assert header.kinds == ("pointer.down", "text.typed") and header.seq == 7


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_changed_byte_fails(data: st.DataObject) -> None:
    blob = bytearray(seal(b"typed secret text" * 20))
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(EnvelopeError):
        open_all(bytes(blob))


def test_wrong_vault_key_fails() -> None:
    with pytest.raises(EnvelopeError):
        open_all(seal(b"x"), OTHER_VAULT)


def test_other_device_signature_fails() -> None:
    env = parse_envelope(seal(b"x", device=OTHER_DEVICE))
    with pytest.raises(EnvelopeError):
        verify_signature(env, _raw(DEVICE.public_key()))


def test_data_key_of_one_batch_never_opens_another() -> None:
    a, b = parse_envelope(seal(b"batch a")), parse_envelope(seal(b"batch b"))
    with pytest.raises(EnvelopeError):
        open_body(b, unwrap_dek(a, VAULT))


def test_wrapped_key_moved_to_another_batch_does_not_unwrap() -> None:
    # HPKE's info binds the wrapped DEK to its batch id: moving it to b fails.
    a = parse_envelope(seal(b"batch a"))
    b = parse_envelope(seal(b"batch b"))
    forged = dataclasses.replace(
        b, header=dataclasses.replace(b.header, wrapped_dek=a.header.wrapped_dek)
    )
    with pytest.raises(EnvelopeError):
        unwrap_dek(forged, VAULT)


def test_padding_hides_exact_sizes() -> None:
    sizes = {len(seal(bytes(n))) for n in range(0, 3000, 100)}
    assert len(sizes) == 1  # everything small pads to the same class
    assert padme(MIN_PADDED) == MIN_PADDED
    for n in (5000, 70000, 1_000_000):
        assert n <= padme(n) <= n * 1.13


@pytest.mark.parametrize(
    "blob",
    [b"", b"KSTEPv1\n", b"PNG....", b"KSTEPv1\n\xff\xff\xff\xff" + bytes(200)],
)
def test_garbage_is_not_an_envelope(blob: bytes) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelope(blob)


def test_non_canonical_header_is_refused() -> None:
    blob = seal(b"x")
    env = parse_envelope(blob)
    spaced = env.header_bytes.replace(b",", b", ", 1)
    import struct

    forged = (
        b"KSTEPv1\n" + struct.pack(">I", len(spaced)) + spaced + blob[12 + len(env.header_bytes) :]
    )
    with pytest.raises(EnvelopeError, match="canonical"):
        parse_envelope(forged)


def test_the_fast_canonical_header_is_rfc8785_exactly() -> None:
    """The header's canonical form is written by the standard library where that is JCS:
    compared with the reference implementation on headers full of what JSON escapes
    differently across implementations (control characters, quotes, backslashes, DEL,
    non-ASCII, emoji, line separators) and on integers at the edge of exactness."""
    import random

    import rfc8785

    from keystep.seal.envelope import canonical_header

    rng = random.Random(8785)
    alphabet = [chr(c) for c in range(0, 0x80)] + list("é中\u2028\u2029\ufeff😀\U0001f9d1‍\u00a0")

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))

    edges = [0, 1, -1, 2**53 - 1, -(2**53) + 1, 2**53, -(2**53), 2**63, 10**21]
    for i in range(2000):
        obj = {
            "format_version": rng.choice(edges) if i % 5 == 0 else 1,
            "batch_id": text(),
            "device": text(),
            "seq": rng.choice(edges) if i % 3 == 0 else rng.randint(0, 10**6),
            "kinds": [text() for _ in range(rng.randint(0, 4))],
            "redaction_version": text(),
        }
        try:
            want = rfc8785.dumps(obj)
        except rfc8785.IntegerDomainError:
            with pytest.raises(rfc8785.IntegerDomainError):
                canonical_header(obj)
            continue
        assert canonical_header(obj) == want, obj


def test_a_header_integer_json_cannot_hold_exactly_is_refused_cleanly() -> None:
    import json
    import struct

    from keystep.seal.envelope import MAGIC

    env = seal(b"x" * 100)
    (n,) = struct.unpack_from(">I", env, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(env[start : start + n])
    header["seq"] = 2**64
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    forged = env[: len(MAGIC)] + struct.pack(">I", len(raw)) + raw + env[start + n :]
    with pytest.raises(EnvelopeError, match="canonical"):
        parse_envelope(forged)
