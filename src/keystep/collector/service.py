"""The collector's operations as plain functions: the HTTP routes validate and call these.

Every function takes the :class:`Collector` (the process's open stores) and the
authenticated :class:`Caller`, checks the caller may do it, does it, and audits it when it
changes policy or touches someone's data. Refusals raise :class:`ServiceError` carrying
the HTTP status and a reason the caller can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from keystep.audit.events import (
    AuditEvent,
    ConsentGivenEvent,
    ConsentWithdrawnEvent,
    ContributorErasedEvent,
    DeviceRegisteredEvent,
    KillSwitchPulledEvent,
    KillSwitchReleasedEvent,
    UploadRefusedEvent,
)
from keystep.collector.credentials import (
    DEVICE_PREFIX,
    Caller,
    ContributorTokens,
    CredentialError,
    StaffTokens,
    hash_matches,
    new_device_credential,
    sha256_hex,
    split_device_credential,
)
from keystep.collector.fleet import FleetBus, Notice
from keystep.collector.ingest import UNREAD, IngestRejected, Unread, ingest_batch
from keystep.collector.leases import LeaseSigner
from keystep.model.manifest import Manifest, ManifestError, load_manifest
from keystep.model.periods import next_period, period_of
from keystep.policy.model import Principal
from keystep.seal.envelope import Envelope, EnvelopeError, parse_envelope
from keystep.store.base import (
    BatchRecord,
    ConsentRecord,
    DeviceRecord,
    EnrollmentCode,
    EnrollmentCodeInvalid,
    FleetState,
    ManifestRecord,
    Repository,
    Scope,
)
from keystep.store.blobs import BlobStore
from keystep.store.writer import BatchWriter
from keystep.vault.base import AccessDenied, VaultError

DEFAULT_MAX_BATCH: Final = 64 * 1024 * 1024
ENVELOPE_TYPE: Final = "application/octet-stream"
CODE_TTL: Final = timedelta(hours=72)
RECHECK_SECONDS: Final = 60.0
MANIFEST_CACHE_SECONDS: Final = 60.0
LEASE_RESIGN_SECONDS: Final = 300.0
PURPOSE_OWN: Final = "contributor-access"


class ServiceError(Exception):
    """A refusal: ``status`` is the HTTP status, ``reason`` says why in one line."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Collector:
    """What one collector process holds open. ``vault`` may be absent (then enrollment,
    export, feed and erase answer 503)."""

    repo: Repository
    blobs: BlobStore
    fleet: FleetBus
    signer: LeaseSigner
    contributor_tokens: ContributorTokens
    staff: StaffTokens
    vault: Any = None
    lease_ttl: float = 30.0
    max_batch_bytes: int = DEFAULT_MAX_BATCH
    metrics: Any = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # The latest manifest as of a fleet-bus epoch (see latest_manifest), and the batcher of
    # the lease streams' standing checks: process state, not configuration.
    _latest: tuple[int, float, ManifestRecord | None] | None = field(
        default=None, init=False, repr=False
    )
    _standing: StandingChecks | None = field(default=None, init=False, repr=False)
    _manifests: dict[int, Manifest] = field(default_factory=dict, init=False, repr=False)
    _manifests_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # Every upload stores through this one writer, so concurrent ones share their syncs.
    writer: BatchWriter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.writer = BatchWriter(self.repo, self.blobs)

    def audit(self, event: AuditEvent) -> None:
        if self.vault is None:
            raise ServiceError(503, "no vault is configured, so nothing auditable can happen")
        self.vault.record(event)

    def count(self, name: str, **labels: str) -> None:
        if self.metrics is not None:
            self.metrics.count(name, **labels)


# -- authentication -------------------------------------------------------------------------


def bearer_token(authorization: str | None) -> str:
    """The credential of an ``Authorization: Bearer ...`` header, or 401 (nothing is read)."""
    if not authorization:
        raise ServiceError(401, "missing Authorization: Bearer credential")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ServiceError(401, "Authorization must be 'Bearer <credential>'")
    return token


