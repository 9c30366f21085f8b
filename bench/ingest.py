"""Ingest throughput of one collector process, next to the disk's own fsync'd write speed.

In-process: one process calls ``keystep.collector.ingest.ingest_batch`` from a pool of
threads (the storage path an upload ends in). HTTP (``--http``, on by default): one real
``keystep serve`` process under uvicorn, devices enrolled with real credentials, and
client processes posting ``/v1/batches`` over keep-alive connections on loopback (the whole
path: authentication, body read, checks, durable store, ack). Every
batch is a real sealed v1 envelope from an enrolled device, fully checked (signature,
consent, manifest kinds), its blob fsync'd (file and directory) and its metadata row
committed (SQLite ``synchronous=FULL``; PostgreSQL ``synchronous_commit`` as configured)
before the call returns — the durability an acknowledgement promises. Group commit
(``keystep.store.writer.BatchWriter``: the uploads that queue while a group is stored share
the next group's blob sync and then its one transaction) lets concurrent acks share fsyncs
without any ack preceding one.

    .venv/bin/python bench/ingest.py [--seconds 8] [--threads 64] [--dir /path/on/the/disk]
        [--no-http] [--http-clients 2] [--sizes 16,256] [--no-sqlite] [--no-postgres]

Prints one Markdown table. Targets (issue 6): >= 50 % of the disk's speed at 256 KB;
>= 1,000 batches/s at 16 KB.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uuid6
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keystep.collector.ingest import ingest_batch
from keystep.model.manifest import default_manifest
from keystep.seal.envelope import parse_envelope, seal_batch, verify_signature
from keystep.store.base import ConsentRecord, DeviceRecord, ManifestRecord, Repository, Scope
from keystep.store.blobs import BlobStore, FolderBlobStore
from keystep.store.segments import SegmentBlobStore
from keystep.store.writer import BatchWriter

MB = 1024 * 1024


@dataclass
class Result:
    label: str
    size: int
    batches: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.batches / self.seconds

    @property
    def mb_s(self) -> float:
        return self.batches * self.size / MB / self.seconds


def disk_speed(directory: Path, total_mb: int = 512) -> float:
    """Sequential write of ``total_mb`` in 1 MiB writes, then fsync: MB/s."""
    path = directory / "disk-speed.bin"
    chunk = os.urandom(MB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.perf_counter()
        for _ in range(total_mb):
            os.write(fd, chunk)
        os.fsync(fd)
        return total_mb / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()


def checks_only(size: int, seconds: float, threads: int = 1) -> tuple[int, float, int]:
    """What every upload must cost before anything is stored: parse the envelope, verify the
    device's Ed25519 signature (over the whole envelope, DESIGN.md envelope v1) and take its
    SHA-256, in ``threads`` threads (both checks release the interpreter lock, so threads
    use every core). The ceiling of one collector process on this CPU, whatever the store,
    before any HTTP and with no client on the machine."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    ((_, envelope),) = _seal_for([("ceiling", "ps-ceiling", "-", key)], size, 1)
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def work(i: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            verify_signature(parse_envelope(envelope), public)
            hashlib.sha256(envelope).digest()
            n += 1
        counts[i] = n

    t0 = time.perf_counter()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts), time.perf_counter() - t0, len(envelope)


def make_envelopes(
    repo: Repository, size: int, count: int, devices: int = 16
) -> tuple[list[tuple[str, bytes]], Callable[[int], object]]:
    """Enroll ``devices`` devices (one contributor each, consented) and seal ``count`` batches."""
    manifest = default_manifest()
    now = datetime.now(UTC)
    repo.publish_manifest(
        ManifestRecord(manifest.version, manifest.to_yaml(), manifest.digest, now),
        scope=Scope.steward(),
    )
    keys = []
    run = uuid6.uuid7().hex[:8]
    for i in range(devices):
        key = Ed25519PrivateKey.generate()
        dev, who = f"bench-{run}-{i}", f"ps-{run}-{i}"
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        repo.add_device(DeviceRecord(dev, who, public, "-", now), scope=Scope.collector())
        repo.record_consent(
            ConsentRecord(who, manifest.version, manifest.digest, now),
            scope=Scope.of_contributor(who),
        )
        keys.append((dev, who, key))
    # Random content does not compress, so the envelope is about the content's size (plus
    # Padmé padding of at most ~12 %; the table reports the real mean size).
    out = _seal_for([(dev, who, dev, key) for dev, who, key in keys], size, count)

    def lookup(version: int) -> object:
        return manifest if version == manifest.version else None

    return out, lookup


