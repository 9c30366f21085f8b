"""Batch envelope v1: ``magic ‖ u32 len ‖ header ‖ nonce ‖ AES-256-GCM body ‖ Ed25519 sig``.

The header is RFC 8785 canonical JSON and is the body's associated data. The body is the
zstd-compressed batch content, Padmé-padded so its length says little about activity.
The data key (DEK) is fresh per batch and sealed with HPKE (RFC 9180: X25519, HKDF-SHA256,
AES-256-GCM) to the vault's key for (contributor, period); HPKE's info binds it to the key
id and batch id, so a wrapped DEK cannot be moved to another batch.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import struct
from dataclasses import asdict, dataclass
from typing import Any, Final

import rfc8785
import zstandard
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION: Final = 1
MAGIC: Final = b"KSTEPv1\n"
_LEN: Final = struct.Struct(">I")
_PAD_LEN: Final = struct.Struct(">Q")
SIGNATURE_SIZE: Final = 64
NONCE_SIZE: Final = 12
MIN_PADDED: Final = 4096
MAX_HEADER: Final = 16 * 1024
# A batch never decompresses beyond this: a bound against compression bombs.
MAX_CONTENT: Final = 512 * 1024 * 1024
_SUITE: Final = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_UUID7: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_PERIOD: Final = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_HOUR: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:00:00Z$")

HEADER_FIELDS: Final = (
    "format_version",
    "batch_id",
    "device",
    "seq",
    "contributor",
    "period",
    "t_hour",
    "manifest_version",
    "redaction_version",
    "kinds",
    "key_id",
    "wrapped_dek",
)


class EnvelopeError(ValueError):
    """An envelope that does not parse, verify or open. The message names which."""


@dataclass(frozen=True, slots=True)
class BatchHeader:
    format_version: int
    batch_id: str
    device: str
    seq: int
    contributor: str
    period: str
    t_hour: str
    manifest_version: int
    redaction_version: str
    kinds: tuple[str, ...]
    key_id: str
    wrapped_dek: str

    def to_json_bytes(self) -> bytes:
        d: dict[str, Any] = asdict(self)
        d["kinds"] = list(self.kinds)
        return canonical_header(d)


@dataclass(frozen=True, slots=True)
class Envelope:
    header: BatchHeader
    header_bytes: bytes
    nonce: bytes
    ciphertext: bytes
    signature: bytes
    signed: bytes  # everything before the signature


def padme(length: int) -> int:
    """Padmé padding (Nikitin et al., PURBs): at most ~12% overhead, O(log log n) leakage."""
    length = max(length, MIN_PADDED)
    e = math.floor(math.log2(length))
    s = math.floor(math.log2(e)) + 1
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _hpke_info(key_id: str, batch_id: str) -> bytes:
    return f"keystep/envelope/1/dek|{key_id}|{batch_id}".encode()


def seal_batch(
    content: bytes,
    *,
    batch_id: str,
    device: str,
    seq: int,
    contributor: str,
    period: str,
    t_hour: str,
    manifest_version: int,
    redaction_version: str,
    kinds: tuple[str, ...] | list[str],
    key_id: str,
    recipient: bytes,
    device_key: Ed25519PrivateKey,
    level: int = 3,
) -> bytes:
    """Seal ``content`` (encoded BatchContent) to the vault public key ``recipient``."""
    dek = AESGCM.generate_key(bit_length=256)
    try:
        wrapped = _SUITE.encrypt(
            dek, X25519PublicKey.from_public_bytes(recipient), info=_hpke_info(key_id, batch_id)
        )
        header = BatchHeader(
            format_version=FORMAT_VERSION,
            batch_id=batch_id,
            device=device,
            seq=seq,
            contributor=contributor,
            period=period,
            t_hour=t_hour,
            manifest_version=manifest_version,
            redaction_version=redaction_version,
            kinds=tuple(sorted(set(kinds))),
            key_id=key_id,
            wrapped_dek=_b64(wrapped),
        )
        _check_header(header)
        header_bytes = header.to_json_bytes()
        compressed = zstandard.ZstdCompressor(level=level).compress(content)
        body = _PAD_LEN.pack(len(compressed)) + compressed
        body += bytes(padme(len(body)) - len(body))
        nonce = os.urandom(NONCE_SIZE)
        aad = MAGIC + header_bytes
        ciphertext = AESGCM(dek).encrypt(nonce, body, aad)
    finally:
        del dek
    signed = MAGIC + _LEN.pack(len(header_bytes)) + header_bytes + nonce + ciphertext
    return signed + device_key.sign(signed)


def _check_header(h: BatchHeader) -> None:
    if h.format_version != FORMAT_VERSION:
        raise EnvelopeError(f"unsupported envelope format_version {h.format_version}")
    if not _UUID7.match(h.batch_id):
        raise EnvelopeError("batch_id is not a UUIDv7")
    if not _PERIOD.match(h.period):
        raise EnvelopeError("period is not YYYY-MM")
    if not _HOUR.match(h.t_hour):
        raise EnvelopeError("t_hour is not an hour (YYYY-MM-DDTHH:00:00Z)")
    if h.seq < 0 or h.manifest_version < 1:
        raise EnvelopeError("seq or manifest_version out of range")
    if not h.device or not h.contributor or not h.key_id or not h.wrapped_dek:
        raise EnvelopeError("header has an empty identity field")


def parse_envelope(blob: bytes) -> Envelope:
    """Parse without any key. Raises EnvelopeError naming what is wrong."""
    if not blob.startswith(MAGIC):
        raise EnvelopeError("not a keystep v1 envelope (bad magic)")
    if len(blob) < len(MAGIC) + 4 + NONCE_SIZE + 16 + SIGNATURE_SIZE:
        raise EnvelopeError("envelope is truncated")
    (n,) = _LEN.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + 4
    if n > MAX_HEADER or start + n + NONCE_SIZE + 16 + SIGNATURE_SIZE > len(blob):
        raise EnvelopeError("envelope header length is out of range")
    header_bytes = blob[start : start + n]
    try:
        obj = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError("envelope header is not JSON") from exc
    if not isinstance(obj, dict) or tuple(sorted(obj)) != tuple(sorted(HEADER_FIELDS)):
        raise EnvelopeError("envelope header fields are not those of format 1")
    try:
        canonical = canonical_header(obj)
    except rfc8785.CanonicalizationError as exc:  # e.g. an integer JSON cannot hold exactly
        raise EnvelopeError(f"envelope header has no canonical form: {exc}") from exc
    if canonical != header_bytes:
        raise EnvelopeError("envelope header is not canonical JSON")
    try:
        header = BatchHeader(
            format_version=_int(obj["format_version"]),
            batch_id=_str(obj["batch_id"]),
            device=_str(obj["device"]),
            seq=_int(obj["seq"]),
            contributor=_str(obj["contributor"]),
            period=_str(obj["period"]),
            t_hour=_str(obj["t_hour"]),
            manifest_version=_int(obj["manifest_version"]),
            redaction_version=_str(obj["redaction_version"]),
            kinds=tuple(_str(k) for k in obj["kinds"]),
            key_id=_str(obj["key_id"]),
            wrapped_dek=_str(obj["wrapped_dek"]),
        )
    except TypeError as exc:
        raise EnvelopeError(f"envelope header field has the wrong type: {exc}") from exc
    _check_header(header)
    body_start = start + n
    sig_start = len(blob) - SIGNATURE_SIZE
    return Envelope(
        header=header,
        header_bytes=header_bytes,
        nonce=blob[body_start : body_start + NONCE_SIZE],
        ciphertext=blob[body_start + NONCE_SIZE : sig_start],
        signature=blob[sig_start:],
        signed=blob[:sig_start],
    )


_JCS_EXACT: Final = 2**53  # integers JCS (ECMAScript numbers) writes exactly as digits


def canonical_header(obj: dict[str, Any]) -> bytes:
    """RFC 8785 (JCS) bytes of a header object. For what a header of format 1 holds — ASCII
    field names, strings, lists of strings, integers below 2**53 — JCS is exactly compact JSON
    with sorted keys and non-ASCII text left as UTF-8 (the standard library escapes the same
    characters the same way as ECMAScript's JSON.stringify), which the standard library
    writes in C, far faster than the reference implementation; anything else goes to it."""
    if all(_plain(v) for v in obj.values()) and all(k.isascii() for k in obj):
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return rfc8785.dumps(obj)


def _plain(v: Any) -> bool:
    if type(v) is str:
        return True
    if type(v) is int:
        return -_JCS_EXACT < v < _JCS_EXACT
    return type(v) is list and all(type(k) is str for k in v)


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"expected an integer, got {type(v).__name__}")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    return v


def verify_signature(env: Envelope, device_public_key: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(device_public_key).verify(env.signature, env.signed)
    except (InvalidSignature, ValueError) as exc:
        raise EnvelopeError("device signature does not verify") from exc


def unwrap_dek(env: Envelope, private_key: X25519PrivateKey) -> bytes:
    """Only the vault calls this: it holds the period's private key."""
    try:
        wrapped = _unb64(env.header.wrapped_dek)
        dek = _SUITE.decrypt(
            wrapped, private_key, info=_hpke_info(env.header.key_id, env.header.batch_id)
        )
    except (InvalidTag, ValueError) as exc:
        raise EnvelopeError("data key does not unwrap with this key") from exc
    if len(dek) != 32:
        raise EnvelopeError("data key has the wrong size")
    return dek


def open_body(env: Envelope, dek: bytes) -> bytes:
    """Decrypt, unpad and decompress the body; returns the encoded BatchContent."""
    try:
        body = AESGCM(dek).decrypt(env.nonce, env.ciphertext, MAGIC + env.header_bytes)
    except (InvalidTag, ValueError) as exc:
        raise EnvelopeError("batch body does not authenticate with this data key") from exc
    (n,) = _PAD_LEN.unpack_from(body, 0)
    if n > len(body) - _PAD_LEN.size:
        raise EnvelopeError("batch body length prefix is out of range")
    try:
        return zstandard.ZstdDecompressor().decompress(
            body[_PAD_LEN.size : _PAD_LEN.size + n], max_output_size=MAX_CONTENT
        )
    except zstandard.ZstdError as exc:
        raise EnvelopeError("batch body does not decompress") from exc