def authenticate(c: Collector, authorization: str | None) -> Caller:
    """Resolve ``Authorization: Bearer ...`` to a caller, or raise 401."""
    token = bearer_token(authorization)
    try:
        if token.startswith(DEVICE_PREFIX + "."):
            return _device_caller(c, token)
        if token.startswith("ksc."):
            t = c.contributor_tokens.check(token)
            dev = c.repo.get_device(t.device_id, scope=Scope.collector())
            if dev is None or dev.revoked or dev.contributor != t.pseudonym:
                raise ServiceError(401, "contributor token belongs to a revoked device")
            return Caller(
                kind="contributor",
                name=t.contributor_id or t.pseudonym,
                role="contributor",
                pseudonym=t.pseudonym,
                device_id=t.device_id,
            )
        return c.staff.check(token)
    except CredentialError as exc:
        c.count("auth_failures", reason="bad-credential")
        raise ServiceError(401, str(exc)) from exc


def _device_caller(c: Collector, token: str) -> Caller:
    device_id, digest = split_device_credential(token)
    return _device_checked(
        c, device_id, digest, c.repo.get_device(device_id, scope=Scope.collector())
    )


def _device_checked(c: Collector, device_id: str, digest: str, dev: DeviceRecord | None) -> Caller:
    """The device a credential names, if the credential is its own (CredentialError
    otherwise; 403, audited, when it is revoked)."""
    if dev is None or not hash_matches(dev.credential_hash, digest):
        raise CredentialError("unknown device credential")
    if dev.revoked:
        c.count("auth_failures", reason="revoked")
        if c.vault is not None:
            c.audit(
                UploadRefusedEvent(
                    t=c.clock(),
                    principal=device_id,
                    role="contributor",
                    contributor=dev.contributor,
                    justification="revoked device credential",
                    device=device_id,
                    status=403,
                )
            )
        raise ServiceError(403, f"device {device_id} has been revoked")
    return Caller(
        kind="device",
        name=device_id,
        role="device",
        pseudonym=dev.contributor,
        device_id=device_id,
        device=dev,
    )


def require(caller: Caller, *roles: str) -> None:
    if caller.role not in roles:
        raise ServiceError(403, f"this needs the role {' or '.join(roles)}, not {caller.role}")


def _principal(caller: Caller) -> Principal:
    """The caller as the vault sees it: a contributor by the id the vault knows them by."""
    if caller.role in ("contributor", "device"):
        if caller.name == caller.pseudonym:
            raise ServiceError(
                403,
                "this device was enrolled without the contributor id; the vault opens data "
                "only for the person it belongs to (enroll again with contributor_id)",
            )
        return Principal(name=caller.name, role="contributor", pseudonym=caller.pseudonym)
    return Principal(name=caller.name, role=caller.role)


# -- enrollment -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrollment:
    device_id: str
    credential: str
    contributor_token: str
    pseudonym: str
    lease_public_key: bytes
    sealing_keys: list[dict[str, Any]]
    manifest_version: int | None


def _need_vault(c: Collector) -> Any:
    if c.vault is None:
        raise ServiceError(503, "no vault is configured on this collector")
    return c.vault


def create_enrollment_code(
    c: Collector, *, caller: Caller, contributor_id: str, ttl: timedelta = CODE_TTL
) -> tuple[str, datetime, str]:
    """A steward asks for a one-time code for a contributor; returns (code, expiry, pseudonym)."""
    require(caller, "steward")
    vault = _need_vault(c)
    pseudonym: str = vault.enroll_contributor(contributor_id)
    # Grouped base32 so a person can read it out; 100 bits of entropy.
    raw = secrets.token_bytes(13)
    import base64

    text = base64.b32encode(raw).decode("ascii").rstrip("=")[:20]
    code = "-".join(text[i : i + 5] for i in range(0, 20, 5))
    now = c.clock()
    c.repo.add_enrollment_code(
        EnrollmentCode(
            code_hash=sha256_hex(code), contributor=pseudonym, created_at=now, expires_at=now + ttl
        ),
        scope=Scope.steward(),
    )
    return code, now + ttl, pseudonym