def run_ingest(
    repo: Repository, blobs: BlobStore, size: int, seconds: float, threads: int
) -> tuple[int, float, int]:
    """Ingest for about ``seconds``; returns (batches, elapsed, mean envelope size)."""
    # Enough envelopes for the time budget at a generous rate; sealing is not timed.
    count = max(threads * 8, int(seconds * (3000 if size <= 64 * 1024 else 1000)))
    envelopes, lookup = make_envelopes(repo, size, count)
    mean = sum(len(e) for _, e in envelopes) // len(envelopes)
    nxt = 0
    lock = threading.Lock()
    done = 0
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds
    writer = BatchWriter(repo, blobs)  # shared, as one collector process shares it

    def worker() -> None:
        nonlocal nxt, done
        while time.perf_counter() < deadline:
            with lock:
                if nxt >= len(envelopes):
                    return
                dev, env = envelopes[nxt]
                nxt += 1
            try:
                ingest_batch(
                    repo,
                    blobs,
                    env,
                    device_id=dev,
                    manifest_lookup=lookup,  # type: ignore[arg-type]
                    audit=lambda e: None,
                    now=datetime.now(UTC),
                    writer=writer,
                )
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                done += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    t0, cpu0 = time.perf_counter(), time.process_time()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    run_ingest.cpu_per_batch = (time.process_time() - cpu0) / max(done, 1)  # type: ignore[attr-defined]
    if errors:
        raise errors[0]
    return done, elapsed, mean


def _enroll_direct(
    repo: Repository, run: str, devices: int
) -> list[tuple[str, str, str, Ed25519PrivateKey]]:
    """Devices with real credentials (only their hashes stored), each with a consenting
    contributor: what enrollment leaves behind, without a vault in the loop."""
    from keystep.collector.credentials import new_device_credential

    manifest = default_manifest()
    now = datetime.now(UTC)
    out = []
    for i in range(devices):
        key = Ed25519PrivateKey.generate()
        dev, who = f"http-{run}-{i}", f"ps-{run}-{i}"
        credential, digest = new_device_credential(dev)
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        repo.add_device(DeviceRecord(dev, who, public, digest, now), scope=Scope.collector())
        repo.record_consent(
            ConsentRecord(who, manifest.version, manifest.digest, now),
            scope=Scope.of_contributor(who),
        )
        out.append((dev, who, credential, key))
    return out


def _seal_for(
    devs: list[tuple[str, str, str, Ed25519PrivateKey]], size: int, count: int
) -> list[tuple[str, bytes]]:
    """``count`` envelopes round-robin over ``devs``: (credential, envelope)."""
    manifest = default_manifest()
    now = datetime.now(UTC)
    vault = (
        X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    content = os.urandom(int(size * 0.94))
    out = []
    for n in range(count):
        dev, who, credential, key = devs[n % len(devs)]
        env = seal_batch(
            content,
            batch_id=str(uuid6.uuid7()),
            device=dev,
            seq=n // len(devs) + 1,
            contributor=who,
            period=now.strftime("%Y-%m"),
            t_hour=now.strftime("%Y-%m-%dT%H:00:00Z"),
            manifest_version=manifest.version,
            redaction_version=manifest.redaction_version,
            kinds=("key.down", "pointer.move", "screen.frame"),
            key_id=f"{who}/{now:%Y-%m}",
            recipient=vault,
            device_key=key,
            level=1,
        )
        out.append((credential, env))
    return out


def _post(sock: Any, request: bytes) -> tuple[int, bytes]:
    """One request on a keep-alive HTTP/1.1 connection; (status, body) of the response."""
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the collector closed the connection")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the collector closed the connection")
        rest += chunk
    return status, rest[:length]


