"""The vault interface: the one door to plaintext (in-process and remote implementations)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keystep.audit.events import AuditEvent
from keystep.audit.log import Checkpoint, VerifyReport
from keystep.model.batch import BatchContent
from keystep.policy.model import BreakGlass, Grant, Principal
from keystep.seal.envelope import BatchHeader

if TYPE_CHECKING:
    from keystep.vault.local import LocalVault


class VaultError(Exception):
    """The vault refuses or cannot do what was asked. The message says why, without content."""


class AccessDenied(VaultError):
    """Policy said no (the refusal itself is in the audit log)."""


class AuditUnavailable(VaultError):
    """The audit entry could not be made durable, so nothing was answered (fail closed)."""


class BadEnvelope(VaultError):
    """The batch does not parse, its device is unknown, or its signature does not verify."""


@dataclass(frozen=True)
class SealingKey:
    """The public half of a (pseudonym, period) key pair: what devices seal to."""

    key_id: str
    public_key: bytes
    pseudonym: str
    period: str


@dataclass(frozen=True)
class Unsealed:
    header: BatchHeader
    content: BatchContent


@dataclass(frozen=True)
class LegalHold:
    pseudonym: str
    period: str
    set_by: str
    reason: str
    set_at: datetime


class Vault(ABC):
    """Keys, grants and the audit log behind one interface.

    Every method that changes policy or touches data writes an audit entry first; the
    ``by`` principal is checked by :func:`keystep.policy.decide` like any other request.
    """

    @abstractmethod
    def enroll_contributor(self, contributor_id: str) -> str:
        """Create the contributor's KEK if absent; return their pseudonym."""

    @abstractmethod
    def pseudonym(self, contributor_id: str) -> str:
        """The vault-keyed pseudonym of a contributor id (no key is created)."""

    @abstractmethod
    def sealing_key(self, pseudonym: str, period: str) -> SealingKey:
        """The period's public key, created if absent. Refused when erased or expired."""

    @abstractmethod
    def register_device(self, device_id: str, public_key: bytes, *, pseudonym: str) -> None:
        """Bind a device's Ed25519 public key to a contributor."""

    @abstractmethod
    def unseal(self, envelope: bytes, *, principal: Principal, purpose: str) -> Unsealed:
        """Verify, decide, audit durably, and only then open the batch."""

    @abstractmethod
    def unseal_many(
        self, envelopes: list[bytes], *, principal: Principal, purpose: str
    ) -> list[Unsealed | VaultError]:
        """Unseal a run of batches with one durable audit write for all of them.

        Returns, per envelope, its plaintext or the VaultError that refused it. Raises
        AuditUnavailable (nothing returned) if the audit write fails.
        """

    @abstractmethod
    def unseal_keys(
        self, envelopes: list[bytes], *, principal: Principal, purpose: str
    ) -> list[bytes | VaultError]:
        """Like :meth:`unseal_many` but answer each batch's data key, not its plaintext.

        For a builder that opens bodies in its own workers (``open_body``): the vault does
        the verify → decide → audit → unwrap part and the decoding CPU stays out of it. The
        caller holds each key only in memory, for that one batch.
        """

    @abstractmethod
    def record(self, event: AuditEvent) -> None:
        """Append a non-unseal audit event (consent, kill switch, release, ...), durably."""

    @abstractmethod
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
        """A steward grants access; the expiry is required."""

    @abstractmethod
    def revoke_grant(self, grant_id: str, *, by: Principal, justification: str = "") -> None:
        """End a grant or a break-glass now."""

    @abstractmethod
    def end_expired_grants(self, *, by: Principal) -> list[str]:
        """Mark grants and break-glass past their expiry as ended; returns their ids."""

    @abstractmethod
    def grants(self) -> list[Grant | BreakGlass]:
        """Every grant and break-glass on record, revoked and expired ones included."""

    @abstractmethod
    def open_break_glass(
        self,
        principal: Principal,
        contributor: str,
        *,
        approvers: tuple[Principal, Principal],
        justification: str,
        expires: datetime,
    ) -> BreakGlass:
        """Raw access for one steward: two different stewards approve, at most 24 h."""

    @abstractmethod
    def set_legal_hold(
        self, pseudonym: str, periods: list[str], *, by: Principal, reason: str
    ) -> None:
        """Suspend retention expiry for these periods (audited, in the contributor's feed)."""

    @abstractmethod
    def release_legal_hold(
        self, pseudonym: str, periods: list[str], *, by: Principal, reason: str
    ) -> None:
        """Let retention expire these periods again."""

    @abstractmethod
    def legal_holds(self) -> list[LegalHold]:
        """Active legal holds."""

    @abstractmethod
    def erase_contributor(self, pseudonym: str, *, by: Principal, justification: str = "") -> int:
        """Destroy the contributor's KEK and period keys; returns how many keys were destroyed."""

    @abstractmethod
    def expire_periods(self, now: datetime, *, by: Principal) -> list[tuple[str, str]]:
        """Destroy every expired (pseudonym, period) key not under legal hold; returns them."""

    @abstractmethod
    def feed(self, pseudonym: str, *, principal: Principal, purpose: str) -> list[AuditEvent]:
        """The contributor's "who accessed my data" feed (the contributor or a steward/auditor)."""

    @abstractmethod
    def read_audit(self, *, principal: Principal, purpose: str) -> list[AuditEvent]:
        """The whole audit log, decoded (auditors and stewards only)."""

    @abstractmethod
    def verify_audit(self, *, principal: Principal) -> VerifyReport:
        """Check the audit chain against the signed checkpoints and the key store's anchor."""

    @abstractmethod
    def checkpoint(self) -> Checkpoint | None:
        """Sign the audit head now."""

    @abstractmethod
    def audit_public_key(self) -> bytes:
        """The Ed25519 key that signs audit checkpoints (raw, 32 bytes)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Where the vault, its key store and its master secret are (for ``keystep status``)."""

    @abstractmethod
    def close(self) -> None:
        """Sign a final checkpoint and release files."""


def open_local_vault(
    vault_dir: Path,
    *,
    create: bool = False,
    passphrase: str | None = None,
    keep_months: int | None = None,
) -> LocalVault:
    """Open (or with ``create`` make) the in-process vault whose key store is ``vault_dir``."""
    from keystep.vault.local import LocalVault

    return LocalVault.open(vault_dir, create=create, passphrase=passphrase, keep_months=keep_months)


def default_vault_dir(home: Path) -> Path:
    """A vault folder beside (never inside) the home: ``~/.keystep`` → ``~/.keystep-vault``."""
    home = home.expanduser().absolute()
    return home.with_name(home.name + "-vault")
