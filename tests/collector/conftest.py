"""Collector fixtures: a real repository (SQLite and PostgreSQL), a blob folder, devices,
a published manifest and a consent, and a sealer that makes real v1 envelopes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from ingest_support import NOW, Device, World, raw

from keystep.model.manifest import default_manifest
from keystep.store.base import ConsentRecord, DeviceRecord, ManifestRecord, Repository, Scope
from keystep.store.blobs import FolderBlobStore
from keystep.store.pg_admin import TempDatabase, temporary_database
from keystep.store.postgres import PostgresRepository
from keystep.store.sqlite import SqliteRepository


@pytest.fixture(scope="session")
def pg_db() -> Iterator[TempDatabase]:
    with temporary_database() as db:
        yield db


def _truncate(db: TempDatabase) -> None:
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE keystep.batches, keystep.devices, keystep.enrollment_codes,"
            " keystep.consents, keystep.lineage, keystep.manifests"
        )


def open_repo(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Repository:
    if kind == "sqlite":
        return SqliteRepository(tmp_path / "collector.sqlite")
    db: TempDatabase = request.getfixturevalue("pg_db")
    _truncate(db)
    return PostgresRepository(db.app_url, max_size=16)


@pytest.fixture(params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    repo = open_repo(request.param, tmp_path, request)
    manifest = default_manifest()
    alice, bob = Device("dev-alice", "psAlice"), Device("dev-bob", "psBob")
    for d in (alice, bob):
        repo.add_device(
            DeviceRecord(d.device_id, d.contributor, raw(d.key), "h" * 64, NOW),
            scope=Scope.collector(),
        )
    repo.publish_manifest(
        ManifestRecord(manifest.version, manifest.to_yaml(), manifest.digest, NOW),
        scope=Scope.steward(),
    )
    for who in ("psAlice", "psBob"):
        repo.record_consent(
            ConsentRecord(who, manifest.version, manifest.digest, NOW),
            scope=Scope.of_contributor(who),
        )
    try:
        yield World(repo, FolderBlobStore(tmp_path / "blobs"), manifest, alice, bob)
    finally:
        repo.close()