def enroll_device(
    c: Collector, *, code: str, public_key: bytes, contributor_id: str | None = None
) -> Enrollment:
    """Redeem a one-time code for a device credential (the code is the authentication).

    ``contributor_id``, when the person gives it, must be the one the code was issued for;
    it goes into their contributor token so the vault can recognise them later (export,
    feed, erase). A wrong one burns the code.
    """
    if len(public_key) != 32:
        raise ServiceError(422, "public_key must be a raw 32-byte Ed25519 key")
    vault = _need_vault(c)
    now = c.clock()
    try:
        ec = c.repo.redeem_enrollment_code(
            sha256_hex(code.strip().upper()), now=now, scope=Scope.collector()
        )
    except EnrollmentCodeInvalid as exc:
        c.count("auth_failures", reason="enrollment-code")
        raise ServiceError(403, "enrollment code is unknown, expired or already used") from exc
    if contributor_id is not None and vault.pseudonym(contributor_id) != ec.contributor:
        c.count("auth_failures", reason="enrollment-code")
        raise ServiceError(403, "the enrollment code was issued for another contributor")
    device_id = "d_" + uuid.uuid4().hex[:16]
    credential, digest = new_device_credential(device_id)
    c.repo.add_device(
        DeviceRecord(
            device_id=device_id,
            contributor=ec.contributor,
            public_key=public_key,
            credential_hash=digest,
            enrolled_at=now,
        ),
        scope=Scope.collector(),
    )
    vault.register_device(device_id, public_key, pseudonym=ec.contributor)
    keys = []
    for period in (period_of(now), next_period(period_of(now))):
        k = vault.sealing_key(ec.contributor, period)
        keys.append(
            {
                "key_id": k.key_id,
                "public_key": k.public_key,
                "pseudonym": k.pseudonym,
                "period": k.period,
            }
        )
    c.audit(
        DeviceRegisteredEvent(
            t=now,
            principal=device_id,
            role="contributor",
            contributor=ec.contributor,
            device=device_id,
        )
    )
    c.count("enrollments")
    latest = c.repo.latest_manifest()
    return Enrollment(
        device_id=device_id,
        credential=credential,
        contributor_token=c.contributor_tokens.issue(
            pseudonym=ec.contributor, device_id=device_id, contributor_id=contributor_id
        ),
        pseudonym=ec.contributor,
        lease_public_key=c.signer.public_key,
        sealing_keys=keys,
        manifest_version=latest.version if latest else None,
    )


def sealing_keys(c: Collector, *, caller: Caller, period: str) -> dict[str, Any]:
    """A device asks for the public key of a period (e.g. the next month's)."""
    require(caller, "device")
    vault = _need_vault(c)
    try:
        k = vault.sealing_key(caller.pseudonym, period)
    except Exception as exc:
        raise ServiceError(409, f"no sealing key for period {period}: {exc}") from exc
    return {
        "key_id": k.key_id,
        "public_key": k.public_key,
        "pseudonym": k.pseudonym,
        "period": k.period,
    }


async def revoke_device(c: Collector, *, caller: Caller, device_id: str) -> None:
    """Its credential and contributor token stop working; a connected agent stops now."""
    require(caller, "steward")
    if not c.repo.revoke_device(device_id, at=c.clock(), scope=Scope.steward()):
        raise ServiceError(404, f"no device {device_id}")
    await c.fleet.publish(Notice("device-revoked", device_id))


# -- manifests and consent ------------------------------------------------------------------


def ensure_manifest(c: Collector, manifest: Manifest) -> None:
    """Publish ``manifest`` at start-up when the repository has none."""
    if c.repo.latest_manifest() is None:
        c.repo.publish_manifest(
            ManifestRecord(
                version=manifest.version,
                yaml_text=manifest.to_yaml(),
                digest=manifest.digest,
                published_at=c.clock(),
            ),
            scope=Scope.steward(),
        )


