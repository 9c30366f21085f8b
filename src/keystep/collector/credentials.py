"""Who may call the collector: device credentials, contributor tokens and staff API tokens.

Device credentials and staff tokens are random secrets stored only as SHA-256 hashes (high
entropy makes a slow hash unnecessary). Contributor tokens are issued at enrollment and
signed by the collector; they stay valid while the device they were issued to is not
revoked, so revoking a device also locks its contributor token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystep.store.base import DeviceRecord

DEVICE_PREFIX: Final = "ksd"
CONTRIBUTOR_PREFIX: Final = "ksc"
TOKEN_DOMAIN: Final = b"keystep/contributor-token/1\n"
STAFF_ROLES: Final = ("steward", "operator", "auditor")

Kind = Literal["device", "contributor", "staff"]


class CredentialError(ValueError):
    """A credential that is malformed, unknown, revoked or forged. The message is generic."""


@dataclass(frozen=True)
class Caller:
    """An authenticated principal. ``pseudonym`` is set for devices and contributors."""

    kind: Kind
    name: str
    role: str
    pseudonym: str | None = None
    device_id: str | None = None
    # A device's own record as authentication read it: an upload checks against it
    # instead of reading it again.
    device: DeviceRecord | None = field(default=None, compare=False, repr=False)


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def new_device_credential(device_id: str) -> tuple[str, str]:
    """``(credential, hash)``: the device keeps the first, the repository the second."""
    secret = secrets.token_urlsafe(32)
    return f"{DEVICE_PREFIX}.{device_id}.{secret}", sha256_hex(secret)


def split_device_credential(credential: str) -> tuple[str, str]:
    """``(device_id, secret hash)`` of a device credential."""
    parts = credential.split(".")
    if len(parts) != 3 or parts[0] != DEVICE_PREFIX or not parts[1] or not parts[2]:
        raise CredentialError("not a device credential")
    return parts[1], sha256_hex(parts[2])


def hash_matches(expected_hex: str, actual_hex: str) -> bool:
    return hmac.compare_digest(expected_hex.encode(), actual_hex.encode())


@dataclass(frozen=True)
class ContributorToken:
    pseudonym: str
    device_id: str
    contributor_id: str | None = None  # what the vault knows the person by (if given)


class ContributorTokens:
    """Signs and checks contributor tokens with the collector's token key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._public = key.public_key()

    def issue(self, *, pseudonym: str, device_id: str, contributor_id: str | None = None) -> str:
        payload = rfc8785.dumps(
            {
                "v": 1,
                "pseudonym": pseudonym,
                "device": device_id,
                "id": contributor_id,
                "nonce": secrets.token_hex(8),
            }
        )
        sig = self._key.sign(TOKEN_DOMAIN + payload)
        return f"{CONTRIBUTOR_PREFIX}.{_b64(payload)}.{_b64(sig)}"

    def check(self, token: str) -> ContributorToken:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != CONTRIBUTOR_PREFIX:
            raise CredentialError("not a contributor token")
        try:
            payload, sig = _unb64(parts[1]), _unb64(parts[2])
            self._public.verify(sig, TOKEN_DOMAIN + payload)
            d = json.loads(payload)
            cid = d.get("id")
            return ContributorToken(
                str(d["pseudonym"]), str(d["device"]), str(cid) if cid is not None else None
            )
        except (InvalidSignature, ValueError, KeyError, TypeError) as exc:
            raise CredentialError("contributor token does not verify") from exc


@dataclass(frozen=True)
class StaffToken:
    name: str
    role: str
    token_hash: str


class StaffTokens:
    """Steward, operator and auditor API tokens, held as hashes only.

    Loaded at start-up from a JSON file ``{"tokens": [{"name", "role", "token" | "sha256"}]}``
    or from ``KEYSTEP_API_TOKENS`` (``role:name:token`` entries separated by commas).
    """

    def __init__(self, tokens: list[StaffToken]) -> None:
        for t in tokens:
            if t.role not in STAFF_ROLES:
                raise CredentialError(f"unknown staff role {t.role!r} (roles: {STAFF_ROLES})")
        self._by_hash = {t.token_hash: t for t in tokens}

    def __len__(self) -> int:
        return len(self._by_hash)

    @classmethod
    def from_entries(cls, entries: list[dict[str, str]]) -> StaffTokens:
        out = []
        for e in entries:
            if "sha256" in e:
                h = e["sha256"].lower()
            elif "token" in e and len(e["token"]) >= 16:
                h = sha256_hex(e["token"])
            else:
                raise CredentialError(
                    f"token entry for {e.get('name')!r} needs a token "
                    "(16+ characters) or its sha256"
                )
            out.append(StaffToken(name=e["name"], role=e["role"], token_hash=h))
        return cls(out)

    @classmethod
    def load(cls, path: Path | None = None, env: dict[str, str] | None = None) -> StaffTokens:
        env = dict(os.environ) if env is None else env
        entries: list[dict[str, str]] = []
        if path is not None:
            try:
                doc = json.loads(path.read_text("utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise CredentialError(f"cannot read the token file {path}: {exc}") from exc
            entries.extend(doc.get("tokens", []))
        for item in filter(None, (s.strip() for s in env.get("KEYSTEP_API_TOKENS", "").split(","))):
            role, _, rest = item.partition(":")
            name, _, token = rest.partition(":")
            entries.append({"role": role, "name": name, "token": token})
        return cls.from_entries(entries)

    def check(self, token: str) -> Caller:
        hit = self._by_hash.get(sha256_hex(token))
        if hit is None:
            raise CredentialError("unknown API token")
        return Caller(kind="staff", name=hit.name, role=hit.role)
