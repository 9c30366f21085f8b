"""The embedded repository: one SQLite file (WAL, ``synchronous=FULL``), stdlib only.

The recording agent's process opens it (the embedded collector), so it must not import
SQLAlchemy. Scopes are applied in the queries, with the rules of ``base.SEES_ALL`` that
PostgreSQL enforces with row-level security.

Batch inserts use group commit: threads that arrive while a commit is in flight queue their
records, and the next one to take the write lock commits all of them in one transaction.
No call returns before its own transaction is durable.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from keystep.sqlite_wal import enable_wal
from keystep.store.base import (
    SCHEMA_VERSION,
    BatchRecord,
    Conflict,
    ConsentRecord,
    DeviceRecord,
    EnrollmentCode,
    EnrollmentCodeInvalid,
    FleetState,
    LineageEntry,
    ManifestRecord,
    Repository,
    RepositoryError,
    Scope,
    check_own,
    check_write,
)
from keystep.store.group import GroupCommit

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    contributor TEXT NOT NULL,
    period TEXT NOT NULL,
    t_hour TEXT NOT NULL,
    manifest_version INTEGER NOT NULL,
    redaction_version TEXT NOT NULL,
    kinds TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    blob_key TEXT NOT NULL,
    received_at TEXT NOT NULL,
    UNIQUE (device, seq)
);
CREATE INDEX IF NOT EXISTS batches_contributor ON batches (contributor, t_hour, seq);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    contributor TEXT NOT NULL,
    public_key BLOB NOT NULL,
    credential_hash TEXT NOT NULL,
    enrolled_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS enrollment_codes (
    code_hash TEXT PRIMARY KEY,
    contributor TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE TABLE IF NOT EXISTS consents (
    contributor TEXT NOT NULL,
    manifest_version INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    given_at TEXT NOT NULL,
    withdrawn_at TEXT,
    PRIMARY KEY (contributor, manifest_version)
);
CREATE TABLE IF NOT EXISTS manifests (
    version INTEGER PRIMARY KEY,
    yaml_text TEXT NOT NULL,
    digest TEXT NOT NULL,
    published_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    halted INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    changed_at TEXT,
    changed_by TEXT
);
INSERT OR IGNORE INTO fleet_state VALUES (1, 0, 0, NULL, NULL);
CREATE TABLE IF NOT EXISTS lineage (
    dataset_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    contributor TEXT NOT NULL,
    PRIMARY KEY (dataset_id, batch_id)
);
CREATE INDEX IF NOT EXISTS lineage_contributor ON lineage (contributor);
"""

_BATCH_COLS: Final = (
    "batch_id, device, seq, contributor, period, t_hour, manifest_version, redaction_version,"
    " kinds, key_id, sha256, size, blob_key, received_at"
)


def _ts(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:
        raise ValueError("repository times must be timezone-aware")
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s)


def _req(s: str) -> datetime:
    return datetime.fromisoformat(s)


def _batch(row: sqlite3.Row) -> BatchRecord:
    return BatchRecord(
        batch_id=row["batch_id"],
        device=row["device"],
        seq=row["seq"],
        contributor=row["contributor"],
        period=row["period"],
        t_hour=row["t_hour"],
        manifest_version=row["manifest_version"],
        redaction_version=row["redaction_version"],
        kinds=tuple(json.loads(row["kinds"])),
        key_id=row["key_id"],
        sha256=row["sha256"],
        size=row["size"],
        blob_key=row["blob_key"],
        received_at=_req(row["received_at"]),
    )


def _device(row: sqlite3.Row) -> DeviceRecord:
    return DeviceRecord(
        device_id=row["device_id"],
        contributor=row["contributor"],
        public_key=bytes(row["public_key"]),
        credential_hash=row["credential_hash"],
        enrolled_at=_req(row["enrolled_at"]),
        revoked_at=_dt(row["revoked_at"]),
    )


def _consent(row: sqlite3.Row) -> ConsentRecord:
    return ConsentRecord(
        contributor=row["contributor"],
        manifest_version=row["manifest_version"],
        manifest_digest=row["manifest_digest"],
        given_at=_req(row["given_at"]),
        withdrawn_at=_dt(row["withdrawn_at"]),
    )