def current_manifest(c: Collector, *, version: int | None = None) -> ManifestRecord:
    rec = c.repo.latest_manifest() if version is None else c.repo.get_manifest(version)
    if rec is None:
        raise ServiceError(404, "no such manifest version" if version else "no manifest published")
    return rec


def manifest_lookup(c: Collector) -> Callable[[int], Manifest | None]:
    """Published manifests by version, parsed once per process: a version is immutable
    once published (the repository refuses other text under it), so the parse — YAML and
    schema validation, far costlier than storing a batch — is kept. A version not yet
    published is asked for again next time."""

    def lookup(version: int) -> Manifest | None:
        m = c._manifests.get(version)
        if m is None:
            with c._manifests_lock:  # concurrent first uploads parse it once, not each
                m = c._manifests.get(version)
                if m is None:
                    rec = c.repo.get_manifest(version)
                    if rec is None:
                        return None
                    m = c._manifests[version] = load_manifest(rec.yaml_text)
        return m

    return lookup


async def publish_manifest(c: Collector, *, caller: Caller, yaml_text: str) -> ManifestRecord:
    require(caller, "steward")
    try:
        m = load_manifest(yaml_text)
    except ManifestError as exc:
        raise ServiceError(422, str(exc)) from exc
    latest = c.repo.latest_manifest()
    if latest is not None and m.version <= latest.version:
        raise ServiceError(409, f"manifest version must exceed {latest.version}")
    rec = ManifestRecord(
        version=m.version, yaml_text=m.to_yaml(), digest=m.digest, published_at=c.clock()
    )
    c.repo.publish_manifest(rec, scope=Scope.steward())
    await c.fleet.publish(Notice("manifest", str(m.version)))
    return rec


def consent_state(c: Collector, *, caller: Caller) -> list[ConsentRecord]:
    require(caller, "contributor", "device")
    assert caller.pseudonym is not None
    return c.repo.consents(caller.pseudonym, scope=Scope.of_contributor(caller.pseudonym))


def give_consent(
    c: Collector, *, caller: Caller, manifest_version: int, manifest_digest: str
) -> ConsentRecord:
    require(caller, "contributor", "device")
    assert caller.pseudonym is not None
    rec = c.repo.get_manifest(manifest_version)
    if rec is None:
        raise ServiceError(404, f"no manifest version {manifest_version}")
    if rec.digest != manifest_digest:
        raise ServiceError(409, "the digest is not that of the published manifest text")
    now = c.clock()
    c.audit(
        ConsentGivenEvent(
            t=now,
            principal=caller.name,
            role="contributor",
            contributor=caller.pseudonym,
            manifest_version=manifest_version,
            manifest_digest=manifest_digest,
        )
    )
    consent = ConsentRecord(
        contributor=caller.pseudonym,
        manifest_version=manifest_version,
        manifest_digest=manifest_digest,
        given_at=now,
    )
    c.repo.record_consent(consent, scope=Scope.of_contributor(caller.pseudonym))
    return consent


async def withdraw_consent(c: Collector, *, caller: Caller) -> int:
    """Takes effect at once: every device of the contributor is told, leases stop."""
    require(caller, "contributor", "device")
    assert caller.pseudonym is not None
    now = c.clock()
    n = c.repo.withdraw_consent(
        caller.pseudonym, at=now, scope=Scope.of_contributor(caller.pseudonym)
    )
    await c.fleet.publish(Notice("consent-withdrawn", caller.pseudonym))
    latest = c.repo.latest_manifest()
    c.audit(
        ConsentWithdrawnEvent(
            t=now,
            principal=caller.name,
            role="contributor",
            contributor=caller.pseudonym,
            manifest_version=latest.version if latest else 0,
        )
    )
    return n


# -- batches --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    batch_id: str
    sha256: str
    size: int
    duplicate: bool


