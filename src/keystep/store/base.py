"""The collector's metadata repository: records, scopes and the ``Repository`` interface.

Two backends implement it (``sqlite.py``, the embedded default; ``postgres.py``, the
service) and one contract suite (``tests/store``) runs against both. Every call names a
:class:`Scope`: who is asking and for which contributor. PostgreSQL enforces scopes with
row-level security keyed on per-transaction settings; SQLite applies the same rules in its
queries, so code written against one backend sees the same rows on the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

SCHEMA_VERSION: Final = 1

Role = Literal["contributor", "collector", "steward", "builder"]
ROLES: Final[tuple[Role, ...]] = ("contributor", "collector", "steward", "builder")

# Which roles see every contributor's rows of a table; any other scope sees only the rows of
# its own contributor. The PostgreSQL migration writes the same sets into its RLS policies
# (a test compares them). Stewards never see batches or consents: principle 9 keeps who
# records, and who refused, away from anyone who manages people.
SEES_ALL: Final[dict[str, frozenset[Role]]] = {
    "batches": frozenset({"builder"}),
    "devices": frozenset({"collector", "steward"}),
    "enrollment_codes": frozenset({"collector", "steward"}),
    "consents": frozenset({"builder"}),
    "lineage": frozenset({"builder", "steward"}),
}
# Tables without contributor data: everyone reads, only these roles write.
WRITERS: Final[dict[str, frozenset[Role]]] = {
    "manifests": frozenset({"steward"}),
    "fleet_state": frozenset({"steward"}),
}


class RepositoryError(RuntimeError):
    """The store cannot do what was asked (unreachable, corrupt, misconfigured)."""


class ScopeError(PermissionError):
    """The scope may not perform this operation."""


class Conflict(ValueError):
    """A different record already holds this identity (a batch id or a device's seq)."""

    def __init__(self, reason: str, existing: BatchRecord | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.existing = existing


class EnrollmentCodeInvalid(ValueError):
    """A one-time code that is unknown, expired or already used. Which one is not told."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Who is asking. ``contributor`` is a pseudonym; the role decides what else is visible."""

    role: Role
    contributor: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown scope role {self.role!r}")
        if self.role == "contributor" and not self.contributor:
            raise ValueError("a contributor scope names its contributor")

    @classmethod
    def of_contributor(cls, pseudonym: str) -> Scope:
        """A contributor, or a device uploading in that contributor's name."""
        return cls("contributor", pseudonym)

    @classmethod
    def collector(cls) -> Scope:
        """The service authenticating devices and redeeming enrollment codes."""
        return cls("collector")

    @classmethod
    def steward(cls) -> Scope:
        return cls("steward")

    @classmethod
    def builder(cls) -> Scope:
        """The dataset builder: reads every consented batch, writes lineage."""
        return cls("builder")

    def sees(self, table: str, contributor: str) -> bool:
        return self.role in SEES_ALL[table] or contributor == self.contributor

    def may_write(self, table: str) -> bool:
        return self.role in WRITERS[table]


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """Metadata of one stored envelope: its clear header fields and where the blob lives."""

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
    sha256: str
    size: int
    blob_key: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    contributor: str
    public_key: bytes  # raw Ed25519, 32 bytes
    credential_hash: str  # never the credential itself
    enrolled_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class EnrollmentCode:
    """A one-time code a steward hands a contributor; only its hash is stored."""

    code_hash: str
    contributor: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    contributor: str
    manifest_version: int
    manifest_digest: str
    given_at: datetime
    withdrawn_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    version: int
    yaml_text: str
    digest: str
    published_at: datetime


@dataclass(frozen=True, slots=True)
class FleetState:
    """The kill switch. ``generation`` grows on every change so followers notice each one."""

    halted: bool
    generation: int
    changed_at: datetime | None
    changed_by: str | None = None


@dataclass(frozen=True, slots=True)
class LineageEntry:
    dataset_id: str
    batch_id: str
    contributor: str


class Repository(ABC):
    """Collector metadata. Each method is one transaction; all times are timezone-aware."""

    # -- batches ---------------------------------------------------------------------------

    @abstractmethod
    def add_batch(self, record: BatchRecord, *, scope: Scope) -> BatchRecord:
        """Store ``record`` durably and return that very object; if the same batch (same id and
        same sha256) is already stored, return the stored record (another object) unchanged.
        Raise :class:`Conflict` when the batch id, or the device's ``seq``, is held by
        different bytes."""

    def add_batches(
        self, items: Sequence[tuple[BatchRecord, Scope]]
    ) -> list[BatchRecord | BaseException]:
        """:meth:`add_batch` for several records at once, one outcome per item in order (the
        stored record, or the exception that refused it): for a caller that gathers the
        uploads of many threads into one group commit of its own. Backends commit them in one
        transaction; none returns before its row is durable."""
        out: list[BatchRecord | BaseException | None] = []
        allowed: list[tuple[BatchRecord, Scope]] = []
        for record, scope in items:
            try:
                check_own(scope, "batches", record.contributor)
            except ScopeError as exc:  # refused alone: one bad row must not fail a group
                out.append(exc)
                continue
            out.append(None)
            allowed.append((record, scope))
        stored = iter(self._commit_batches(allowed) if allowed else [])
        return [next(stored) if o is None else o for o in out]

    def _commit_batches(
        self, items: Sequence[tuple[BatchRecord, Scope]]
    ) -> list[BatchRecord | BaseException]:
        """Rows whose scopes may write them, one outcome each; by default one
        :meth:`add_batch` after the other."""
        out: list[BatchRecord | BaseException] = []
        for record, scope in items:
            try:
                out.append(self.add_batch(record, scope=scope))
            except Exception as exc:
                out.append(exc)
        return out

    @abstractmethod
    def get_batch(self, batch_id: str, *, scope: Scope) -> BatchRecord | None: ...

    @abstractmethod
    def find_batch_by_seq(self, device: str, seq: int, *, scope: Scope) -> BatchRecord | None: ...

    @abstractmethod
    def list_batches(
        self,
        *,
        scope: Scope,
        contributor: str | None = None,
        period: str | None = None,
        since_hour: str | None = None,
    ) -> list[BatchRecord]:
        """Visible batches, oldest first (by ``t_hour``, then ``seq``)."""

    @abstractmethod
    def delete_batches(self, batch_ids: Iterable[str], *, scope: Scope) -> list[BatchRecord]:
        """Delete the visible ones among ``batch_ids``; return what was deleted."""

    # -- devices and enrollment ------------------------------------------------------------

    @abstractmethod
    def add_device(self, device: DeviceRecord, *, scope: Scope) -> None:
        """Raise :class:`Conflict` when the device id is taken."""

    @abstractmethod
    def get_device(self, device_id: str, *, scope: Scope) -> DeviceRecord | None: ...

    @abstractmethod
    def list_devices(self, *, scope: Scope) -> list[DeviceRecord]: ...

    @abstractmethod
    def revoke_device(self, device_id: str, *, at: datetime, scope: Scope) -> bool:
        """Mark revoked (idempotent: the first time stays). False when not visible."""

    @abstractmethod
    def add_enrollment_code(self, code: EnrollmentCode, *, scope: Scope) -> None: ...

    @abstractmethod
    def redeem_enrollment_code(
        self, code_hash: str, *, now: datetime, scope: Scope
    ) -> EnrollmentCode:
        """Atomically mark the code used and return it (with ``used_at`` set). Raise
        :class:`EnrollmentCodeInvalid` when unknown, expired or already used: a code works
        once even when two redemptions race."""

    # -- consent and manifests -------------------------------------------------------------

    @abstractmethod
    def record_consent(self, consent: ConsentRecord, *, scope: Scope) -> None:
        """Record consent to one manifest version (again, after a withdrawal, replaces it)."""

    @abstractmethod
    def withdraw_consent(self, contributor: str, *, at: datetime, scope: Scope) -> int:
        """Withdraw every active consent of ``contributor``; return how many."""

    @abstractmethod
    def consents(self, contributor: str, *, scope: Scope) -> list[ConsentRecord]: ...

    @abstractmethod
    def publish_manifest(self, manifest: ManifestRecord, *, scope: Scope) -> None:
        """Versions are immutable: publishing a known version with other text is a Conflict."""

    @abstractmethod
    def get_manifest(self, version: int) -> ManifestRecord | None: ...

    @abstractmethod
    def latest_manifest(self) -> ManifestRecord | None: ...

    # -- fleet -----------------------------------------------------------------------------

    @abstractmethod
    def fleet_state(self) -> FleetState: ...

    @abstractmethod
    def set_fleet_halted(
        self,
        halted: bool,
        *,
        at: datetime,
        by: str,
        scope: Scope,
        notify: Callable[[FleetState], tuple[str, str]] | None = None,
    ) -> FleetState:
        """Set the kill switch; the generation grows by one on every call.

        ``notify`` turns the new state into ``(channel, payload)``. A backend shared by
        several processes (PostgreSQL) sends it with ``NOTIFY`` in the same transaction, so
        it is delivered exactly when the change commits and never without it; a backend of
        one process (SQLite) has no channel and does not call it."""

    # -- lineage ---------------------------------------------------------------------------

    @abstractmethod
    def record_lineage(
        self, dataset_id: str, entries: Sequence[tuple[str, str]], *, scope: Scope
    ) -> None:
        """``entries``: (batch_id, contributor) pairs that went into ``dataset_id``."""

    @abstractmethod
    def lineage(self, dataset_id: str, *, scope: Scope) -> list[LineageEntry]: ...

    @abstractmethod
    def datasets_of(self, contributor: str, *, scope: Scope) -> list[str]: ...

    # -- lifecycle -------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def active_consent(
        self, contributor: str, manifest_version: int, *, scope: Scope
    ) -> ConsentRecord | None:
        for c in self.consents(contributor, scope=scope):
            if c.manifest_version == manifest_version and c.active:
                return c
        return None

    def device_and_consent(
        self, device_id: str, *, contributor: str, manifest_version: int
    ) -> tuple[DeviceRecord | None, ConsentRecord | None]:
        """What an upload is checked against, read together: the device (collector scope) and
        ``contributor``'s active consent to ``manifest_version`` (that contributor's scope).

        ``contributor`` is what the batch claims; the caller uses the consent only once the
        device signature has verified and the device belongs to that contributor. Backends
        with a network round trip per transaction read both in one."""
        device = self.get_device(device_id, scope=Scope.collector())
        consent = self.active_consent(
            contributor, manifest_version, scope=Scope.of_contributor(contributor)
        )
        return device, consent

    def devices_barred(
        self, device_ids: Collection[str], *, manifest: ManifestRecord
    ) -> dict[str, str]:
        """Which of ``device_ids`` may not hold a recording lease under ``manifest``, and why:
        unknown or revoked, or their contributor has no active consent to that version with
        that digest. Devices absent from the answer may. Backends with a network round trip
        per transaction answer for all of them in one."""
        barred: dict[str, str] = {}
        for device_id in device_ids:
            dev = self.get_device(device_id, scope=Scope.collector())
            if dev is None or dev.revoked:
                barred[device_id] = "device revoked"
                continue
            consent = self.active_consent(
                dev.contributor, manifest.version, scope=Scope.of_contributor(dev.contributor)
            )
            if consent is None or consent.manifest_digest != manifest.digest:
                barred[device_id] = f"no consent to manifest v{manifest.version}"
        return barred


def check_write(scope: Scope, table: str) -> None:
    if not scope.may_write(table):
        raise ScopeError(f"role {scope.role} may not change {table}")


def check_own(scope: Scope, table: str, contributor: str) -> None:
    """A write of a contributor row the scope could not see is refused, as RLS would."""
    if not scope.sees(table, contributor):
        raise ScopeError(f"role {scope.role} may not write {table} rows of another contributor")
