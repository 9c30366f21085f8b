"""Fixtures that run every store test against each backend: SQLite and PostgreSQL
repositories, folder and S3 (moto in server mode on 127.0.0.1) blob stores."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import truncate

from keystep.store.base import Repository
from keystep.store.blobs import BlobStore, FolderBlobStore, S3BlobStore
from keystep.store.pg_admin import TempDatabase, temporary_database
from keystep.store.postgres import PostgresRepository
from keystep.store.segments import SegmentBlobStore
from keystep.store.sqlite import SqliteRepository

S3_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


@pytest.fixture(scope="session")
def pg_db() -> Iterator[TempDatabase]:
    with temporary_database() as db:
        yield db


@pytest.fixture(params=["sqlite", "postgres"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    r: Repository
    if request.param == "sqlite":
        r = SqliteRepository(tmp_path / "collector.sqlite")
    else:
        db: TempDatabase = request.getfixturevalue("pg_db")
        truncate(db)
        r = PostgresRepository(db.app_url, max_size=8)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def reopen(request: pytest.FixtureRequest, tmp_path: Path, repo: Repository):  # type: ignore[no-untyped-def]
    """A second, independent handle on the same store (another process would see this)."""
    opened: list[Repository] = []

    def _open() -> Repository:
        r: Repository
        if isinstance(repo, SqliteRepository):
            r = SqliteRepository(repo.path)
        else:
            assert isinstance(repo, PostgresRepository)
            r = PostgresRepository(repo.url, max_size=2)
        opened.append(r)
        return r

    yield _open
    for r in opened:
        r.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_store(endpoint: str, prefix: str = "blobs") -> S3BlobStore:
    import boto3

    bucket = f"ks-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=endpoint, **S3_CREDENTIALS)
    client.create_bucket(Bucket=bucket)
    return S3BlobStore(bucket, prefix, client=client)


@pytest.fixture(params=["folder", "segments", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    store: BlobStore
    if request.param == "folder":
        store = FolderBlobStore(tmp_path / "blobs")
    elif request.param == "segments":
        store = SegmentBlobStore(tmp_path / "segments")
    else:
        store = s3_store(request.getfixturevalue("s3_endpoint"))
    try:
        yield store
    finally:
        store.close()
