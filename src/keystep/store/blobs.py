"""Blob stores for sealed envelopes: a private folder or an S3-compatible bucket.

A blob store only ever holds ciphertext (v1 envelopes). ``put`` returns once the bytes are
durable — an acknowledgement to a device may follow it — and is idempotent: putting the
same bytes under the same key again is a no-op.
"""

from __future__ import annotations

import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

# Keys are relative paths of safe segments: no "..", no absolute paths, no odd bytes.
_KEY: Final = re.compile(r"^[A-Za-z0-9_\-.]+(/[A-Za-z0-9_\-.]+)*$")


class BlobError(OSError):
    """A blob store that cannot read or write, or a key that is not acceptable."""


class BlobNotFound(KeyError):
    pass


def check_key(key: str) -> str:
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise BlobError(f"unacceptable blob key {key!r}")
    return key


@dataclass(frozen=True, slots=True)
class BlobPut:
    """One blob to store: its key, its bytes and their SHA-256 digest."""

    key: str
    data: bytes
    sha256: bytes


class BlobStore(ABC):
    # True when put_many makes a whole group durable with one sync: a caller that gathers
    # the puts of many threads (keystep.store.writer) should then hand them over together.
    # False: each put waits on its own, so callers had better put from their own threads.
    SYNCS_GROUPS: ClassVar[bool] = False

    @abstractmethod
    def put(self, key: str, data: bytes, *, sha256: bytes | None = None) -> None:
        """Store durably; same key and same bytes again is a no-op. Different bytes under an
        existing key replace them (callers use content-derived keys so this never happens).

        ``sha256``: the data's SHA-256 digest when the caller has already computed it (a store
        that keeps digests then does not hash the bytes again)."""

    def put_many(self, puts: Sequence[BlobPut]) -> list[BaseException | None]:
        """:meth:`put` each, one outcome per item in order (None: durable). By default one
        after the other; a store with ``SYNCS_GROUPS`` makes them durable together."""
        out: list[BaseException | None] = []
        for p in puts:
            try:
                self.put(p.key, p.data, sha256=p.sha256)
            except Exception as exc:
                out.append(exc)
            else:
                out.append(None)
        return out

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Raise :class:`BlobNotFound` when absent."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Durably remove; False when it was not there."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix``, in lexical order."""

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to release
        pass


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new or removed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderBlobStore(BlobStore):
    """One file per key under ``root`` (directories 0700, files 0600)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _ensure_dirs(self, path: Path) -> None:
        """Create missing parents 0700 and make each new entry durable in its parent."""
        missing: list[Path] = []
        d = path.parent
        while d != self.root and not d.is_dir():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                continue
            os.chmod(d, 0o700)  # mkdir's mode passes through the umask
            fsync_dir(d.parent)

    def put(self, key: str, data: bytes, *, sha256: bytes | None = None) -> None:
        path = self._path(key)
        self._ensure_dirs(path)
        try:
            # A new key is written in place: its fsync also commits the new directory entry
            # to the journal, so the directory fsync after it costs almost nothing — one
            # journal commit per blob instead of the two a rename needs. A crash mid-write
            # leaves a torn file under a key no metadata row names yet; the retry's put
            # replaces it atomically below.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                return
            self._replace(path, data)
            return
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def _replace(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.root)
            for name in filenames:
                if name.startswith(".put-"):
                    continue  # an interrupted put: never a blob
                key = (rel / name).as_posix() if rel != Path(".") else name
                if key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)


class S3BlobStore(BlobStore):
    """Objects under ``prefix`` in ``bucket`` of an S3-compatible service.

    S3 acknowledges a PUT only once the object is durably stored, so ``put`` needs no
    fsync of its own; the content MD5 makes the service reject a corrupted upload.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        client: Any = None,
        **client_kwargs: Any,
    ) -> None:
        import boto3  # the agent never loads boto3: only the service opens an S3 store
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
            **client_kwargs,
        )

    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes, *, sha256: bytes | None = None) -> None:
        import base64
        import hashlib

        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._k(key),
                Body=data,
                ContentMD5=md5,
                ContentType="application/vnd.keystep.envelope",
            )
        except Exception as exc:
            raise BlobError(f"S3 put of {key} failed: {exc}") from exc

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            obj = self._client.get_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobNotFound(key) from None
            raise BlobError(f"S3 get of {key} failed: {exc}") from exc
        body: bytes = obj["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._k(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise BlobError(f"S3 head of {key} failed: {exc}") from exc
        return True

    def delete(self, key: str) -> bool:
        if not self.exists(key):
            return False
        self._client.delete_object(Bucket=self.bucket, Key=self._k(key))
        return True

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) :]

    def close(self) -> None:
        self._client.close()
