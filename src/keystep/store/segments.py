"""A blob store that appends blobs to segment files and makes each group durable with one fsync.

One file per blob costs a file fsync and a directory fsync (two journal commits) per batch;
here concurrent ``put`` calls queue, and whichever thread takes the write lock appends every
queued blob to the active segment in one write and ``fdatasync``\\ s once for all of them (group
commit). No ``put`` returns before the sync that covers its bytes, and a key becomes visible
(``get``, ``exists``, ``iter_keys``) only then.

Segment format (version 1, ``SEGMENT_MAGIC``): an 8-byte file header, then records::

    b"KSR1" | state (b"L" live, b"D" deleted) | u16 key length | u64 data length
            | 32-byte SHA-256 of the data | key (UTF-8) | data

Records are self-describing, so the index (key -> segment, offset, length, sha256) is rebuilt
by scanning the record headers when the store opens. A crash can leave a torn tail only
after the last completed sync — bytes no ``put`` acknowledged — so the active (last)
segment's records are verified against their SHA-256 on open and the file is cut at the
first bad one. Earlier segments were synced before the next was started.

``delete`` destroys the bytes, it does not just forget them: it marks the record deleted and
syncs, then overwrites key, digest and data with zeros in place and syncs again (the mark
goes first so a crash between the two never leaves a live record with torn data). A segment
other than the active one whose records are all deleted is unlinked. Space of deleted
records inside a segment that still holds live ones is not reclaimed (no compaction yet).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from keystep.store.blobs import (
    BlobError,
    BlobNotFound,
    BlobPut,
    BlobStore,
    check_key,
    fsync_dir,
)
from keystep.store.group import GroupCommit

SEGMENT_MAGIC: Final = b"KSSEG1\n\x00"
_RECORD: Final = struct.Struct(">4scHQ32s")
_RECORD_MAGIC: Final = b"KSR1"
_LIVE: Final = b"L"
_DELETED: Final = b"D"
_STATE_AT: Final = 4  # offset of the state byte inside a record
_DIGEST_AT: Final = 4 + 1 + 2 + 8
_NAME: Final = re.compile(r"^seg-(\d{8})\.kss$")
DEFAULT_SEGMENT_BYTES: Final = 256 * 1024 * 1024
_ZEROS: Final = bytes(1024 * 1024)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a live blob's record sits: ``offset`` is the record's start, ``data_at`` its data."""

    segment: int
    offset: int
    data_at: int
    length: int
    sha256: bytes


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


_IOV_MAX: Final = 1024  # Linux's limit on buffers per writev


def _pwritev_all(fd: int, parts: Sequence[bytes], offset: int) -> None:
    """Write ``parts`` back to back from ``offset``: the blobs go from the request's buffers
    to the kernel without first being copied into one."""
    views = [memoryview(p) for p in parts if p]
    while views:
        n = os.pwritev(fd, views[:_IOV_MAX], offset)
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


