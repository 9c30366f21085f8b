"""Batch ingest: check a sealed envelope against its device, consent and manifest, then store it.

The order is fixed: every check runs before the first byte is stored, so a rejected batch
leaves nothing behind; then the blob is made durable, then the metadata row is committed
(for concurrent uploads, both in group commits they share: keystep.store.writer), and only
then is the acknowledgement returned — an ack never precedes durability. The
collector cannot read the batch (it is sealed to the vault); it checks what the clear header
claims and the device signature that binds the header to the device.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn

from keystep.audit.events import AuditEvent, BatchConflictEvent
from keystep.model.manifest import Manifest
from keystep.seal.envelope import (
    BatchHeader,
    Envelope,
    EnvelopeError,
    parse_envelope,
    verify_signature,
)
from keystep.store.base import (
    BatchRecord,
    Conflict,
    ConsentRecord,
    DeviceRecord,
    Repository,
    Scope,
)
from keystep.store.blobs import BlobStore
from keystep.store.writer import BatchWriter

MAX_BATCH_BYTES: Final = 32 * 1024 * 1024
# The header carries only the hour a batch started, so a device clock that is hours off is
# accepted (its batches simply land in another hour); a start in the future is not.
FUTURE_TOLERANCE: Final = timedelta(hours=1)
BLOB_LAYOUT: Final = "v1"
_SAFE: Final = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")


class Unread:
    """Marks an argument the caller did not read for us (None is a real answer there)."""


UNREAD: Final = Unread()

ManifestLookup = Callable[[int], Manifest | None]
Audit = Callable[[AuditEvent], Any]


class IngestRejected(Exception):
    """A batch refused with an HTTP status and a reason the device (and its owner) can read."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class BatchConflict(IngestRejected):
    """Different bytes under a batch id, or under a device's seq, already stored (HTTP 409)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 409)


@dataclass(frozen=True, slots=True)
class Ack:
    """What the device keeps as proof of durable receipt; a retry gets the same one."""

    batch_id: str
    sha256: str
    received_at: datetime
    duplicate: bool = False

    def to_dict(self) -> dict[str, str]:
        return {
            "batch_id": self.batch_id,
            "sha256": self.sha256,
            "received_at": self.received_at.astimezone(UTC).isoformat(timespec="microseconds"),
        }


def blob_key(header: BatchHeader, sha256: str) -> str:
    """Content-derived, so a conflicting upload can never overwrite a stored blob."""
    who = header.contributor
    if not _SAFE.match(who):
        who = "h" + hashlib.sha256(who.encode()).hexdigest()[:32]
    return f"{BLOB_LAYOUT}/{header.period}/{who}/{header.batch_id}-{sha256[:32]}"


def ingest_batch(
    repo: Repository,
    blobs: BlobStore,
    envelope: bytes,
    *,
    device_id: str,
    manifest_lookup: ManifestLookup,
    audit: Audit,
    now: datetime,
    max_bytes: int = MAX_BATCH_BYTES,
    authenticated: DeviceRecord | None = None,
    consent: ConsentRecord | Unread | None = UNREAD,
    parsed: Envelope | None = None,
    writer: BatchWriter | None = None,
) -> Ack:
    """Store one envelope uploaded by the authenticated device ``device_id``.

    ``authenticated``: that device's record as authentication just read it; given, only
    the consent is read here (one read per upload instead of two). ``consent``: with
    ``authenticated``, the active consent of the contributor the batch names, read in the
    same round trip (None: there is none); then nothing is read here. ``parsed``: the
    envelope already parsed from these very bytes. ``writer``: the :class:`BatchWriter` of
    ``repo`` and ``blobs`` that concurrent uploads share (their blobs and rows then go to
    disk in shared syncs); without one, this upload is stored on its own.

    Raises :class:`IngestRejected` (with an HTTP status) for every refusal, and its subclass
    :class:`BatchConflict` (409, audited) for a replay with different bytes.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if len(envelope) > max_bytes:
        raise IngestRejected(f"batch is {len(envelope)} bytes; the limit is {max_bytes}", 413)
    try:
        env = parsed if parsed is not None else parse_envelope(envelope)
    except EnvelopeError as exc:
        raise IngestRejected(f"not a valid v1 envelope: {exc}", 400) from exc
    h = env.header
    if not h.contributor:
        raise IngestRejected("the batch names no contributor", 400)
    # One read for both (one round trip on PostgreSQL), or only the consent when the caller
    # brings the device's record; the consent is that of the contributor the batch claims,
    # and counts only once the signature ties the batch to a device of theirs.
    known: DeviceRecord | None
    if authenticated is not None and authenticated.device_id == device_id:
        known = authenticated
        if isinstance(consent, Unread):
            consent = repo.active_consent(
                h.contributor, h.manifest_version, scope=Scope.of_contributor(h.contributor)
            )
    else:
        known, consent = repo.device_and_consent(
            device_id, contributor=h.contributor, manifest_version=h.manifest_version
        )
    device = _check_device(known, device_id, h)
    try:
        verify_signature(env, device.public_key)
    except EnvelopeError as exc:
        raise IngestRejected("the device signature does not verify", 403) from exc
    if h.contributor != device.contributor:
        raise IngestRejected("the batch is sealed for another contributor than its device's", 403)
    scope = Scope.of_contributor(device.contributor)
    _check_consent(consent, manifest_lookup, h)
    _check_hour(h.t_hour, now)

    raw_digest = hashlib.sha256(envelope).digest()
    digest = raw_digest.hex()
    record = BatchRecord(
        batch_id=h.batch_id,
        device=h.device,
        seq=h.seq,
        contributor=h.contributor,
        period=h.period,
        t_hour=h.t_hour,
        manifest_version=h.manifest_version,
        redaction_version=h.redaction_version,
        kinds=h.kinds,
        key_id=h.key_id,
        sha256=digest,
        size=len(envelope),
        blob_key=blob_key(h, digest),
        received_at=now.astimezone(UTC),
    )
    # The blob key derives from the bytes: a retry rewrites nothing, and a conflicting upload
    # lands beside the stored blob, never over it — so storing before the row check is safe.
    if writer is None:
        writer = BatchWriter(repo, blobs)
    elif writer.repo is not repo or writer.blobs is not blobs:
        raise ValueError("the writer stores into another repository or blob store")
    try:
        stored = writer.write(record, envelope, sha256=raw_digest, scope=scope)
    except Conflict as exc:
        blobs.delete(record.blob_key)  # ours was never acknowledged: leave nothing behind
        _conflict(audit, h, device, now, exc.reason)
    return _ack(stored, duplicate=stored is not record)


