"""Recording leases: short-lived, Ed25519-signed permissions to record (DESIGN.md principle 8).

A lease names one device, the fleet generation it was issued under and a TTL. The agent
times it on its own monotonic clock from the moment it arrived, so a device clock hours
off neither extends nor shortens it; ``issued`` is informational only. The generation
lets an agent refuse a lease from a collector that has not yet heard of a halt the agent
has already seen.

Wire form (version 1): ``base64url(payload) "." base64url(signature)`` where the payload is
RFC 8785 canonical JSON and the signature covers ``DOMAIN ‖ payload``.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LEASE_VERSION: Final = 1
DEFAULT_TTL: Final = 30.0
# An agent never honours a lease for longer than this, whatever a collector signs.
MAX_TTL: Final = 300.0
DOMAIN: Final = b"keystep/lease/1\n"
_FIELDS: Final = ("v", "lease_id", "device", "generation", "issued", "ttl_s")


class LeaseError(ValueError):
    """A lease that does not parse, verify, or belong to this device."""


@dataclass(frozen=True, slots=True)
class Lease:
    v: int
    lease_id: str
    device: str
    generation: int
    issued: str
    ttl_s: float

    def payload(self) -> bytes:
        return rfc8785.dumps(asdict(self))


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class LeaseSigner:
    """The collector's lease key. Every collector of one deployment shares it."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.private_key = key
        self.public_key: bytes = key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> LeaseSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> LeaseSigner:
        """Read the raw 32-byte seed at ``path``, creating it (0600, exclusively) if absent."""
        try:
            seed = path.read_bytes()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = Ed25519PrivateKey.generate()
            seed = key.private_bytes_raw()
            try:
                # O_EXCL: two collectors starting together must not each write their own key.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                seed = path.read_bytes()
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(seed)
                    fh.flush()
                    os.fsync(fh.fileno())
        if len(seed) != 32:
            raise LeaseError(f"{path} is not a 32-byte Ed25519 seed")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def issue(
        self,
        *,
        device: str,
        generation: int,
        ttl_s: float = DEFAULT_TTL,
        now: datetime | None = None,
    ) -> str:
        if not 0 < ttl_s <= MAX_TTL:
            raise LeaseError(f"lease TTL must be in (0, {MAX_TTL:g}] seconds")
        issued = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lease = Lease(LEASE_VERSION, str(uuid.uuid4()), device, generation, issued, float(ttl_s))
        payload = lease.payload()
        return f"{_b64(payload)}.{_b64(self.private_key.sign(DOMAIN + payload))}"


def verify_lease(token: str, public_key: bytes, *, device: str) -> Lease:
    """Check the signature and the device; the caller times the TTL on its monotonic clock."""
    try:
        p64, s64 = token.split(".")
        payload, sig = _unb64(p64), _unb64(s64)
    except ValueError as exc:
        raise LeaseError("lease is not payload.signature") from exc
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, DOMAIN + payload)
    except (InvalidSignature, ValueError) as exc:
        raise LeaseError("lease signature does not verify") from exc
    try:
        obj: Any = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LeaseError("lease payload is not JSON") from exc
    if not isinstance(obj, dict) or tuple(sorted(obj)) != tuple(sorted(_FIELDS)):
        raise LeaseError("lease fields are not those of version 1")
    if obj["v"] != LEASE_VERSION:
        raise LeaseError(f"unsupported lease version {obj['v']!r}")
    ttl = obj["ttl_s"]
    if not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL:
        raise LeaseError("lease TTL out of range")
    if not isinstance(obj["generation"], int) or obj["generation"] < 0:
        raise LeaseError("lease generation out of range")
    if obj["device"] != device:
        raise LeaseError("lease is for another device")
    return Lease(
        LEASE_VERSION,
        str(obj["lease_id"]),
        str(obj["device"]),
        obj["generation"],
        str(obj["issued"]),
        float(ttl),
    )
