"""The audit log: append-only, hash-chained JSONL, fsynced, with signed checkpoints.

Each line is ``<hex sha256> <canonical JSON entry>\\n`` where the hash is
``sha256(previous hash ‖ entry bytes)``; the first entry chains from ``GENESIS``. Every
``checkpoint_every`` entries or ``checkpoint_seconds`` (whichever comes first, checked at the
next append) and on demand, a checkpoint ``{seq, head, t}`` signed with the
vault's Ed25519 audit key is appended to ``checkpoints.jsonl`` and handed to an anchor
callback (the vault keeps the latest one in its key store, outside the data home). Flipped
bytes, reordering and removal break the chain; truncation and a rewritten chain are caught
against the last checkpoint.

Appends use group commit: concurrent writers share one fdatasync, and no append returns
before its entry is on disk. Several processes may append: an flock orders them.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keystep.audit.events import AuditEvent, event_from_dict, format_time

GENESIS: Final = hashlib.sha256(b"keystep/audit/1").digest()
LOG_NAME: Final = "audit.jsonl"
CHECKPOINTS_NAME: Final = "checkpoints.jsonl"
CHECKPOINT_VERSION: Final = 1

Signer = Callable[[bytes], bytes]


class AuditLogError(OSError):
    """The log cannot be written (or read) safely. Callers must fail closed."""


@dataclass(frozen=True)
class Checkpoint:
    seq: int  # number of entries covered
    head: str  # hex hash of entry ``seq`` (the chain head at that point)
    t: str
    sig: str  # base64 Ed25519 signature over :meth:`message`

    def message(self) -> bytes:
        v = CHECKPOINT_VERSION
        return f"keystep/audit-checkpoint/{v}|{self.seq}|{self.head}|{self.t}".encode()

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": CHECKPOINT_VERSION,
                "seq": self.seq,
                "head": self.head,
                "t": self.t,
                "sig": self.sig,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        d = json.loads(text)
        if d.get("v") != CHECKPOINT_VERSION:
            raise ValueError(f"unknown checkpoint version {d.get('v')!r}")
        return cls(seq=int(d["seq"]), head=str(d["head"]), t=str(d["t"]), sig=str(d["sig"]))

    def signature_valid(self, public_key: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(
                base64.b64decode(self.sig), self.message()
            )
        except (InvalidSignature, ValueError):
            return False
        return True


def _encode(seq: int, event: AuditEvent) -> bytes:
    d = event.to_dict()
    d["seq"] = seq
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _tail_state(path: Path) -> tuple[int, bytes, int]:
    """(entries, head hash, byte length of the complete lines) of an existing log.

    A last line without its newline is a write torn by a crash: it was never acknowledged
    (appends return only after fdatasync), so it is cut off.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        pos, buf = size, b""
        while True:
            if pos == 0 and b"\n" not in buf:
                return 0, GENESIS, 0
            start = max(0, pos - (1 << 16))
            f.seek(start)
            buf = f.read(pos - start) + buf
            pos = start
            end = buf.rfind(b"\n")
            if end == -1:
                continue
            begin = buf.rfind(b"\n", 0, end) + 1
            if begin == 0 and pos > 0:
                continue  # the last complete line starts further back
            last = buf[begin:end]
            good_len = pos + end + 1
            break
    head_hex, _, entry = last.partition(b" ")
    try:
        seq = int(json.loads(entry)["seq"])
        head = bytes.fromhex(head_hex.decode())
    except (ValueError, KeyError) as exc:
        raise AuditLogError(f"the audit log's last entry is damaged: {exc}") from exc
    return seq, head, good_len


