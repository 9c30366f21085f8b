"""The client of a vault running as its own process: the same ``Vault`` interface over HTTP."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from keystep.audit.events import AuditEvent, event_from_dict, format_time
from keystep.audit.log import Checkpoint, VerifyReport
from keystep.policy.model import BreakGlass, Grant, Principal
from keystep.vault import wire
from keystep.vault.base import (
    AuditUnavailable,
    LegalHold,
    SealingKey,
    Unsealed,
    Vault,
    VaultError,
)


class RemoteVault(Vault):
    """``url`` is ``http://127.0.0.1:PORT`` or ``unix:///path/to/vault.sock``."""

    def __init__(self, url: str, *, token: str, timeout: float = 60.0) -> None:
        self.url = url
        if url.startswith("unix://"):
            transport = httpx.HTTPTransport(uds=url.removeprefix("unix://"))
            base = "http://vault"
        else:
            transport = httpx.HTTPTransport()
            base = url
        self._http = httpx.Client(
            base_url=base,
            transport=transport,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
        )

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> RemoteVault:
        token = Path(cfg["token_file"]).read_text().strip()
        return cls(cfg["url"], token=token)

    def _call(self, method: str, **args: Any) -> Any:
        try:
            r = self._http.post(f"/v{wire.WIRE_VERSION}/{method}", json=args)
        except httpx.HTTPError as exc:
            # Unreachable vault: nothing can be audited, so nothing is answered.
            raise AuditUnavailable(f"the vault at {self.url} is unreachable: {exc}") from exc
        try:
            body = r.json()
        except ValueError as exc:
            raise VaultError(f"the vault answered HTTP {r.status_code} without JSON") from exc
        if not body.get("ok"):
            raise wire.error_from_wire(body.get("error", {}))
        return body.get("result")

    def enroll_contributor(self, contributor_id: str) -> str:
        return str(self._call("enroll_contributor", contributor_id=contributor_id))

    def pseudonym(self, contributor_id: str) -> str:
        return str(self._call("pseudonym", contributor_id=contributor_id))

    def sealing_key(self, pseudonym: str, period: str) -> SealingKey:
        return wire.sealing_key_from_wire(
            self._call("sealing_key", pseudonym=pseudonym, period=period)
        )

    def register_device(self, device_id: str, public_key: bytes, *, pseudonym: str) -> None:
        self._call(
            "register_device",
            device_id=device_id,
            public_key=wire.b64(public_key),
            pseudonym=pseudonym,
        )

    def unseal(self, envelope: bytes, *, principal: Principal, purpose: str) -> Unsealed:
        result = self.unseal_many([envelope], principal=principal, purpose=purpose)[0]
        if isinstance(result, VaultError):
            raise result
        return result

    def unseal_many(
        self, envelopes: list[bytes], *, principal: Principal, purpose: str
    ) -> list[Unsealed | VaultError]:
        out: list[Unsealed | VaultError] = []
        for item in self._call(
            "unseal_many",
            envelopes=[wire.b64(e) for e in envelopes],
            principal=wire.principal_to_wire(principal),
            purpose=purpose,
        ):
            out.append(
                _error(item["error"]) if "error" in item else wire.unsealed_from_wire(item["ok"])
            )
        return out

    def unseal_keys(
        self, envelopes: list[bytes], *, principal: Principal, purpose: str
    ) -> list[bytes | VaultError]:
        out: list[bytes | VaultError] = []
        for item in self._call(
            "unseal_keys",
            envelopes=[wire.b64(e) for e in envelopes],
            principal=wire.principal_to_wire(principal),
            purpose=purpose,
        ):
            out.append(_error(item["error"]) if "error" in item else wire.unb64(item["ok"]))
        return out

    def record(self, event: AuditEvent) -> None:
        self._call("record", event=event.to_dict())

    def create_grant(
        self,
        principal: Principal,
        purpose: str,
        data_class: str,
        *,
        expires: datetime,
        by: Principal,
        contributor: str | None = None,
        justification: str = "",
    ) -> Grant:
        g = wire.grant_from_wire(
            self._call(
                "create_grant",
                principal=wire.principal_to_wire(principal),
                purpose=purpose,
                data_class=data_class,
                expires=format_time(expires),
                by=wire.principal_to_wire(by),
                contributor=contributor,
                justification=justification,
            )
        )
        assert isinstance(g, Grant)
        return g

    def revoke_grant(self, grant_id: str, *, by: Principal, justification: str = "") -> None:
        self._call(
            "revoke_grant",
            grant_id=grant_id,
            by=wire.principal_to_wire(by),
            justification=justification,
        )

    def end_expired_grants(self, *, by: Principal) -> list[str]:
        return list(self._call("end_expired_grants", by=wire.principal_to_wire(by)))

    def grants(self) -> list[Grant | BreakGlass]:
        return [wire.grant_from_wire(g) for g in self._call("grants")]

    def open_break_glass(
        self,
        principal: Principal,
        contributor: str,
        *,
        approvers: tuple[Principal, Principal],
        justification: str,
        expires: datetime,
    ) -> BreakGlass:
        g = wire.grant_from_wire(
            self._call(
                "open_break_glass",
                principal=wire.principal_to_wire(principal),
                contributor=contributor,
                approvers=[wire.principal_to_wire(a) for a in approvers],
                justification=justification,
                expires=format_time(expires),
            )
        )
        assert isinstance(g, BreakGlass)
        return g

    def set_legal_hold(
        self, pseudonym: str, periods: list[str], *, by: Principal, reason: str
    ) -> None:
        self._call(
            "set_legal_hold",
            pseudonym=pseudonym,
            periods=periods,
            by=wire.principal_to_wire(by),
            reason=reason,
        )

    def release_legal_hold(
        self, pseudonym: str, periods: list[str], *, by: Principal, reason: str
    ) -> None:
        self._call(
            "release_legal_hold",
            pseudonym=pseudonym,
            periods=periods,
            by=wire.principal_to_wire(by),
            reason=reason,
        )

    def legal_holds(self) -> list[LegalHold]:
        return [wire.hold_from_wire(h) for h in self._call("legal_holds")]

    def erase_contributor(self, pseudonym: str, *, by: Principal, justification: str = "") -> int:
        return int(
            self._call(
                "erase_contributor",
                pseudonym=pseudonym,
                by=wire.principal_to_wire(by),
                justification=justification,
            )
        )

    def expire_periods(self, now: datetime, *, by: Principal) -> list[tuple[str, str]]:
        return [
            (p, period)
            for p, period in self._call(
                "expire_periods", now=format_time(now), by=wire.principal_to_wire(by)
            )
        ]

    def feed(self, pseudonym: str, *, principal: Principal, purpose: str) -> list[AuditEvent]:
        return [
            event_from_dict(d)
            for d in self._call(
                "feed",
                pseudonym=pseudonym,
                principal=wire.principal_to_wire(principal),
                purpose=purpose,
            )
        ]

    def read_audit(self, *, principal: Principal, purpose: str) -> list[AuditEvent]:
        return [
            event_from_dict(d)
            for d in self._call(
                "read_audit", principal=wire.principal_to_wire(principal), purpose=purpose
            )
        ]

    def verify_audit(self, *, principal: Principal) -> VerifyReport:
        return wire.report_from_wire(
            self._call("verify_audit", principal=wire.principal_to_wire(principal))
        )

    def checkpoint(self) -> Checkpoint | None:
        raw = self._call("checkpoint")
        return Checkpoint.from_json(raw) if raw else None

    def audit_public_key(self) -> bytes:
        return wire.unb64(self._call("audit_public_key"))

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = self._call("describe")
        return {**d, "kind": "remote", "url": self.url}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error(d: dict[str, str]) -> VaultError:
    exc = wire.error_from_wire(d)
    return exc if isinstance(exc, VaultError) else VaultError(str(exc))