def _client_process(
    url: str, work: list[tuple[str, bytes]], threads: int, seconds: float, conn: Any
) -> None:
    """One client process: ``threads`` keep-alive connections posting its share of the
    envelopes until they run out or ``seconds`` pass; sends (acks, errors) back.

    The load generator is a bare HTTP/1.1 client over a socket (each request built up front)
    so that it takes as little as possible of the two CPUs it shares with the collector; the
    collector still reads, authenticates, checks and stores every byte of every request."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    requests = [
        (
            f"POST /v1/batches HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {credential}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {len(env)}\r\n\r\n"
        ).encode()
        + env
        for credential, env in work
    ]
    nxt = 0
    lock = threading.Lock()
    acks = 0
    errors: list[str] = []
    start, cpu0 = time.time(), time.process_time()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal nxt, acks
        with socket.create_connection((host, port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while time.perf_counter() < deadline:
                with lock:
                    if nxt >= len(requests):
                        return
                    request = requests[nxt]
                    nxt += 1
                status, body = _post(sock, request)
                with lock:
                    if status == 200:
                        acks += 1
                    else:
                        errors.append(f"{status}: {body[:200]!r}")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    conn.send((acks, errors[:3], start, time.time(), time.process_time() - cpu0))
    conn.close()


def run_http(
    db_url: str,
    open_repo: Callable[[], Repository],
    base: Path,
    blobs: str,
    size: int,
    seconds: float,
    threads: int,
    clients: int,
) -> tuple[int, float, int, float]:
    """A real ``keystep serve`` on ``db_url``; ``clients`` processes of ``threads / clients``
    connections each. Returns (acks, elapsed, mean envelope size, server CPU ms per ack)."""
    import multiprocessing

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "web"))
    from harness import CollectorProc

    class BenchCollector(CollectorProc):  # type: ignore[misc]
        """``keystep serve`` as the tests start it, on the blob store of this run."""

        def _spawn(self, log: Any, tokens: Path, vault: Path, state: Path, env: Any) -> Any:
            import subprocess

            return subprocess.Popen(
                [sys.executable, "-m", "keystep.cli.main", "serve", "--db", self.db,
                 "--blobs", blobs, "--vault", str(vault), "--state", str(state),
                 "--tokens", str(tokens), "--max-batch-bytes", str(self.max_batch_bytes),
                 "--port", str(self.port), "--home", str(self.root / "home")],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip

    server = BenchCollector(db=db_url, root=base / "http", max_batch_bytes=64 * MB)
    server.start()
    try:
        repo = open_repo()
        try:
            devs = _enroll_direct(repo, uuid6.uuid7().hex[:8], 16)
        finally:
            repo.close()
        count = max(threads * 8, int(seconds * (3000 if size <= 64 * 1024 else 1000)))
        work = _seal_for(devs, size, count)
        mean = sum(len(e) for _, e in work) // len(work)
        ctx = multiprocessing.get_context("fork")
        per = max(1, threads // clients)
        procs, pipes = [], []
        assert server.proc is not None
        cpu0 = _cpu_seconds(server.proc.pid)
        for i in range(clients):
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=_client_process, args=(server.url, work[i::clients], per, seconds, child)
            )
            p.start()
            procs.append(p)
            pipes.append(parent)
        results = [pipe.recv() for pipe in pipes]
        for p in procs:
            p.join()
        cpu = _cpu_seconds(server.proc.pid) - cpu0
    finally:
        server.stop()
    acks = sum(r[0] for r in results)
    errors = [e for r in results for e in r[1]]
    if errors:
        raise RuntimeError(f"uploads refused: {errors}")
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    run_http.client_cpu_per_batch = sum(r[4] for r in results) / max(acks, 1)  # type: ignore[attr-defined]
    return acks, elapsed, mean, cpu / max(acks, 1)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=None, help="where blobs and SQLite go")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--sizes", default="16,256", help="batch sizes in KB, comma-separated (default 16,256)"
    )
    parser.add_argument("--no-http", action="store_true", help="in-process rows only")
    parser.add_argument("--no-inprocess", action="store_true", help="HTTP rows only")
    parser.add_argument(
        "--http-clients", type=int, default=2, help="client processes (threads split)"
    )
    parser.add_argument(
        "--blobs",
        choices=("segments", "folder", "both"),
        default="segments",
        help="segment files with group fsync (default), one file per blob, or both",
    )
    args = parser.parse_args(argv)
    sizes = [int(kb) * 1024 for kb in args.sizes.split(",")]

    from keystep.store.sqlite import SqliteRepository

    base = Path(tempfile.mkdtemp(prefix="keystep-bench-", dir=args.dir))
    rows: list[tuple[str, ...]] = []
    try:
        # This machine's disk is virtual and its speed swings from run to run: the median of
        # three measurements, with the spread shown.
        speeds = sorted(disk_speed(base) for _ in range(3))
        disk = speeds[1]
        spread = f"{disk:,.0f} ({speeds[0]:,.0f}-{speeds[2]:,.0f})"
        rows.append(("disk: sequential write + fsync (median of 3)", "-", "1 MiB writes", "-",
                     "-", spread, "100 %", "-"))  # fmt: skip
        cores = os.cpu_count() or 1
        for size, threads in itertools.product(sizes, sorted({1, cores})):
            n, elapsed, mean = checks_only(size, min(args.seconds, 3.0), threads)
            r = Result("checks", mean, n, elapsed)
            rows.append((
                "ceiling: the checks alone (parse, Ed25519 verify, SHA-256), no store",
                f"{threads} thread{'s' if threads > 1 else ''}",
                f"{size // 1024} KB (mean {mean / 1024:.1f} KiB)", f"{n:,}", f"{r.per_s:,.0f}",
                f"{r.mb_s:,.0f}", f"{100 * r.mb_s / disk:.0f} %",
                f"{1000 * threads / r.per_s:.2f}",
            ))  # fmt: skip
        backends: list[tuple[str, Callable[[Path], tuple[Repository, Callable[[], None]]]]] = []
        # The same stores as URLs for `keystep serve`: (url, a fresh handle, cleanup).
        http_backends: dict[str, Callable[[Path], tuple[str, Callable[[], Repository],
                                                         Callable[[], None]]]] = {}  # fmt: skip

        def sqlite(d: Path) -> tuple[Repository, Callable[[], None]]:
            return SqliteRepository(d / "collector.sqlite"), lambda: None

        def sqlite_url(d: Path) -> tuple[str, Callable[[], Repository], Callable[[], None]]:
            path = d / "collector.sqlite"
            return f"sqlite:///{path}", lambda: SqliteRepository(path), lambda: None

        if not args.no_sqlite:
            http_backends["SQLite"] = sqlite_url
            backends.append(("SQLite (WAL, synchronous=FULL)", sqlite))
        if not args.no_postgres:
            from keystep.store.pg_admin import temporary_database
            from keystep.store.postgres import PostgresRepository

            def postgres(d: Path) -> tuple[Repository, Callable[[], None]]:
                cm = temporary_database()
                db = cm.__enter__()
                return PostgresRepository(db.app_url, max_size=args.threads), lambda: cm.__exit__(
                    None, None, None
                )

            backends.append(("PostgreSQL 127.0.0.1 (app role, RLS)", postgres))

            def postgres_url(d: Path) -> tuple[str, Callable[[], Repository], Callable[[], None]]:
                cm = temporary_database()
                db = cm.__enter__()
                return (
                    db.app_url,
                    lambda: PostgresRepository(db.app_url, max_size=2),
                    lambda: cm.__exit__(None, None, None),
                )

            http_backends["PostgreSQL"] = postgres_url
        stores: dict[str, Callable[[Path], BlobStore]] = {
            "segments": SegmentBlobStore,
            "folder": FolderBlobStore,
        }
        kinds = list(stores) if args.blobs == "both" else [args.blobs]
        for (label, opener), kind, size in itertools.product(
            [] if args.no_inprocess else backends, kinds, sizes
        ):
            d = base / f"{label.split()[0]}-{kind}-{size}"
            d.mkdir()
            repo, cleanup = opener(d)
            blobs = stores[kind](d / "blobs")
            try:
                n, elapsed, mean = run_ingest(repo, blobs, size, args.seconds, args.threads)
            finally:
                blobs.close()
                repo.close()
                cleanup()
                shutil.rmtree(d, ignore_errors=True)
            r = Result(label, mean, n, elapsed)
            rows.append((
                f"{label}, {kind}", "in-process",
                f"{size // 1024} KB (mean {mean / 1024:.1f} KiB)", f"{n:,}",
                f"{r.per_s:,.0f}", f"{r.mb_s:,.0f}", f"{100 * r.mb_s / disk:.0f} %",
                f"{1000 * run_ingest.cpu_per_batch:.2f}",  # type: ignore[attr-defined]
            ))  # fmt: skip
        for (label, opener), kind, size in itertools.product(
            [] if args.no_http else list(http_backends.items()), kinds, sizes
        ):
            d = base / f"http-{label}-{kind}-{size}"
            d.mkdir()
            url, open_repo, cleanup = opener(d)
            spec = f"segments:{d / 'blobs'}" if kind == "segments" else str(d / "blobs")
            try:
                n, elapsed, mean, cpu = run_http(
                    url, open_repo, d, spec, size, args.seconds, args.threads, args.http_clients
                )
            finally:
                cleanup()
                shutil.rmtree(d, ignore_errors=True)
            r = Result(label, mean, n, elapsed)
            rows.append((
                f"{label} via keystep serve, {kind}", f"HTTP, {args.http_clients} client procs",
                f"{size // 1024} KB (mean {mean / 1024:.1f} KiB)", f"{n:,}",
                f"{r.per_s:,.0f}", f"{r.mb_s:,.0f}", f"{100 * r.mb_s / disk:.0f} %",
                f"{1000 * cpu:.2f} server, "
                f"{1000 * run_http.client_cpu_per_batch:.2f} clients",  # type: ignore[attr-defined]
            ))  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(
        f"{args.threads} concurrent uploads (in-process: threads calling ingest_batch; HTTP:"
        f" keep-alive connections from client processes to one `keystep serve`),"
        f" ~{args.seconds:g} s per cell, {os.cpu_count()} CPUs shared by server and clients;"
        " blob durable (segments: one fdatasync per group of puts; folder: file + dir fsync)"
        " and row committed before each ack"
    )
    print()
    header = ("store", "path", "batch size", "batches", "batches/s", "MB/s", "of disk",
              "CPU ms/batch")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
