"""Audit events as data: one frozen dataclass per ``<Noun><Verb>Event`` with a kebab-case name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

AUDIT_FORMAT_VERSION: Final = 1


class AuditFormatError(ValueError):
    """An audit entry that does not decode into a known event."""


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """What every entry says: when, who (name and role), why, and whose data."""

    name: ClassVar[str] = "audit-event"

    t: datetime
    principal: str
    role: str
    purpose: str | None = None
    justification: str = ""
    contributor: str | None = None

    def concerns(self, pseudonym: str) -> bool:
        """Whether this entry belongs in ``pseudonym``'s "who accessed my data" feed."""
        return self.contributor == pseudonym

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.name}
        for name in _field_names(type(self)):
            v = getattr(self, name)
            if isinstance(v, datetime):
                v = format_time(v)
            elif isinstance(v, tuple):
                v = list(v)
            d[name] = v
        return d


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type[AuditEvent]) -> tuple[str, ...]:
    # dataclasses.fields() on every entry costs more than encoding it (hot path: unseal).
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def format_time(t: datetime) -> str:
    if t.tzinfo is None:
        raise AuditFormatError("audit times must be timezone-aware")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class UnsealBatchEvent(AuditEvent):
    """Written before every unseal answer, allowed or denied."""

    name: ClassVar[str] = "unseal-batch"
    batch_id: str
    device: str
    period: str
    allowed: bool
    reason: str
    grant_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContributorEnrolledEvent(AuditEvent):
    name: ClassVar[str] = "contributor-enrolled"


@dataclass(frozen=True, kw_only=True)
class DeviceRegisteredEvent(AuditEvent):
    name: ClassVar[str] = "device-registered"
    device: str


@dataclass(frozen=True, kw_only=True)
class GrantCreatedEvent(AuditEvent):
    name: ClassVar[str] = "grant-created"
    grant_id: str
    grantee: str
    grantee_role: str
    data_class: str
    expires: datetime


@dataclass(frozen=True, kw_only=True)
class GrantRevokedEvent(AuditEvent):
    name: ClassVar[str] = "grant-revoked"
    grant_id: str


@dataclass(frozen=True, kw_only=True)
class BreakGlassOpenedEvent(AuditEvent):
    """Raw access by a steward; it appears in the contributor's feed."""

    name: ClassVar[str] = "break-glass-opened"
    grant_id: str
    grantee: str
    approvers: tuple[str, ...]
    expires: datetime


@dataclass(frozen=True, kw_only=True)
class BreakGlassClosedEvent(AuditEvent):
    name: ClassVar[str] = "break-glass-closed"
    grant_id: str


@dataclass(frozen=True, kw_only=True)
class ConsentGivenEvent(AuditEvent):
    name: ClassVar[str] = "consent-given"
    manifest_version: int
    manifest_digest: str = ""


@dataclass(frozen=True, kw_only=True)
class ConsentWithdrawnEvent(AuditEvent):
    name: ClassVar[str] = "consent-withdrawn"
    manifest_version: int


@dataclass(frozen=True, kw_only=True)
class DatasetReleasedEvent(AuditEvent):
    """A release names every contributor whose data it contains (lineage)."""

    name: ClassVar[str] = "dataset-released"
    dataset_id: str
    contributors: tuple[str, ...] = ()

    def concerns(self, pseudonym: str) -> bool:
        return pseudonym in self.contributors or self.contributor == pseudonym


@dataclass(frozen=True, kw_only=True)
class KillSwitchPulledEvent(AuditEvent):
    name: ClassVar[str] = "kill-switch-pulled"
    scope: str = "fleet"


@dataclass(frozen=True, kw_only=True)
class ContributorErasedEvent(AuditEvent):
    name: ClassVar[str] = "contributor-erased"
    keys_destroyed: int


@dataclass(frozen=True, kw_only=True)
class LegalHoldSetEvent(AuditEvent):
    name: ClassVar[str] = "legal-hold-set"
    periods: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class LegalHoldReleasedEvent(AuditEvent):
    name: ClassVar[str] = "legal-hold-released"
    periods: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PeriodExpiredEvent(AuditEvent):
    name: ClassVar[str] = "period-expired"
    period: str


@dataclass(frozen=True, kw_only=True)
class BatchConflictEvent(AuditEvent):
    """Two different batches arrived under one batch id (a replay or a device bug)."""

    name: ClassVar[str] = "batch-conflict"
    batch_id: str
    device: str


@dataclass(frozen=True, kw_only=True)
class KillSwitchReleasedEvent(AuditEvent):
    """A steward resumed the fleet after a halt."""

    name: ClassVar[str] = "kill-switch-released"
    scope: str = "fleet"


@dataclass(frozen=True, kw_only=True)
class UploadRefusedEvent(AuditEvent):
    """An upload refused for a security reason: a forged or foreign signature, a batch in
    another device's or contributor's name, a revoked device."""

    name: ClassVar[str] = "upload-refused"
    device: str
    status: int


EVENT_TYPES: Final[dict[str, type[AuditEvent]]] = {
    cls.name: cls
    for cls in (
        UnsealBatchEvent,
        ContributorEnrolledEvent,
        DeviceRegisteredEvent,
        GrantCreatedEvent,
        GrantRevokedEvent,
        BreakGlassOpenedEvent,
        BreakGlassClosedEvent,
        ConsentGivenEvent,
        ConsentWithdrawnEvent,
        DatasetReleasedEvent,
        KillSwitchPulledEvent,
        ContributorErasedEvent,
        LegalHoldSetEvent,
        LegalHoldReleasedEvent,
        PeriodExpiredEvent,
        BatchConflictEvent,
        KillSwitchReleasedEvent,
        UploadRefusedEvent,
    )
}


def event_from_dict(d: dict[str, Any]) -> AuditEvent:
    """Decode an entry written by :meth:`AuditEvent.to_dict`."""
    cls = EVENT_TYPES.get(str(d.get("event")))
    if cls is None:
        raise AuditFormatError(f"unknown audit event {d.get('event')!r}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        if f.name in ("t", "expires") and isinstance(v, str):
            v = parse_time(v)
        elif isinstance(v, list):
            v = tuple(v)
        kwargs[f.name] = v
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise AuditFormatError(f"{cls.name}: {exc}") from exc


def event_for(
    kind: str,
    *,
    principal: str,
    role: str = "contributor",
    pseudonym: str | None = None,
    t: datetime | None = None,
    **fields: Any,
) -> AuditEvent:
    """Build an event by its kebab-case name, stamped now (for command handlers).

    ``pseudonym`` names whose data the event concerns. A contributor acting on their own
    data is logged under that pseudonym, never under their raw id.
    """
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise AuditFormatError(f"unknown audit event {kind!r}")
    if role == "contributor" and pseudonym is not None:
        principal = pseudonym
    try:
        return cls(
            t=t or datetime.now(UTC),
            principal=principal,
            role=role,
            contributor=pseudonym,
            **fields,
        )
    except TypeError as exc:
        raise AuditFormatError(f"{kind}: {exc}") from exc