def _ack(r: BatchRecord, *, duplicate: bool) -> Ack:
    return Ack(batch_id=r.batch_id, sha256=r.sha256, received_at=r.received_at, duplicate=duplicate)


def _check_device(device: DeviceRecord | None, device_id: str, h: BatchHeader) -> DeviceRecord:
    if device is None:
        raise IngestRejected("the device is not enrolled", 403)
    if device.revoked:
        raise IngestRejected("the device's enrollment is revoked", 403)
    if h.device != device_id:
        raise IngestRejected("the batch names another device than the one uploading it", 403)
    return device


def _check_consent(consent: ConsentRecord | None, lookup: ManifestLookup, h: BatchHeader) -> None:
    if consent is None:
        raise IngestRejected(
            f"the contributor has no active consent to manifest v{h.manifest_version}", 403
        )
    manifest = lookup(h.manifest_version)
    if manifest is None:
        raise IngestRejected(f"manifest v{h.manifest_version} is not published here", 422)
    if consent.manifest_digest != manifest.digest:
        raise IngestRejected(
            f"the consent was given to other text than manifest v{h.manifest_version}", 403
        )
    extra = sorted(set(h.kinds) - set(manifest.kinds))
    if extra:
        raise IngestRejected(
            f"kinds {extra} are not in manifest v{h.manifest_version}, the one consented to", 422
        )


def _check_hour(t_hour: str, now: datetime) -> None:
    # The envelope's parser checked the shape (YYYY-MM-DDTHH:00:00Z); strptime costs a
    # tenth of an upload's CPU, slicing next to nothing.
    try:
        hour = datetime(
            int(t_hour[0:4]), int(t_hour[5:7]), int(t_hour[8:10]), int(t_hour[11:13]), tzinfo=UTC
        )
    except ValueError as exc:
        raise IngestRejected(f"t_hour {t_hour} is not an hour of the calendar", 400) from exc
    if hour > now + FUTURE_TOLERANCE:
        raise IngestRejected(
            f"the batch starts at {t_hour}, more than an hour after the collector's clock", 422
        )


def _conflict(
    audit: Audit, h: BatchHeader, device: DeviceRecord, now: datetime, reason: str
) -> NoReturn:
    # Audited before the 409 goes out: a replay with other bytes is a forgery attempt or a bug.
    audit(
        BatchConflictEvent(
            t=now,
            principal=device.device_id,
            role="contributor",
            justification=reason,
            contributor=device.contributor,
            batch_id=h.batch_id,
            device=h.device,
        )
    )
    raise BatchConflict(reason)