def upload_request(
    c: Collector, *, authorization: str | None, content_type: str, body: bytes
) -> Ack:
    """One upload request once its body has arrived, whole, in one call (so one worker-thread
    hop per request): authenticate (401/403), then the content type (415), then check and
    store the batch. For a device credential the device's record and the consent of the
    contributor the batch names are read together (one round trip on PostgreSQL) when the
    body parses as an envelope; the credential is checked against that record before
    anything else is looked at."""
    token = bearer_token(authorization)
    env = None
    if token.startswith(DEVICE_PREFIX + "."):
        with contextlib.suppress(EnvelopeError):
            env = parse_envelope(body)
    if env is None or not env.header.contributor:
        caller = authenticate(c, authorization)
        _check_content_type(content_type)
        return upload_batch(c, caller=caller, body=body)
    h = env.header
    try:
        device_id, digest = split_device_credential(token)
        dev, consent = c.repo.device_and_consent(
            device_id, contributor=h.contributor, manifest_version=h.manifest_version
        )
        caller = _device_checked(c, device_id, digest, dev)
    except CredentialError as exc:
        c.count("auth_failures", reason="bad-credential")
        raise ServiceError(401, str(exc)) from exc
    _check_content_type(content_type)
    return upload_batch(c, caller=caller, body=body, consent=consent, parsed=env)


def _check_content_type(content_type: str) -> None:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype != ENVELOPE_TYPE:
        raise ServiceError(415, f"send the envelope as {ENVELOPE_TYPE}, not {ctype or 'nothing'}")


def upload_batch(
    c: Collector,
    *,
    caller: Caller,
    body: bytes,
    consent: ConsentRecord | Unread | None = UNREAD,
    parsed: Envelope | None = None,
) -> Ack:
    """Store one sealed envelope for the calling device (idempotent by batch id + digest).
    ``consent`` and ``parsed``: see :func:`keystep.collector.ingest.ingest_batch`."""
    require(caller, "device")
    assert caller.device_id is not None
    try:
        ack = ingest_batch(
            c.repo,
            c.blobs,
            body,
            device_id=caller.device_id,
            manifest_lookup=manifest_lookup(c),
            audit=c.audit,
            now=c.clock(),
            max_bytes=c.max_batch_bytes,
            authenticated=caller.device,
            consent=consent,
            parsed=parsed,
            writer=c.writer,
        )
    except IngestRejected as exc:
        c.count("batches_rejected", reason=_reason_label(exc.status))
        if exc.status == 403 and "consent" not in exc.reason:
            # Someone tried to put a batch in another's name, or a forged one: on record.
            c.audit(
                UploadRefusedEvent(
                    t=c.clock(),
                    principal=caller.device_id,
                    role="contributor",
                    contributor=caller.pseudonym,
                    justification=exc.reason,
                    device=caller.device_id,
                    status=exc.status,
                )
            )
        raise ServiceError(exc.status, exc.reason) from exc
    c.count("batches_accepted")
    c.count("bytes_accepted", n=str(len(body)))
    return Ack(batch_id=ack.batch_id, sha256=ack.sha256, size=len(body), duplicate=ack.duplicate)


def _reason_label(status: int) -> str:
    """A small fixed set: metrics never carry anything that could name a device."""
    return {
        400: "invalid",
        401: "unauthenticated",
        403: "forbidden",
        409: "conflict",
        413: "too-large",
        415: "content-type",
        422: "invalid",
    }.get(status, "other")


# -- the contributor's own data -------------------------------------------------------------


def my_batches(c: Collector, *, caller: Caller) -> list[BatchRecord]:
    require(caller, "contributor")
    assert caller.pseudonym is not None
    return c.repo.list_batches(
        scope=Scope.of_contributor(caller.pseudonym), contributor=caller.pseudonym
    )