class AuditLog:
    """The writer. Several processes may hold one on the same log (the web service, the
    CLI, the recorder): each flush takes an exclusive ``flock`` and first catches up with
    entries other processes appended, so there is always exactly one chain."""

    def __init__(
        self,
        directory: Path,
        *,
        signer: Signer | None = None,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 300.0,
        on_checkpoint: Callable[[Checkpoint], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.directory = directory
        self._checkpoint_seconds = checkpoint_seconds
        self._last_checkpoint_at = time.monotonic()
        self.path = directory / LOG_NAME
        self.checkpoints_path = directory / CHECKPOINTS_NAME
        self._signer = signer
        self._checkpoint_every = checkpoint_every
        self._on_checkpoint = on_checkpoint
        self._clock = clock
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for p in (self.path, self.checkpoints_path):
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._lock = threading.Lock()  # guards the queue
        self._sync_lock = threading.Lock()  # one flusher per process (the group leader)
        self._queue: list[AuditEvent] = []
        self._queued = 0  # tickets handed out: the n-th event ever queued has ticket n
        self._flushed = 0  # tickets made durable
        self._seqs: dict[int, int] = {}  # ticket -> sequence number, until its caller reads it
        self._failed: BaseException | None = None
        self._count = 0
        self._head = GENESIS
        self._size = -1
        with self._file_lock():
            self._catch_up(repair=True)
        self._last_checkpoint = self._read_last_checkpoint_seq()

    def _file_lock(self) -> _FileLock:
        return _FileLock(self._fd)

    def _catch_up(self, *, repair: bool = False) -> None:
        """Under the file lock: learn the chain head if another process appended."""
        size = os.fstat(self._fd).st_size
        if size == self._size:
            return
        count, head, good_len = _tail_state(self.path)
        if good_len != size:
            if not repair:
                raise AuditLogError("the audit log ends in a torn entry written by another process")
            os.truncate(self.path, good_len)  # never acknowledged: see _tail_state
        self._count, self._head, self._size = count, head, good_len

    def _read_last_checkpoint_seq(self) -> int:
        cp = last_checkpoint(self.directory)
        return cp.seq if cp else 0

    @property
    def count(self) -> int:
        return self._count

    @property
    def head(self) -> str:
        return self._head.hex()

    def append(self, event: AuditEvent) -> int:
        """Append one entry; returns its sequence number once it is durable."""
        return self.append_many((event,))[-1]

    def append_many(self, events: Iterable[AuditEvent]) -> list[int]:
        """Append entries in order, durable together with a single fdatasync."""
        with self._lock:
            if self._failed is not None:
                raise AuditLogError("the audit log failed earlier; reopen it") from self._failed
            batch = list(events)
            first = self._queued + 1
            self._queue.extend(batch)
            self._queued += len(batch)
            last = self._queued
        if not batch:
            return []
        self._make_durable(last)
        with self._lock:
            return [self._seqs.pop(t) for t in range(first, last + 1)]

    def _make_durable(self, ticket: int) -> None:
        with self._sync_lock:
            if self._failed is not None:
                raise AuditLogError("the audit log cannot be written") from self._failed
            if self._flushed >= ticket:
                return  # another thread's flush already covered this entry
            with self._lock:
                events, self._queue = self._queue, []
                first_ticket = self._flushed + 1
            try:
                with self._file_lock():
                    self._catch_up()
                    seq, head, lines = self._count, self._head, []
                    for event in events:
                        seq += 1
                        body = _encode(seq, event)
                        head = hashlib.sha256(head + body).digest()
                        lines.append(head.hex().encode() + b" " + body + b"\n")
                    data = b"".join(lines)
                    view = memoryview(data)
                    while view:
                        n = os.write(self._fd, view)
                        view = view[n:]
                    os.fdatasync(self._fd)
                    self._count, self._head, self._size = seq, head, self._size + len(data)
                    due = (
                        seq - self._last_checkpoint >= self._checkpoint_every
                        or time.monotonic() - self._last_checkpoint_at >= self._checkpoint_seconds
                    )
                    if self._signer is not None and due:
                        self._write_checkpoint(seq, head)
            except OSError as exc:
                self._failed = exc
                raise AuditLogError(f"the audit log cannot be written: {exc}") from exc
            with self._lock:
                base = self._count - len(events)
                for i in range(len(events)):
                    self._seqs[first_ticket + i] = base + 1 + i
                self._flushed = first_ticket + len(events) - 1

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now (e.g. on close). None without a signer or entries."""
        with self._sync_lock:
            if self._signer is None or self._failed is not None:
                return None
            try:
                with self._file_lock():
                    self._catch_up()
                    if self._count == 0:
                        return None
                    latest = last_checkpoint(self.directory)
                    if latest is not None and latest.seq == self._count:
                        return latest
                    return self._write_checkpoint(self._count, self._head)
            except OSError as exc:
                self._failed = exc
                raise AuditLogError(f"the audit checkpoint cannot be written: {exc}") from exc

    def _write_checkpoint(self, seq: int, head: bytes) -> Checkpoint:
        """Under the file lock, so checkpoints are in chain order across processes."""
        assert self._signer is not None
        unsigned = Checkpoint(seq=seq, head=head.hex(), t=format_time(self._clock()), sig="")
        cp = Checkpoint(
            seq=seq,
            head=unsigned.head,
            t=unsigned.t,
            sig=base64.b64encode(self._signer(unsigned.message())).decode(),
        )
        fd = os.open(self.checkpoints_path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, cp.to_json().encode() + b"\n")
            os.fdatasync(fd)
        finally:
            os.close(fd)
        self._last_checkpoint = seq
        self._last_checkpoint_at = time.monotonic()
        if self._on_checkpoint is not None:
            self._on_checkpoint(cp)
        return cp

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def feed(self, pseudonym: str) -> list[AuditEvent]:
        return feed(self.directory, pseudonym)


class _FileLock:
    """An exclusive flock on the log file for the duration of a ``with`` block."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


def last_checkpoint(directory: Path) -> Checkpoint | None:
    path = directory / CHECKPOINTS_NAME
    if not path.exists():
        return None
    last: Checkpoint | None = None
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                try:
                    last = Checkpoint.from_json(line)
                except (ValueError, KeyError):
                    continue
    return last


def read_entries(directory: Path) -> Iterator[dict[str, Any]]:
    """Every entry as a dict (with ``seq``), in file order. No verification: see :func:`verify`."""
    with (directory / LOG_NAME).open("rb") as f:
        for line in f:
            _, _, body = line.rstrip(b"\n").partition(b" ")
            if body:
                yield json.loads(body)


def feed(directory: Path, pseudonym: str) -> list[AuditEvent]:
    """The contributor's "who accessed my data": every entry that concerns this pseudonym."""
    needle = pseudonym.encode()
    out: list[AuditEvent] = []
    with (directory / LOG_NAME).open("rb") as f:
        for line in f:
            if needle not in line:  # cheap prefilter; the decoded check below decides
                continue
            _, _, body = line.rstrip(b"\n").partition(b" ")
            event = event_from_dict(json.loads(body))
            if event.concerns(pseudonym):
                out.append(event)
    return out


@dataclass
class VerifyReport:
    entries: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(directory: Path, public_key: bytes, *, anchor: Checkpoint | None = None) -> VerifyReport:
    """Check the whole chain, every checkpoint's signature and position, and the anchor.

    ``anchor`` is the latest checkpoint as recorded elsewhere (the vault's key store): it
    catches a log and checkpoint file truncated together.
    """
    report = VerifyReport()
    checkpoints: list[Checkpoint] = []
    cp_path = directory / CHECKPOINTS_NAME
    if cp_path.exists():
        for i, line in enumerate(cp_path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                cp = Checkpoint.from_json(line)
            except (ValueError, KeyError):
                report.problems.append(f"checkpoint line {i} does not parse")
                continue
            if not cp.signature_valid(public_key):
                report.problems.append(f"checkpoint line {i} (entry {cp.seq}) has a bad signature")
                continue
            if checkpoints and cp.seq < checkpoints[-1].seq:
                report.problems.append(f"checkpoint line {i} goes backwards (entry {cp.seq})")
            checkpoints.append(cp)
    report.checkpoints = len(checkpoints)
    if anchor is not None:
        if not anchor.signature_valid(public_key):
            report.problems.append("the key store's checkpoint anchor has a bad signature")
        elif not any(c.seq == anchor.seq and c.head == anchor.head for c in checkpoints):
            report.problems.append(
                f"the checkpoint file lacks the key store's latest checkpoint (entry {anchor.seq})"
            )
    want = {c.seq: c.head for c in checkpoints}
    if anchor is not None:
        want.setdefault(anchor.seq, anchor.head)

    sha256 = hashlib.sha256
    head = GENESIS
    n = 0
    broken_at: int | None = None
    with (directory / LOG_NAME).open("rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        report.problems.append("the last entry is cut off (no final newline)")
    for line in data.split(b"\n"):
        if not line:
            continue
        n += 1
        if broken_at is not None:
            continue
        hex_hash = line[:64]
        body = line[65:]
        head = sha256(head + body).digest()
        if line[64:65] != b" " or head.hex().encode() != hex_hash:
            broken_at = n
            report.problems.append(f"the chain breaks at entry {n} (changed, removed or reordered)")
            continue
        expected = want.get(n)
        if expected is not None and expected != hex_hash.decode():
            broken_at = n
            report.problems.append(f"entry {n} does not match its signed checkpoint")
    report.entries = n
    top = max(want) if want else 0
    if n < top:
        report.problems.append(f"the log has {n} entries but a signed checkpoint covers {top}")
    return report
