"""A lease stream's standing (revoked? consented?) is cheap to re-check: the checks of many
streams share one repository read, and the latest manifest is read again only when the
fleet bus says it changed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keystep.collector import service
from keystep.collector.credentials import ContributorTokens, StaffTokens
from keystep.collector.fleet import LocalFleetBus, Notice
from keystep.collector.leases import LeaseSigner
from keystep.store.base import ConsentRecord, DeviceRecord, ManifestRecord, Repository, Scope
from keystep.store.blobs import FolderBlobStore
from keystep.store.sqlite import SqliteRepository

T0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
M1 = ManifestRecord(1, "v: 1", "digest-1", T0)


class CountingRepository(SqliteRepository):
    """Counts the reads the standing checks make (a real SQLite store underneath)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.barred_calls = 0
        self.manifest_reads = 0

    def devices_barred(self, device_ids, *, manifest):  # type: ignore[no-untyped-def]
        self.barred_calls += 1
        return super().devices_barred(device_ids, manifest=manifest)

    def latest_manifest(self) -> ManifestRecord | None:
        self.manifest_reads += 1
        return super().latest_manifest()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[service.Collector]:
    repo = CountingRepository(tmp_path / "c.sqlite")
    repo.publish_manifest(M1, scope=Scope.steward())
    for i in range(200):
        who = f"p{i}"
        repo.add_device(
            DeviceRecord(f"d{i}", who, b"\x01" * 32, "h" * 64, T0), scope=Scope.collector()
        )
        if i % 2 == 0:  # every other contributor consented
            repo.record_consent(
                ConsentRecord(who, 1, "digest-1", T0), scope=Scope.of_contributor(who)
            )
    c = service.Collector(
        repo=repo,
        blobs=FolderBlobStore(tmp_path / "blobs"),
        fleet=LocalFleetBus(repo),
        signer=LeaseSigner.generate(),
        contributor_tokens=ContributorTokens(Ed25519PrivateKey.generate()),
        staff=StaffTokens([]),
    )
    try:
        yield c
    finally:
        repo.close()


def _repo(c: service.Collector) -> CountingRepository:
    assert isinstance(c.repo, CountingRepository)
    return c.repo


def test_the_checks_of_many_streams_share_a_few_reads(collector: service.Collector) -> None:
    async def run() -> list[tuple[bool, str]]:
        checks = service.standing_checks(collector)
        return await asyncio.gather(*(checks.check(f"d{i}") for i in range(200)))

    results = asyncio.run(run())
    assert results == [
        (True, "") if i % 2 == 0 else (False, "no consent to manifest v1") for i in range(200)
    ]
    # One read for the first check, one for all that queued behind it.
    assert _repo(collector).barred_calls <= 2
    assert service.standing_checks(collector).reads == _repo(collector).barred_calls


def test_the_latest_manifest_is_read_again_only_after_a_manifest_notice(
    collector: service.Collector,
) -> None:
    repo: Repository = collector.repo

    async def run() -> None:
        await collector.fleet.start()
        for _ in range(50):
            assert service.latest_manifest(collector) == M1
        assert _repo(collector).manifest_reads == 1
        m2 = ManifestRecord(2, "v: 2", "digest-2", T0)
        repo.publish_manifest(m2, scope=Scope.steward())
        await collector.fleet.publish(Notice("manifest", "2"))
        assert service.latest_manifest(collector) == m2
        assert _repo(collector).manifest_reads == 2
        # Nobody has consented to v2: every device is now barred.
        assert service._device_may_lease(collector, "d0") == (False, "no consent to manifest v2")
        await collector.fleet.close()

    asyncio.run(run())


def test_the_safety_net_recheck_runs_every_minute() -> None:
    # Cheap enough now (batched, manifest cached) to run every minute, not every 5.
    assert service.RECHECK_SECONDS <= 60
