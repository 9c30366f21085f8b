"""The remote vault's wire format (version 1): JSON with base64 bytes, shared by both ends."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any, Final

from keystep.audit.events import format_time, parse_time
from keystep.audit.log import VerifyReport
from keystep.model.batch import decode_content, encode_content
from keystep.policy.model import BreakGlass, Grant, PolicyError, Principal
from keystep.seal.envelope import BatchHeader
from keystep.vault.base import (
    AccessDenied,
    AuditUnavailable,
    BadEnvelope,
    LegalHold,
    SealingKey,
    Unsealed,
    VaultError,
)

WIRE_VERSION: Final = 1
ERRORS: Final[dict[str, type[Exception]]] = {
    "VaultError": VaultError,
    "AccessDenied": AccessDenied,
    "AuditUnavailable": AuditUnavailable,
    "BadEnvelope": BadEnvelope,
    "PolicyError": PolicyError,
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def error_to_wire(exc: Exception) -> dict[str, str]:
    name = next((n for n, cls in reversed(ERRORS.items()) if isinstance(exc, cls)), "VaultError")
    return {"type": name, "message": str(exc)}


def error_from_wire(d: dict[str, str]) -> Exception:
    return ERRORS.get(d.get("type", ""), VaultError)(d.get("message", "vault error"))


def principal_to_wire(p: Principal) -> dict[str, str]:
    return {"name": p.name, "role": p.role}


def principal_from_wire(d: dict[str, Any]) -> Principal:
    # A claimed pseudonym is never taken from the wire: the vault derives it.
    return Principal(str(d["name"]), str(d["role"]))


def sealing_key_to_wire(k: SealingKey) -> dict[str, str]:
    return {
        "key_id": k.key_id,
        "public_key": b64(k.public_key),
        "pseudonym": k.pseudonym,
        "period": k.period,
    }


def sealing_key_from_wire(d: dict[str, str]) -> SealingKey:
    return SealingKey(d["key_id"], unb64(d["public_key"]), d["pseudonym"], d["period"])


def unsealed_to_wire(u: Unsealed) -> dict[str, Any]:
    header = dataclasses.asdict(u.header)
    header["kinds"] = list(u.header.kinds)
    return {"header": header, "content": b64(encode_content(u.content))}


def unsealed_from_wire(d: dict[str, Any]) -> Unsealed:
    h = dict(d["header"])
    h["kinds"] = tuple(h["kinds"])
    header = BatchHeader(**h)
    return Unsealed(header, decode_content(unb64(d["content"]), batch_id=header.batch_id))


def grant_to_wire(g: Grant | BreakGlass) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": "grant" if isinstance(g, Grant) else "break-glass"}
    for f in dataclasses.fields(g):
        v = getattr(g, f.name)
        if hasattr(v, "tzinfo"):
            v = format_time(v)
        elif isinstance(v, tuple | frozenset):
            v = sorted(v) if isinstance(v, frozenset) else list(v)
        d[f.name] = v
    return d


def grant_from_wire(d: dict[str, Any]) -> Grant | BreakGlass:
    d = dict(d)
    kind = d.pop("kind")
    for k in ("expires", "created", "opened", "revoked", "closed"):
        if d.get(k):
            d[k] = parse_time(d[k])
    if kind == "grant":
        return Grant(**d)
    d["approvers"] = tuple(d["approvers"])
    d["purposes"] = frozenset(d["purposes"])
    return BreakGlass(**d)


def hold_to_wire(h: LegalHold) -> dict[str, str]:
    return {
        "pseudonym": h.pseudonym,
        "period": h.period,
        "set_by": h.set_by,
        "reason": h.reason,
        "set_at": format_time(h.set_at),
    }


def hold_from_wire(d: dict[str, str]) -> LegalHold:
    return LegalHold(d["pseudonym"], d["period"], d["set_by"], d["reason"], parse_time(d["set_at"]))


def report_to_wire(r: VerifyReport) -> dict[str, Any]:
    return {"entries": r.entries, "checkpoints": r.checkpoints, "problems": r.problems}


def report_from_wire(d: dict[str, Any]) -> VerifyReport:
    return VerifyReport(
        entries=d["entries"], checkpoints=d["checkpoints"], problems=list(d["problems"])
    )