def _visible(scope: Scope, table: str) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause that RLS would add for ``scope``."""
    if scope.sees(table, "\x00never"):
        return "1", ()
    return "contributor = ?", (scope.contributor,)


class SqliteRepository(Repository):
    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 30_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._db = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_ms / 1000,
            )
            self.path.chmod(0o600)
            self._db.row_factory = sqlite3.Row
            enable_wal(self._db, timeout=busy_timeout_ms / 1000)
            # FULL: a commit is on disk before it returns, so an ack never precedes durability.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise RepositoryError(f"cannot open {self.path}: {exc}") from exc
        self._timeout = busy_timeout_ms / 1000
        self._lock = threading.Lock()
        self._readers_lock = threading.Lock()
        self._group = GroupCommit(self._commit_batches)
        # Readers get a connection per thread: in WAL mode they never wait for a commit.
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RepositoryError(f"{self.path} has schema {version}, newer than this keystep")
        if version < SCHEMA_VERSION:
            # One script, one transaction: a crash leaves either no schema or all of it.
            self._db.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;"
            )
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.chmod(0o600)

    # -- plumbing --------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self._timeout
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise RepositoryError(f"cannot read {self.path}: {exc}") from exc

    def _write(self, fn: Any) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    # -- batches ---------------------------------------------------------------------------

    def add_batch(self, record: BatchRecord, *, scope: Scope) -> BatchRecord:
        check_own(scope, "batches", record.contributor)
        return self._group((record, scope))

    def _commit_batches(
        self, group: Sequence[tuple[BatchRecord, Scope]]
    ) -> list[BatchRecord | BaseException]:
        db = self._db
        out: list[BatchRecord | BaseException] = []
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                for record, scope in group:
                    # A refused INSERT undoes only itself (SQLite's default ABORT), and the
                    # reads after it write nothing: no savepoint per row is needed.
                    try:
                        out.append(self._insert_batch(db, record, scope))
                    except (Conflict, sqlite3.IntegrityError) as exc:
                        out.append(exc)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return out

    def _insert_batch(self, db: sqlite3.Connection, r: BatchRecord, scope: Scope) -> BatchRecord:
        """Insert first (the common case: one statement); only a row already holding the batch
        id or the device's seq is then looked up, to answer a retry or name the conflict."""
        try:
            db.execute(
                f"INSERT INTO batches ({_BATCH_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    r.batch_id,
                    r.device,
                    r.seq,
                    r.contributor,
                    r.period,
                    r.t_hour,
                    r.manifest_version,
                    r.redaction_version,
                    json.dumps(list(r.kinds)),
                    r.key_id,
                    r.sha256,
                    r.size,
                    r.blob_key,
                    _ts(r.received_at),
                ),
            )
            return r
        except sqlite3.IntegrityError:
            pass
        row = db.execute(
            f"SELECT {_BATCH_COLS} FROM batches WHERE batch_id = ?", (r.batch_id,)
        ).fetchone()
        if row is not None:
            if not scope.sees("batches", row["contributor"]):
                raise Conflict(f"batch id {r.batch_id} is taken")
            existing = _batch(row)
            if existing.sha256 == r.sha256:
                return existing
            raise Conflict(
                f"batch {r.batch_id} was already received with different bytes", existing
            )
        row = db.execute(
            f"SELECT {_BATCH_COLS} FROM batches WHERE device = ? AND seq = ?", (r.device, r.seq)
        ).fetchone()
        if row is not None:
            taken = _batch(row) if scope.sees("batches", row["contributor"]) else None
            raise Conflict(f"device {r.device} already sent seq {r.seq} as another batch", taken)
        raise Conflict(f"batch {r.batch_id} was refused by a constraint of the batches table")

    def get_batch(self, batch_id: str, *, scope: Scope) -> BatchRecord | None:
        where, params = _visible(scope, "batches")
        rows = self._read(
            f"SELECT {_BATCH_COLS} FROM batches WHERE batch_id = ? AND {where}", (batch_id, *params)
        )
        return _batch(rows[0]) if rows else None

    def find_batch_by_seq(self, device: str, seq: int, *, scope: Scope) -> BatchRecord | None:
        where, params = _visible(scope, "batches")
        rows = self._read(
            f"SELECT {_BATCH_COLS} FROM batches WHERE device = ? AND seq = ? AND {where}",
            (device, seq, *params),
        )
        return _batch(rows[0]) if rows else None

    def list_batches(
        self,
        *,
        scope: Scope,
        contributor: str | None = None,
        period: str | None = None,
        since_hour: str | None = None,
    ) -> list[BatchRecord]:
        where, params = _visible(scope, "batches")
        sql = f"SELECT {_BATCH_COLS} FROM batches WHERE {where}"
        args: list[Any] = list(params)
        for col, op, val in (
            ("contributor", "=", contributor),
            ("period", "=", period),
            ("t_hour", ">=", since_hour),
        ):
            if val is not None:
                sql += f" AND {col} {op} ?"
                args.append(val)
        sql += " ORDER BY t_hour, device, seq"
        return [_batch(r) for r in self._read(sql, args)]

    def delete_batches(self, batch_ids: Iterable[str], *, scope: Scope) -> list[BatchRecord]:
        ids = list(batch_ids)
        where, params = _visible(scope, "batches")

        def run(db: sqlite3.Connection) -> list[BatchRecord]:
            out = []
            for bid in ids:
                row = db.execute(
                    f"SELECT {_BATCH_COLS} FROM batches WHERE batch_id = ? AND {where}",
                    (bid, *params),
                ).fetchone()
                if row is not None:
                    db.execute("DELETE FROM batches WHERE batch_id = ?", (bid,))
                    out.append(_batch(row))
            return out

        result: list[BatchRecord] = self._write(run)
        return result

    # -- devices and enrollment ------------------------------------------------------------

    def add_device(self, device: DeviceRecord, *, scope: Scope) -> None:
        check_own(scope, "devices", device.contributor)

        def run(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO devices VALUES (?,?,?,?,?,?)",
                    (
                        device.device_id,
                        device.contributor,
                        device.public_key,
                        device.credential_hash,
                        _ts(device.enrolled_at),
                        _ts(device.revoked_at),
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"device id {device.device_id} is taken") from None

        self._write(run)

    def get_device(self, device_id: str, *, scope: Scope) -> DeviceRecord | None:
        where, params = _visible(scope, "devices")
        rows = self._read(
            f"SELECT * FROM devices WHERE device_id = ? AND {where}", (device_id, *params)
        )
        return _device(rows[0]) if rows else None

    def list_devices(self, *, scope: Scope) -> list[DeviceRecord]:
        where, params = _visible(scope, "devices")
        rows = self._read(f"SELECT * FROM devices WHERE {where} ORDER BY enrolled_at", params)
        return [_device(r) for r in rows]

    def revoke_device(self, device_id: str, *, at: datetime, scope: Scope) -> bool:
        where, params = _visible(scope, "devices")

        def run(db: sqlite3.Connection) -> bool:
            row = db.execute(
                f"SELECT 1 FROM devices WHERE device_id = ? AND {where}", (device_id, *params)
            ).fetchone()
            if row is None:
                return False
            db.execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE device_id = ?",
                (_ts(at), device_id),
            )
            return True

        ok: bool = self._write(run)
        return ok

    def add_enrollment_code(self, code: EnrollmentCode, *, scope: Scope) -> None:
        check_own(scope, "enrollment_codes", code.contributor)

        def run(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO enrollment_codes VALUES (?,?,?,?,?)",
                    (
                        code.code_hash,
                        code.contributor,
                        _ts(code.created_at),
                        _ts(code.expires_at),
                        _ts(code.used_at),
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict("enrollment code exists") from None

        self._write(run)

    def redeem_enrollment_code(
        self, code_hash: str, *, now: datetime, scope: Scope
    ) -> EnrollmentCode:
        where, params = _visible(scope, "enrollment_codes")

        def run(db: sqlite3.Connection) -> EnrollmentCode:
            row = db.execute(
                f"UPDATE enrollment_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL"
                f" AND expires_at > ? AND {where} RETURNING *",
                (_ts(now), code_hash, _ts(now), *params),
            ).fetchone()
            if row is None:
                raise EnrollmentCodeInvalid("enrollment code is unknown, expired or used")
            return EnrollmentCode(
                code_hash=row["code_hash"],
                contributor=row["contributor"],
                created_at=_req(row["created_at"]),
                expires_at=_req(row["expires_at"]),
                used_at=_dt(row["used_at"]),
            )

        code: EnrollmentCode = self._write(run)
        return code

    # -- consent and manifests -------------------------------------------------------------

    def record_consent(self, consent: ConsentRecord, *, scope: Scope) -> None:
        check_own(scope, "consents", consent.contributor)
        self._write(
            lambda db: db.execute(
                "INSERT INTO consents VALUES (?,?,?,?,?)"
                " ON CONFLICT (contributor, manifest_version) DO UPDATE SET"
                " manifest_digest = excluded.manifest_digest,"
                " given_at = excluded.given_at, withdrawn_at = excluded.withdrawn_at",
                (
                    consent.contributor,
                    consent.manifest_version,
                    consent.manifest_digest,
                    _ts(consent.given_at),
                    _ts(consent.withdrawn_at),
                ),
            )
        )

    def withdraw_consent(self, contributor: str, *, at: datetime, scope: Scope) -> int:
        where, params = _visible(scope, "consents")
        n: int = self._write(
            lambda db: (
                db.execute(
                    "UPDATE consents SET withdrawn_at = ?"
                    f" WHERE contributor = ? AND withdrawn_at IS NULL AND {where}",
                    (_ts(at), contributor, *params),
                ).rowcount
            )
        )
        return n

    def consents(self, contributor: str, *, scope: Scope) -> list[ConsentRecord]:
        where, params = _visible(scope, "consents")
        rows = self._read(
            f"SELECT * FROM consents WHERE contributor = ? AND {where} ORDER BY manifest_version",
            (contributor, *params),
        )
        return [_consent(r) for r in rows]

    def publish_manifest(self, manifest: ManifestRecord, *, scope: Scope) -> None:
        check_write(scope, "manifests")

        def run(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT digest FROM manifests WHERE version = ?", (manifest.version,)
            ).fetchone()
            if row is not None:
                if row["digest"] != manifest.digest:
                    raise Conflict(f"manifest version {manifest.version} is already published")
                return
            db.execute(
                "INSERT INTO manifests VALUES (?,?,?,?)",
                (manifest.version, manifest.yaml_text, manifest.digest, _ts(manifest.published_at)),
            )

        self._write(run)

    def _manifest(self, sql: str, params: Sequence[Any]) -> ManifestRecord | None:
        rows = self._read(sql, params)
        if not rows:
            return None
        r = rows[0]
        return ManifestRecord(r["version"], r["yaml_text"], r["digest"], _req(r["published_at"]))

    def get_manifest(self, version: int) -> ManifestRecord | None:
        return self._manifest("SELECT * FROM manifests WHERE version = ?", (version,))

    def latest_manifest(self) -> ManifestRecord | None:
        return self._manifest("SELECT * FROM manifests ORDER BY version DESC LIMIT 1", ())

    # -- fleet -----------------------------------------------------------------------------

    def fleet_state(self) -> FleetState:
        r = self._read("SELECT * FROM fleet_state WHERE id = 1")[0]
        return FleetState(bool(r["halted"]), r["generation"], _dt(r["changed_at"]), r["changed_by"])

    def set_fleet_halted(
        self,
        halted: bool,
        *,
        at: datetime,
        by: str,
        scope: Scope,
        notify: Callable[[FleetState], tuple[str, str]] | None = None,
    ) -> FleetState:
        # One process owns this database: there is no other collector to notify.
        check_write(scope, "fleet_state")

        def run(db: sqlite3.Connection) -> FleetState:
            r = db.execute(
                "UPDATE fleet_state SET halted = ?, generation = generation + 1, changed_at = ?,"
                " changed_by = ? WHERE id = 1 RETURNING *",
                (int(halted), _ts(at), by),
            ).fetchone()
            return FleetState(
                bool(r["halted"]), r["generation"], _dt(r["changed_at"]), r["changed_by"]
            )

        state: FleetState = self._write(run)
        return state

    # -- lineage ---------------------------------------------------------------------------

    def record_lineage(
        self, dataset_id: str, entries: Sequence[tuple[str, str]], *, scope: Scope
    ) -> None:
        for _, contributor in entries:
            check_own(scope, "lineage", contributor)
        self._write(
            lambda db: db.executemany(
                "INSERT OR IGNORE INTO lineage VALUES (?,?,?)",
                [(dataset_id, bid, c) for bid, c in entries],
            )
        )

    def lineage(self, dataset_id: str, *, scope: Scope) -> list[LineageEntry]:
        where, params = _visible(scope, "lineage")
        rows = self._read(
            f"SELECT * FROM lineage WHERE dataset_id = ? AND {where} ORDER BY batch_id",
            (dataset_id, *params),
        )
        return [LineageEntry(r["dataset_id"], r["batch_id"], r["contributor"]) for r in rows]

    def datasets_of(self, contributor: str, *, scope: Scope) -> list[str]:
        where, params = _visible(scope, "lineage")
        rows = self._read(
            f"SELECT DISTINCT dataset_id FROM lineage WHERE contributor = ? AND {where}"
            " ORDER BY dataset_id",
            (contributor, *params),
        )
        return [r["dataset_id"] for r in rows]

    def close(self) -> None:
        with self._lock, self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._db.close()