class SegmentBlobStore(BlobStore):
    """Blobs appended to ``root/seg-NNNNNNNN.kss`` (directory 0700, files 0600)."""

    SYNCS_GROUPS = True

    def __init__(self, root: Path | str, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        self.segment_bytes = segment_bytes
        self._index: dict[str, Location] = {}
        self._live: dict[int, int] = {}  # segment -> live records, to unlink dead segments
        self._fds: dict[int, int] = {}
        self._write_lock = threading.Lock()
        self._fd_lock = threading.Lock()
        self._group: GroupCommit[BlobPut, None] = GroupCommit(self._commit)
        self._closed = False
        segments = sorted(
            int(m.group(1)) for p in self.root.iterdir() if (m := _NAME.match(p.name))
        )
        for n in segments:
            self._scan(n, last=n == segments[-1])
        self._active = segments[-1] if segments else 0
        self._size = 0
        if segments:
            self._size = os.fstat(self._fd(self._active)).st_size
        else:
            self._start_segment(1)

    # -- plumbing --------------------------------------------------------------------------

    def _path(self, n: int) -> Path:
        return self.root / f"seg-{n:08d}.kss"

    def _fd(self, n: int) -> int:
        with self._fd_lock:
            fd = self._fds.get(n)
            if fd is None:
                fd = os.open(self._path(n), os.O_RDWR | os.O_CLOEXEC)
                self._fds[n] = fd
            return fd

    def _reader_fd(self, n: int) -> int:
        """A private duplicate: a segment unlinked meanwhile stays readable (as zeros)."""
        with self._fd_lock:
            fd = self._fds.get(n)
            if fd is None:
                raise BlobError(f"segment {n} is gone")
            return os.dup(fd)

    def _start_segment(self, n: int) -> None:
        """Create segment ``n`` durably (file and directory entry) and make it the active one."""
        fd = os.open(self._path(n), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with self._fd_lock:
            self._fds[n] = fd
        _pwrite_all(fd, SEGMENT_MAGIC, 0)
        os.fsync(fd)
        fsync_dir(self.root)
        self._active, self._size = n, len(SEGMENT_MAGIC)
        self._live.setdefault(n, 0)

    def _scan(self, n: int, *, last: bool) -> None:
        fd = self._fd(n)
        size = os.fstat(fd).st_size
        if os.pread(fd, len(SEGMENT_MAGIC), 0) != SEGMENT_MAGIC:
            raise BlobError(f"{self._path(n)} is not a keystep segment (version 1)")
        self._live.setdefault(n, 0)
        pos = len(SEGMENT_MAGIC)
        while pos < size:
            loc = self._read_record(fd, n, pos, size, verify=last)
            if loc is None:
                if not last:
                    raise BlobError(f"{self._path(n)} is damaged at offset {pos}")
                # Past the last completed sync: nothing here was ever acknowledged.
                os.ftruncate(fd, pos)
                os.fsync(fd)
                return
            key, location, live = loc
            if live:
                older = self._index.get(key)
                self._index[key] = location
                self._live[n] += 1
                if older is not None:  # a replacement interrupted before the old one went
                    self._destroy(older)
            pos = location.data_at + location.length

    def _read_record(
        self, fd: int, n: int, pos: int, size: int, *, verify: bool
    ) -> tuple[str, Location, bool] | None:
        head = os.pread(fd, _RECORD.size, pos)
        if len(head) < _RECORD.size:
            return None
        magic, state, klen, dlen, digest = _RECORD.unpack(head)
        data_at = pos + _RECORD.size + klen
        if magic != _RECORD_MAGIC or state not in (_LIVE, _DELETED) or data_at + dlen > size:
            return None
        location = Location(n, pos, data_at, dlen, digest)
        if state == _DELETED:
            return "", location, False
        try:
            key = os.pread(fd, klen, pos + _RECORD.size).decode()
            check_key(key)
        except (UnicodeDecodeError, BlobError):
            return None
        if verify and hashlib.sha256(os.pread(fd, dlen, data_at)).digest() != digest:
            return None
        return key, location, True

    def _destroy(self, loc: Location) -> None:
        """Mark the record deleted, sync, overwrite key, digest and data with zeros, sync."""
        fd = self._fd(loc.segment)
        _pwrite_all(fd, _DELETED, loc.offset + _STATE_AT)
        os.fdatasync(fd)
        start, end = loc.offset + _DIGEST_AT, loc.data_at + loc.length
        while start < end:
            chunk = min(end - start, len(_ZEROS))
            _pwrite_all(fd, memoryview(_ZEROS)[:chunk], start)
            start += chunk
        os.fdatasync(fd)
        self._live[loc.segment] -= 1
        if self._live[loc.segment] == 0 and loc.segment != self._active:
            with self._fd_lock:
                os.close(self._fds.pop(loc.segment))
            self._path(loc.segment).unlink()
            fsync_dir(self.root)
            del self._live[loc.segment]

    # -- group commit ----------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, sha256: bytes | None = None) -> None:
        check_key(key)
        digest = sha256 if sha256 is not None else hashlib.sha256(data).digest()
        known = self._index.get(key)
        if known is not None and known.sha256 == digest and known.length == len(data):
            return  # already durable: a put becomes visible only after its sync
        self._group(BlobPut(key, data if type(data) is bytes else bytes(data), digest))

    def put_many(self, puts: Sequence[BlobPut]) -> list[BaseException | None]:
        """One write and one ``fdatasync`` for all of them, in the calling thread (the caller
        gathered them: they do not queue behind the store's own group commit)."""
        out: list[BaseException | None] = []
        todo: list[BlobPut] = []
        for p in puts:
            try:
                check_key(p.key)
            except BlobError as exc:
                out.append(exc)
                continue
            out.append(None)
            todo.append(p if type(p.data) is bytes else BlobPut(p.key, bytes(p.data), p.sha256))
        if todo:
            try:
                self._commit(todo)
            except BaseException as exc:
                return [exc if o is None else o for o in out]
        return out

    def _commit(self, group: Sequence[BlobPut]) -> list[None]:
        """Append every record of the group in one write, then one ``fdatasync``."""
        with self._write_lock:
            if self._closed:
                raise BlobError("the segment store is closed")
            try:
                self._append(group)
            except OSError as exc:
                raise BlobError(f"put failed: {exc}") from exc
        return [None] * len(group)

    def _append(self, group: Sequence[BlobPut]) -> None:
        if self._size >= self.segment_bytes:
            self._start_segment(self._active + 1)
        todo: dict[str, BlobPut] = {}
        for item in group:
            known = self._index.get(item.key)
            if known is not None and known.sha256 == item.sha256:
                continue
            todo[item.key] = item  # the last of one key's puts in a group wins
        fd, start = self._fd(self._active), self._size
        parts: list[bytes] = []
        placed: list[tuple[str, Location]] = []
        pos = start
        for item in todo.values():
            kb = item.key.encode()
            parts += [_RECORD.pack(_RECORD_MAGIC, _LIVE, len(kb), len(item.data), item.sha256)]
            parts += [kb, item.data]
            data_at = pos + _RECORD.size + len(kb)
            placed.append(
                (item.key, Location(self._active, pos, data_at, len(item.data), item.sha256))
            )
            pos = data_at + len(item.data)
        if not placed:
            return
        try:
            _pwritev_all(fd, parts, start)
            os.fdatasync(fd)
        except BaseException:
            # Nothing of this group was acknowledged; do not leave half of it behind.
            os.ftruncate(fd, start)
            raise
        self._size = pos
        for key, loc in placed:
            older = self._index.get(key)
            self._index[key] = loc
            self._live[loc.segment] = self._live.get(loc.segment, 0) + 1
            if older is not None:
                self._destroy(older)

    # -- reads and deletes -----------------------------------------------------------------

    def get(self, key: str) -> bytes:
        check_key(key)
        loc = self._index.get(key)
        if loc is None:
            raise BlobNotFound(key)
        try:
            fd = self._reader_fd(loc.segment)
        except BlobError:
            fd = -1
        if fd < 0:
            data = b""
        else:
            try:
                data = os.pread(fd, loc.length, loc.data_at)
            finally:
                os.close(fd)
        if len(data) != loc.length or hashlib.sha256(data).digest() != loc.sha256:
            if self._index.get(key) is not loc:  # deleted or replaced while we read
                return self.get(key)
            raise BlobError(f"blob {key} does not match its digest (segment {loc.segment})")
        return data

    def delete(self, key: str) -> bool:
        check_key(key)
        with self._write_lock:
            loc = self._index.pop(key, None)
            if loc is None:
                return False
            self._destroy(loc)
            return True

    def exists(self, key: str) -> bool:
        return check_key(key) in self._index

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        yield from sorted(k for k in list(self._index) if k.startswith(prefix))

    def locate(self, key: str) -> Location | None:
        """Where a blob's bytes are (for audits and tests); None when absent."""
        return self._index.get(key)

    def close(self) -> None:
        with self._write_lock, self._fd_lock:
            self._closed = True
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


class SegmentDamaged(BlobError):
    """A record that does not parse: a torn tail (last segment) or damage (any other)."""

    def __init__(self, path: Path, offset: int) -> None:
        super().__init__(f"{path} has no valid record at offset {offset}")
        self.offset = offset


def segment_number(path: Path) -> int | None:
    """``seg-00000012.kss`` → 12; None for any other name."""
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else None


def read_segment(path: Path) -> Iterator[tuple[str, bytes]]:
    """The live blobs of one segment file, ``(key, data)`` in file order, read-only: for a
    scanner, which must repair nothing (opening a :class:`SegmentBlobStore` cuts a torn
    tail). Deleted records are skipped. Raises :class:`BlobError` when the file is not a
    version-1 segment and :class:`SegmentDamaged` at the first record that does not parse."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if os.pread(fd, len(SEGMENT_MAGIC), 0) != SEGMENT_MAGIC:
            raise BlobError(f"{path} is not a keystep segment (version 1)")
        pos = len(SEGMENT_MAGIC)
        while pos < size:
            head = os.pread(fd, _RECORD.size, pos)
            if len(head) < _RECORD.size:
                raise SegmentDamaged(path, pos)
            magic, state, klen, dlen, _digest = _RECORD.unpack(head)
            data_at = pos + _RECORD.size + klen
            if magic != _RECORD_MAGIC or state not in (_LIVE, _DELETED) or data_at + dlen > size:
                raise SegmentDamaged(path, pos)
            if state == _LIVE:
                try:
                    key = os.pread(fd, klen, pos + _RECORD.size).decode()
                except UnicodeDecodeError:
                    raise SegmentDamaged(path, pos) from None
                yield key, os.pread(fd, dlen, data_at)
            pos = data_at + dlen
    finally:
        os.close(fd)