def export_mine(c: Collector, *, caller: Caller, limit: int = 100) -> list[dict[str, Any]]:
    """The contributor's own recordings, opened by the vault for purpose contributor-access."""
    require(caller, "contributor")
    vault = _need_vault(c)
    records = my_batches(c, caller=caller)[:limit]
    blobs = [c.blobs.get(r.blob_key) for r in records]
    out: list[dict[str, Any]] = []
    for r, res in zip(
        records,
        vault.unseal_many(blobs, principal=_principal(caller), purpose=PURPOSE_OWN),
        strict=True,
    ):
        if isinstance(res, Exception):
            out.append({"batch_id": r.batch_id, "error": str(res)})
            continue
        out.append(
            {
                "batch_id": r.batch_id,
                "t_hour": r.t_hour,
                "events": [
                    e.to_dict() if hasattr(e, "to_dict") else _event_dict(e)
                    for e in res.content.events
                ],
            }
        )
    return out


def _event_dict(e: Any) -> dict[str, Any]:
    return {"t": e.t, "kind": e.kind, "data": dict(e.data)}


def my_feed(c: Collector, *, caller: Caller) -> list[dict[str, Any]]:
    require(caller, "contributor")
    vault = _need_vault(c)
    events = vault.feed(caller.pseudonym, principal=_principal(caller), purpose=PURPOSE_OWN)
    return [e.to_dict() for e in events]


def forget(c: Collector, *, caller: Caller, last: timedelta) -> int:
    """Delete the contributor's batches of the last ``last``.

    Headers carry only the hour, so every batch whose hour overlaps the window goes: this
    forgets more rather than less.
    """
    require(caller, "contributor")
    assert caller.pseudonym is not None
    since = (c.clock() - last).replace(minute=0, second=0, microsecond=0)
    scope = Scope.of_contributor(caller.pseudonym)
    doomed = c.repo.list_batches(
        scope=scope, contributor=caller.pseudonym, since_hour=since.strftime("%Y-%m-%dT%H:00:00Z")
    )
    gone = c.repo.delete_batches([b.batch_id for b in doomed], scope=scope)
    for b in gone:
        c.blobs.delete(b.blob_key)
    return len(gone)


def forget_batches(c: Collector, *, caller: Caller, batch_ids: list[str]) -> int:
    """Delete the named batches of the calling contributor; another's ids delete nothing
    (the contributor's scope does not see them) and are not told apart from unknown ones."""
    require(caller, "contributor")
    assert caller.pseudonym is not None
    gone = c.repo.delete_batches(batch_ids, scope=Scope.of_contributor(caller.pseudonym))
    for b in gone:
        c.blobs.delete(b.blob_key)
    return len(gone)


def erase(c: Collector, *, caller: Caller, contributor: str | None = None) -> int:
    """Cryptographic erasure (the vault destroys the keys), then metadata and blobs go."""
    if caller.role == "steward":
        if not contributor:
            raise ServiceError(422, "a steward names the contributor (pseudonym) to erase")
        target = contributor
    else:
        require(caller, "contributor")
        assert caller.pseudonym is not None
        if contributor not in (None, caller.pseudonym):
            raise ServiceError(403, "a contributor may erase only their own data")
        target = caller.pseudonym
    vault = _need_vault(c)
    try:
        keys = vault.erase_contributor(target, by=_principal(caller))
    except AccessDenied as exc:
        raise ServiceError(403, str(exc)) from exc
    except VaultError as exc:
        # Unknown contributor, or a legal hold: a refusal with its reason, not a fault.
        status = 404 if "unknown contributor" in str(exc) else 409
        raise ServiceError(status, str(exc)) from exc
    scope = Scope.of_contributor(target)
    batches = c.repo.list_batches(scope=scope, contributor=target)
    for b in c.repo.delete_batches([b.batch_id for b in batches], scope=scope):
        c.blobs.delete(b.blob_key)
    if caller.role == "steward":
        # The vault audits the erasure itself; this records who asked through the service.
        c.audit(
            ContributorErasedEvent(
                t=c.clock(),
                principal=caller.name,
                role=caller.role,
                contributor=target,
                keys_destroyed=keys,
                justification="via collector",
            )
        )
    return len(batches)


