"""The embedded collector: the same ingest as the service, in-process, on the home's SQLite
database and blob folder; and the drain that moves sealed batches from the outbox into it.

On one machine the collector trusts the home it lives in: the device, the manifests consented
to and the consent state are mirrored from the home's files into the collector database
before each drain, so the checks of ``ingest_batch`` (device signature, consented manifest,
kinds) run unchanged. A withdrawal is mirrored too, after which batches still in the outbox
are refused and stay there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from keystep.audit.events import AuditEvent
from keystep.collector.ingest import Ack, Audit, IngestRejected, ingest_batch
from keystep.home import Home
from keystep.model.manifest import Manifest, ManifestError, load_manifest
from keystep.seal.device import load_device_key, raw_public_key
from keystep.store.base import (
    BatchRecord,
    Conflict,
    ConsentRecord,
    DeviceRecord,
    ManifestRecord,
    Scope,
)
from keystep.store.blobs import FolderBlobStore
from keystep.store.sqlite import SqliteRepository

LOCAL_CREDENTIAL = "embedded"  # the local device never presents a credential over a network


class OutboxLike(Protocol):
    def pending(self, limit: int | None = None) -> list[Any]: ...

    def acknowledge(self, batch_id: str) -> None: ...


@dataclass
class DrainReport:
    acknowledged: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # (batch_id, status, why)


class EmbeddedCollector:
    """``home.collector_db`` + ``home.blobs_dir`` behind :func:`ingest_batch`."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.repo = SqliteRepository(home.collector_db)
        self.blobs = FolderBlobStore(home.blobs_dir)
        self._manifests: dict[int, Manifest | None] = {}

    def close(self) -> None:
        self.repo.close()

    def __enter__(self) -> EmbeddedCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def manifest(self, version: int) -> Manifest | None:
        if version not in self._manifests:
            rec = self.repo.get_manifest(version)
            self._manifests[version] = load_manifest(rec.yaml_text) if rec else None
        return self._manifests[version]

    def ingest(self, envelope: bytes, *, device_id: str, audit: Audit, now: datetime) -> Ack:
        return ingest_batch(
            self.repo,
            self.blobs,
            envelope,
            device_id=device_id,
            manifest_lookup=self.manifest,
            audit=audit,
            now=now,
        )

    def sync_local_state(self, *, now: datetime) -> None:
        """Mirror the home's device, consented manifests and consent state into the database."""
        cfg = self.home.read_config()
        device_id, pseudonym = str(cfg["device_id"]), str(cfg["pseudonym"])
        if self.repo.get_device(device_id, scope=Scope.collector()) is None:
            self.repo.add_device(
                DeviceRecord(
                    device_id=device_id,
                    contributor=pseudonym,
                    public_key=raw_public_key(load_device_key(self.home.device_key_file)),
                    credential_hash=LOCAL_CREDENTIAL,
                    enrolled_at=now,
                ),
                scope=Scope.collector(),
            )
        copies = sorted(self.home.consent_dir.glob("manifest-v*.yaml"))
        for path in [self.home.manifest_file, *copies]:
            try:
                m = load_manifest(path.read_text("utf-8"))
            except (OSError, ManifestError):
                continue  # an unreadable manifest publishes nothing; its batches are refused
            try:
                self.repo.publish_manifest(
                    ManifestRecord(m.version, m.to_yaml(), m.digest, now), scope=Scope.steward()
                )
            except Conflict:
                continue
        scope = Scope.of_contributor(pseudonym)
        state = _consent_state(self.home)
        version, digest = state.get("manifest_version"), state.get("manifest_digest")
        if state.get("state") == "given" and isinstance(version, int) and digest:
            current = self.repo.active_consent(pseudonym, version, scope=scope)
            if current is None or current.manifest_digest != digest:
                at = datetime.fromtimestamp(float(state.get("at") or now.timestamp()), UTC)
                self.repo.record_consent(
                    ConsentRecord(pseudonym, version, str(digest), at), scope=scope
                )
        else:
            self.repo.withdraw_consent(pseudonym, at=now, scope=scope)

    def delete_batches(self, batch_ids: Iterable[str]) -> list[BatchRecord]:
        """``forget`` and ``erase``: the blob goes first, so a crash leaves no ciphertext
        behind a deleted row (at worst a row whose blob is already gone)."""
        pseudonym = str(self.home.read_config()["pseudonym"])
        scope = Scope.of_contributor(pseudonym)
        ids = list(batch_ids)
        doomed = [r for bid in ids if (r := self.repo.get_batch(bid, scope=scope)) is not None]
        for r in doomed:
            self.blobs.delete(r.blob_key)
        return self.repo.delete_batches([r.batch_id for r in doomed], scope=scope)


def _consent_state(home: Home) -> dict[str, Any]:
    try:
        raw: dict[str, Any] = json.loads(home.consent_file.read_text("utf-8"))
    except FileNotFoundError:
        return {"state": "none"}
    return raw


def vault_audit(home: Home) -> tuple[Audit, Callable[[], None]]:
    """An audit callable that opens the home's vault on first use, and its closer."""
    opened: list[Any] = []

    def audit(event: AuditEvent) -> None:
        if not opened:
            from keystep.vault import open_local_vault

            opened.append(open_local_vault(home.vault_dir))
        opened[0].record(event)

    def close() -> None:
        for v in opened:
            closer = getattr(v, "close", None)
            if closer is not None:
                closer()

    return audit, close


@contextmanager
def _default_outbox(home: Home) -> Iterator[OutboxLike]:
    from keystep.outbox import Outbox

    box = Outbox(home.outbox_db)
    try:
        yield box
    finally:
        box.close()


def drain_outbox(
    home: Home,
    *,
    outbox: OutboxLike | None = None,
    audit: Audit | None = None,
    now: Callable[[], datetime] | None = None,
    limit: int | None = None,
) -> DrainReport:
    """Ingest every pending outbox batch; acknowledge each one only after its ack.

    A refused batch stays in the outbox (the report says why), so nothing is lost to a
    transient refusal and a permanent one stays visible to ``keystep status``.
    """
    clock = now or (lambda: datetime.now(UTC))
    report = DrainReport()
    own_audit: Callable[[], None] | None = None
    if audit is None:
        audit, own_audit = vault_audit(home)
    device_id = str(home.read_config()["device_id"])
    try:
        with EmbeddedCollector(home) as collector, _outbox_of(home, outbox) as box:
            collector.sync_local_state(now=clock())
            for item in box.pending(limit):
                try:
                    ack = collector.ingest(
                        bytes(item.envelope), device_id=device_id, audit=audit, now=clock()
                    )
                except IngestRejected as exc:
                    report.rejected.append((item.batch_id, exc.status, exc.reason))
                    continue
                box.acknowledge(item.batch_id)
                report.acknowledged.append(ack.batch_id)
                if ack.duplicate:
                    report.duplicates.append(ack.batch_id)
    finally:
        if own_audit is not None:
            own_audit()
    return report


@contextmanager
def _outbox_of(home: Home, outbox: OutboxLike | None) -> Iterator[OutboxLike]:
    if outbox is not None:
        yield outbox
    else:
        with _default_outbox(home) as box:
            yield box


def delete_batches(home: Home, batch_ids: Iterable[str]) -> list[BatchRecord]:
    """Remove these batches (blob and row) from the embedded collector; for forget and erase."""
    with EmbeddedCollector(home) as collector:
        return collector.delete_batches(batch_ids)
