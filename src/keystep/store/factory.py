"""Open a repository or a blob store from the strings users pass (``--db``, ``--blobs``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from keystep.store.base import Repository, RepositoryError
from keystep.store.blobs import BlobError, BlobStore, FolderBlobStore


def open_repository(url: str) -> Repository:
    """``sqlite:////abs/path.sqlite`` (or a plain path) or ``postgresql://user@host/db``."""
    if url.startswith(("postgresql://", "postgres://")):
        from keystep.store.postgres import PostgresRepository  # psycopg: service only

        return PostgresRepository(url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]  # SQLAlchemy's form: four slashes for an absolute path
        from keystep.store.sqlite import SqliteRepository

        return SqliteRepository(Path(path))
    if "://" in url:
        raise RepositoryError(f"unsupported database URL scheme in {url.split('://')[0]}://…")
    from keystep.store.sqlite import SqliteRepository

    return SqliteRepository(Path(url))


def open_blobs(spec: str | Path) -> BlobStore:
    """A folder path (one file per blob), ``segments:/path`` (blobs appended to segment files
    with one fsync per group of concurrent uploads: the collector's fast path), or
    ``s3://bucket/prefix`` (``?endpoint=http://127.0.0.1:9000`` for an S3-compatible service;
    credentials come from the usual AWS environment)."""
    text = str(spec)
    if text.startswith("segments:"):
        from keystep.store.segments import SegmentBlobStore

        return SegmentBlobStore(Path(text[len("segments:") :]))
    if text.startswith("s3://"):
        parts = urlsplit(text)
        if not parts.netloc:
            raise BlobError("s3:// spec names no bucket")
        endpoint = parse_qs(parts.query).get("endpoint", [None])[0]
        from keystep.store.blobs import S3BlobStore

        return S3BlobStore(parts.netloc, parts.path.strip("/"), endpoint_url=endpoint)
    if "://" in text:
        raise BlobError(f"unsupported blob store {text.split('://')[0]}://…")
    return FolderBlobStore(Path(text))