# -- leases and the kill switch -------------------------------------------------------------


def latest_manifest(c: Collector) -> ManifestRecord | None:
    """The latest published manifest, read again only when the fleet bus says it may have
    changed (a ``manifest`` notice, or notices missed) or the copy is a minute old."""
    epoch, now = c.fleet.manifest_epoch, time.monotonic()
    cached = c._latest
    if cached is not None and cached[0] == epoch and now - cached[1] < MANIFEST_CACHE_SECONDS:
        return cached[2]
    # The epoch was taken before the read: a notice arriving meanwhile forces another.
    rec = c.repo.latest_manifest()
    c._latest = (epoch, now, rec)
    return rec


def devices_barred(c: Collector, device_ids: list[str]) -> dict[str, str]:
    """Which of ``device_ids`` may not hold a lease now, and why (one repository read)."""
    latest = latest_manifest(c)
    if latest is None:
        return dict.fromkeys(device_ids, "no manifest published")
    return c.repo.devices_barred(device_ids, manifest=latest)


def _device_may_lease(c: Collector, device_id: str) -> tuple[bool, str]:
    why = devices_barred(c, [device_id]).get(device_id)
    return (False, why) if why else (True, "")


class StandingChecks:
    """The standing checks of every lease stream of the process, batched: checks asked for
    while a read is in flight share the next one, as group commit shares a commit. With
    ten thousand streams re-checked every minute this is a few reads a second, not three
    transactions per stream."""

    def __init__(self, c: Collector) -> None:
        self._c = c
        self._pending: dict[str, list[asyncio.Future[tuple[bool, str]]]] = {}
        self._running = False
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only weak refs
        self.reads = 0  # how many repository reads answered them (for tests and benches)

    async def check(self, device_id: str) -> tuple[bool, str]:
        fut: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(device_id, []).append(fut)
        if not self._running:
            self._running = True
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, {}
                try:
                    barred = await asyncio.to_thread(devices_barred, self._c, list(group))
                except Exception as exc:
                    for futs in group.values():
                        for f in futs:
                            if not f.done():
                                f.set_exception(exc)
                    continue
                finally:
                    self.reads += 1
                for device_id, futs in group.items():
                    why = barred.get(device_id)
                    for f in futs:
                        if not f.done():
                            f.set_result((False, why) if why else (True, ""))
        finally:
            self._running = False


def standing_checks(c: Collector) -> StandingChecks:
    if c._standing is None:
        c._standing = StandingChecks(c)
    return c._standing


def issue_lease(c: Collector, *, caller: Caller) -> tuple[str, FleetState]:
    require(caller, "device")
    assert caller.device_id is not None
    state = c.fleet.state
    if state.halted:
        raise ServiceError(423, "the fleet is halted")
    if not c.fleet.healthy:
        raise ServiceError(503, "this collector has lost the fleet state; no lease")
    ok, why = _device_may_lease(c, caller.device_id)
    if not ok:
        raise ServiceError(403, why)
    c.count("leases_issued")
    return c.signer.issue(
        device=caller.device_id, generation=state.generation, ttl_s=c.lease_ttl
    ), state


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@functools.lru_cache(maxsize=16)
def _state_frame(event: str, generation: int) -> bytes:
    """``halt`` and ``resume`` are the same bytes for every stream: encoded once."""
    return _sse(event, {"generation": generation})


_WAITING: Final = b": waiting\n\n"


class LeaseSession:
    """One device's lease stream (server-sent events): a lease every TTL/3, ``halt`` and
    ``resume`` at once, notices about this device or its contributor.

    Renewals come from the fleet bus's renewal wheel, not a timer per stream. A renewal
    resends the device's lease of the current generation, re-signed only when the
    generation changed or the token is ``LEASE_RESIGN_SECONDS`` old: the agent times a
    lease from its arrival, so a fresh signature every few seconds would prove nothing
    more and cost a signature per device per renewal. The device's standing (revoked,
    consent) is read at connect, whenever a notice concerns it, after the bus missed
    notices, and every ``RECHECK_SECONDS`` as a safety net.
    """

    def __init__(self, c: Collector, *, caller: Caller) -> None:
        require(caller, "device")
        assert caller.device_id is not None and caller.pseudonym is not None
        self._c = c
        self.device_id = caller.device_id
        self._renew = c.lease_ttl / 3
        self.listener = c.fleet.listen(
            renew_every=self._renew, device=caller.device_id, pseudonym=caller.pseudonym
        )
        self._frame = b""
        self._frame_generation = -1
        self._signed_at = 0.0

    def close(self) -> None:
        self.listener.close()

    def _lease_frame(self, generation: int) -> bytes:
        now = time.monotonic()
        if generation != self._frame_generation or now - self._signed_at > LEASE_RESIGN_SECONDS:
            c = self._c
            token = c.signer.issue(device=self.device_id, generation=generation, ttl_s=c.lease_ttl)
            self._frame = _sse(
                "lease", {"lease": token, "generation": generation, "ttl_s": c.lease_ttl}
            )
            self._frame_generation, self._signed_at = generation, now
        return self._frame

    async def frames(self) -> AsyncIterator[bytes]:
        """The stream's frames until the device is revoked or :meth:`close` is called."""
        c, lst = self._c, self.listener
        # Spread the safety-net rechecks of streams that opened together.
        rechecks_every = max(1, round(RECHECK_SECONDS / self._renew))
        renewals = random.randrange(rechecks_every)
        try:
            checks = standing_checks(c)
            ok, why = await checks.check(self.device_id)
            state = c.fleet.state
            sent_halt = -1
            if state.halted:
                sent_halt = state.generation
                yield _state_frame("halt", state.generation)
            elif not ok:
                yield _sse("refused", {"reason": why})
            send_lease = True
            while not lst.closed:
                if send_lease:
                    if ok and c.fleet.may_issue():
                        c.count("leases_issued")
                        yield self._lease_frame(c.fleet.state.generation)
                    else:
                        yield _WAITING
                    send_lease = False
                await lst.wait()
                recheck = False
                for msg in lst.messages():
                    if isinstance(msg, FleetState):
                        if msg.halted and msg.generation > sent_halt:
                            sent_halt = msg.generation
                            yield _state_frame("halt", msg.generation)
                        elif not msg.halted:
                            yield _state_frame("resume", msg.generation)
                            send_lease = True  # a lease right away
                    elif msg.kind == "device-revoked":
                        yield _sse("device-revoked", {})
                        return
                    elif msg.kind == "consent-withdrawn":
                        ok = False
                        yield _sse("consent-withdrawn", {})
                    elif msg.kind == "manifest":
                        yield _sse("manifest", {"version": int(msg.subject)})
                        recheck = True
                if lst.take_renewal():
                    send_lease = True
                    renewals += 1
                    if renewals % rechecks_every == 0 or lst.recheck:
                        recheck = True
                if recheck:
                    lst.recheck = False
                    ok, why = await checks.check(self.device_id)
        finally:
            lst.close()


async def set_halted(c: Collector, *, caller: Caller, halted: bool, reason: str) -> FleetState:
    """The kill switch (steward only). A resume is audited before it takes effect (fail
    closed); a halt takes effect first and is audited right after: stopping never waits."""
    require(caller, "steward")
    now = c.clock()
    event: AuditEvent
    if halted:
        event = KillSwitchPulledEvent(
            t=now, principal=caller.name, role=caller.role, justification=reason
        )
    else:
        event = KillSwitchReleasedEvent(
            t=now, principal=caller.name, role=caller.role, justification=reason
        )
    # The audit append runs off the event loop: while it writes, the loop is pushing the
    # halt to thousands of streams.
    if halted:
        state = await c.fleet.set_halted(True, by=caller.name)
        await asyncio.to_thread(c.audit, event)
    else:
        await asyncio.to_thread(c.audit, event)
        state = await c.fleet.set_halted(False, by=caller.name)
    return state
