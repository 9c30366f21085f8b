"""The service repository: PostgreSQL through psycopg 3 and a connection pool.

It connects as the application role, which owns nothing and cannot bypass row-level
security. Every transaction first sets ``keystep.contributor`` and ``keystep.role`` for
itself only (``set_config(..., true)``, the parameterised form of ``SET LOCAL``), so the
policies of the migration decide which rows it sees; a pooled connection carries no scope
from one transaction to the next.

Batch rows use group commit, as in the SQLite backend: rows that queue while a commit is in
flight go into the next transaction together, each under its own contributor's settings
(one statement per row sets them and inserts the row: :data:`_SCOPED_INSERT`), all in one
pipelined round trip and one WAL flush. ``synchronous_commit`` stays on: no call returns
before its row is durable. An upload's device and consent are read in one transaction too
(:meth:`device_and_consent`), each contributor's consent under that contributor's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import errors
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from keystep.store.base import (
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
    ScopeError,
)
from keystep.store.group import GroupCommit

_BATCH_COLS: Final = (
    "batch_id, device, seq, contributor, period, t_hour, manifest_version, redaction_version,"
    " kinds, key_id, sha256, size, blob_key, received_at"
)
_NO_SCOPE: Final = Scope("collector")  # tables without contributor data ignore the role
# A contributor's active consents read in that contributor's scope, in one statement: the
# consents are scanned per row of the CTE that set the scope (the scan depends on its
# result), so after it. A group of reads sends one of these per contributor, at once.
_SCOPED_CONSENTS: Final = (
    "WITH scope AS MATERIALIZED (SELECT set_config('keystep.contributor', %s, true) AS who,"
    " set_config('keystep.role', 'contributor', true))"
    " SELECT c.* FROM scope CROSS JOIN LATERAL"
    " (SELECT * FROM consents WHERE contributor = scope.who AND withdrawn_at IS NULL) AS c"
)
# A batch row inserted under its own contributor's scope in one statement: the CTE sets the
# transaction's settings (set_config(..., true), as _tx does) and is the row's source, so it
# has run before the row exists, and the policies check the row when it is inserted — under
# these settings. A group of uploads sends one of these per row, all in one round trip.
_SCOPED_INSERT: Final = (
    "WITH scope AS MATERIALIZED (SELECT set_config('keystep.contributor', %s, true),"
    " set_config('keystep.role', %s, true))"
    f" INSERT INTO batches ({_BATCH_COLS})"
    " SELECT %s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s FROM scope"
    " ON CONFLICT DO NOTHING RETURNING batch_id"
)


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else t.astimezone(UTC)


def _batch(r: dict[str, Any]) -> BatchRecord:
    return BatchRecord(
        batch_id=r["batch_id"],
        device=r["device"],
        seq=r["seq"],
        contributor=r["contributor"],
        period=r["period"],
        t_hour=r["t_hour"],
        manifest_version=r["manifest_version"],
        redaction_version=r["redaction_version"],
        kinds=tuple(r["kinds"]),
        key_id=r["key_id"],
        sha256=r["sha256"],
        size=r["size"],
        blob_key=r["blob_key"],
        received_at=r["received_at"].astimezone(UTC),
    )


def _device(r: dict[str, Any]) -> DeviceRecord:
    return DeviceRecord(
        device_id=r["device_id"],
        contributor=r["contributor"],
        public_key=bytes(r["public_key"]),
        credential_hash=r["credential_hash"],
        enrolled_at=r["enrolled_at"].astimezone(UTC),
        revoked_at=_utc(r["revoked_at"]),
    )


def _consent(r: dict[str, Any]) -> ConsentRecord:
    return ConsentRecord(
        contributor=r["contributor"],
        manifest_version=r["manifest_version"],
        manifest_digest=r["manifest_digest"],
        given_at=r["given_at"].astimezone(UTC),
        withdrawn_at=_utc(r["withdrawn_at"]),
    )


def _manifest(r: dict[str, Any]) -> ManifestRecord:
    return ManifestRecord(
        r["version"], r["yaml_text"], r["digest"], r["published_at"].astimezone(UTC)
    )


def _fleet(r: dict[str, Any]) -> FleetState:
    return FleetState(r["halted"], r["generation"], _utc(r["changed_at"]), r["changed_by"])


Cursor = psycopg.Cursor[dict[str, Any]]


class PostgresRepository(Repository):
    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 16) -> None:
        self.url = url
        try:
            self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
                url,
                min_size=min_size,
                max_size=max_size,
                kwargs={
                    "row_factory": dict_row,
                    "options": "-c search_path=keystep -c timezone=UTC",
                },
                open=True,
                timeout=30,
            )
            self._pool.wait(timeout=30)
        except psycopg.Error as exc:
            raise RepositoryError(f"cannot connect to PostgreSQL: {exc}") from exc
        # Group commit of batch rows: one leader at a time inserts everything queued while
        # the previous group committed (see add_batch).
        self._group = GroupCommit(self._commit_batches)
        self._reads = GroupCommit(self._read_group)

    @contextmanager
    def _tx(self, scope: Scope) -> Iterator[Cursor]:
        try:
            with (
                self._pool.connection() as conn,
                conn.pipeline(),  # BEGIN, the scope and the first query in one round trip
                conn.transaction(),
                conn.cursor() as cur,
            ):
                cur.execute(
                    "SELECT set_config('keystep.contributor', %s, true),"
                    " set_config('keystep.role', %s, true)",
                    (scope.contributor or "", scope.role),
                )
                yield cur
        except errors.InsufficientPrivilege as exc:
            raise ScopeError(
                f"role {scope.role} may not do this: {exc.diag.message_primary}"
            ) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise RepositoryError(f"PostgreSQL: {exc}") from exc

    # -- batches ---------------------------------------------------------------------------

    def add_batch(self, record: BatchRecord, *, scope: Scope) -> BatchRecord:
        if not scope.sees("batches", record.contributor):
            # RLS refuses it too; refusing here keeps one bad row from failing a whole group.
            raise ScopeError(f"role {scope.role} may not write batches of another contributor")
        return self._group((record, scope))

    def _commit_batches(
        self, group: Sequence[tuple[BatchRecord, Scope]]
    ) -> list[BatchRecord | BaseException]:
        """Insert every queued row in one transaction (one WAL flush, one round trip), each
        under its own contributor's scope; rows that hit an existing one are then answered
        one by one. Any other failure retries each row alone, so one bad row fails alone."""
        try:
            inserted = self._insert_group(group)
        except (psycopg.Error, RepositoryError):
            inserted = [False] * len(group)
        out: list[BatchRecord | BaseException] = []
        for (record, scope), ok in zip(group, inserted, strict=True):
            try:
                out.append(record if ok else self._add_one(record, scope))
            except Exception as exc:
                out.append(exc)
        return out

    def _insert_group(self, group: Sequence[tuple[BatchRecord, Scope]]) -> list[bool]:
        """One statement per row, all sent at once (``executemany`` in a pipeline): each
        sets its contributor's scope for the transaction, then inserts its row (see
        :data:`_SCOPED_INSERT`). True for each row inserted, False for one that hit an
        existing row."""
        params = [
            (
                scope.contributor or "", scope.role,
                r.batch_id, r.device, r.seq, r.contributor, r.period, r.t_hour,
                r.manifest_version, r.redaction_version, list(r.kinds), r.key_id,
                r.sha256, r.size, r.blob_key, r.received_at,
            )
            for r, scope in group
        ]  # fmt: skip
        try:
            with self._pool.connection() as conn:
                with conn.pipeline(), conn.transaction():
                    cur = conn.cursor(row_factory=tuple_row)
                    cur.executemany(_SCOPED_INSERT, params, returning=True)
                    out = []
                    for _ in group:
                        out.append(cur.fetchone() is not None)
                        cur.nextset()
                return out
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise RepositoryError(f"PostgreSQL: {exc}") from exc

    @staticmethod
    def _scoped(cur: psycopg.Cursor[Any], scope: Scope) -> None:
        cur.execute(
            "SELECT set_config('keystep.contributor', %s, true),"
            " set_config('keystep.role', %s, true)",
            (scope.contributor or "", scope.role),
        )

    @staticmethod
    def _insert(cur: psycopg.Cursor[Any], r: BatchRecord) -> None:
        cur.execute(
            f"INSERT INTO batches ({_BATCH_COLS})"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " ON CONFLICT DO NOTHING RETURNING batch_id",
            (
                r.batch_id, r.device, r.seq, r.contributor, r.period, r.t_hour,
                r.manifest_version, r.redaction_version, list(r.kinds), r.key_id,
                r.sha256, r.size, r.blob_key, r.received_at,
            ),
        )  # fmt: skip

    def _add_one(self, record: BatchRecord, scope: Scope) -> BatchRecord:
        r = record
        with self._tx(scope) as cur:
            self._insert(cur, r)
            if cur.fetchone() is not None:
                return record
            cur.execute(f"SELECT {_BATCH_COLS} FROM batches WHERE batch_id = %s", (r.batch_id,))
            row = cur.fetchone()
            if row is not None:
                existing = _batch(row)
                if existing.sha256 == r.sha256:
                    return existing
                raise Conflict(
                    f"batch {r.batch_id} was already received with different bytes", existing
                )
            cur.execute(
                f"SELECT {_BATCH_COLS} FROM batches WHERE device = %s AND seq = %s",
                (r.device, r.seq),
            )
            row = cur.fetchone()
            if row is not None:
                raise Conflict(
                    f"device {r.device} already sent seq {r.seq} as another batch", _batch(row)
                )
            # A row this scope cannot see holds the id or the seq.
            raise Conflict(f"batch id {r.batch_id} or its device seq is taken")

    def get_batch(self, batch_id: str, *, scope: Scope) -> BatchRecord | None:
        with self._tx(scope) as cur:
            cur.execute(f"SELECT {_BATCH_COLS} FROM batches WHERE batch_id = %s", (batch_id,))
            row = cur.fetchone()
        return _batch(row) if row else None

    def find_batch_by_seq(self, device: str, seq: int, *, scope: Scope) -> BatchRecord | None:
        with self._tx(scope) as cur:
            cur.execute(
                f"SELECT {_BATCH_COLS} FROM batches WHERE device = %s AND seq = %s", (device, seq)
            )
            row = cur.fetchone()
        return _batch(row) if row else None

    def list_batches(
        self,
        *,
        scope: Scope,
        contributor: str | None = None,
        period: str | None = None,
        since_hour: str | None = None,
    ) -> list[BatchRecord]:
        q = f"SELECT {_BATCH_COLS} FROM batches WHERE true"
        args: list[Any] = []
        for col, op, val in (
            ("contributor", "=", contributor),
            ("period", "=", period),
            ("t_hour", ">=", since_hour),
        ):
            if val is not None:
                q += f" AND {col} {op} %s"
                args.append(val)
        q += " ORDER BY t_hour, device, seq"
        with self._tx(scope) as cur:
            cur.execute(q, args)
            return [_batch(r) for r in cur.fetchall()]

    def delete_batches(self, batch_ids: Iterable[str], *, scope: Scope) -> list[BatchRecord]:
        ids = list(batch_ids)
        with self._tx(scope) as cur:
            cur.execute(
                f"DELETE FROM batches WHERE batch_id = ANY(%s) RETURNING {_BATCH_COLS}", (ids,)
            )
            rows = cur.fetchall()
        return [_batch(r) for r in rows]

    # -- devices and enrollment ------------------------------------------------------------

    def add_device(self, device: DeviceRecord, *, scope: Scope) -> None:
        d = device
        try:
            with self._tx(scope) as cur:
                cur.execute(
                    "INSERT INTO devices VALUES (%s,%s,%s,%s,%s,%s)",
                    (
                        d.device_id, d.contributor, d.public_key, d.credential_hash,
                        d.enrolled_at, d.revoked_at,
                    ),
                )  # fmt: skip
        except errors.UniqueViolation:
            raise Conflict(f"device id {d.device_id} is taken") from None

    def get_device(self, device_id: str, *, scope: Scope) -> DeviceRecord | None:
        if scope == Scope.collector():
            # Every request of a device reads its record (authentication): those that
            # arrive together share one transaction with the uploads' consent reads.
            return self._reads((device_id, "", 0))[0]
        with self._tx(scope) as cur:
            cur.execute("SELECT * FROM devices WHERE device_id = %s", (device_id,))
            row = cur.fetchone()
        return _device(row) if row else None

    def device_and_consent(
        self, device_id: str, *, contributor: str, manifest_version: int
    ) -> tuple[DeviceRecord | None, ConsentRecord | None]:
        return self._reads((device_id, contributor, manifest_version))

    def active_consent(
        self, contributor: str, manifest_version: int, *, scope: Scope
    ) -> ConsentRecord | None:
        if scope != Scope.of_contributor(contributor):
            return super().active_consent(contributor, manifest_version, scope=scope)
        # Queued with the uploads' other reads: one transaction for all that arrive together.
        return self._reads(("", contributor, manifest_version))[1]

    def _read_group(
        self, group: Sequence[tuple[str, str, int]]
    ) -> list[tuple[DeviceRecord | None, ConsentRecord | None]]:
        """The reads of every request that queued meanwhile (authentication's device reads,
        uploads' device and consent reads), in one transaction and one round trip: the
        devices in the collector's scope, then each contributor's consents in that
        contributor's own scope (:data:`_SCOPED_CONSENTS`). Each request was queued before
        this transaction began, so none sees older state than a read of its own would have."""
        contributors = sorted({c for _, c, _ in group if c})  # "": a device read only
        with self._tx(Scope.collector()) as cur:
            cur.execute(
                "SELECT * FROM devices WHERE device_id = ANY(%s)",
                ([d for d, _, _ in group if d],),
            )
            c = cur.connection.cursor()
            if contributors:
                c.executemany(_SCOPED_CONSENTS, [(who,) for who in contributors], returning=True)
            devices = {r["device_id"]: _device(r) for r in cur.fetchall()}
            consents = {}
            for _ in contributors:
                for r in c.fetchall():
                    consents[(r["contributor"], r["manifest_version"])] = _consent(r)
                c.nextset()
        return [(devices.get(d), consents.get((who, v))) for d, who, v in group]

    def devices_barred(
        self, device_ids: Collection[str], *, manifest: ManifestRecord
    ) -> dict[str, str]:
        """One transaction of two round trips, however many devices: the devices in the
        collector's scope, then each of their contributors' consents in that contributor's
        own scope (a consent is visible to no one else), pipelined."""
        ids = list(device_ids)
        if not ids:
            return {}
        with self._tx(Scope.collector()) as cur:
            cur.execute("SELECT * FROM devices WHERE device_id = ANY(%s)", (ids,))
            devices = {r["device_id"]: _device(r) for r in cur.fetchall()}
            contributors = sorted({d.contributor for d in devices.values() if not d.revoked})
            per_contributor = []
            for who in contributors:
                self._scoped(cur.connection.cursor(), Scope.of_contributor(who))
                c = cur.connection.cursor()
                c.execute(
                    "SELECT manifest_digest FROM consents WHERE contributor = %s"
                    " AND manifest_version = %s AND withdrawn_at IS NULL",
                    (who, manifest.version),
                )
                per_contributor.append((who, c))
            consented = {
                who
                for who, c in per_contributor
                if any(r["manifest_digest"] == manifest.digest for r in c.fetchall())
            }
        barred: dict[str, str] = {}
        for device_id in ids:
            dev = devices.get(device_id)
            if dev is None or dev.revoked:
                barred[device_id] = "device revoked"
            elif dev.contributor not in consented:
                barred[device_id] = f"no consent to manifest v{manifest.version}"
        return barred

    def list_devices(self, *, scope: Scope) -> list[DeviceRecord]:
        with self._tx(scope) as cur:
            cur.execute("SELECT * FROM devices ORDER BY enrolled_at")
            return [_device(r) for r in cur.fetchall()]

    def revoke_device(self, device_id: str, *, at: datetime, scope: Scope) -> bool:
        with self._tx(scope) as cur:
            cur.execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, %s) WHERE device_id = %s"
                " RETURNING 1",
                (at, device_id),
            )
            return len(cur.fetchall()) == 1  # rowcount is unknown until a pipeline syncs

    def add_enrollment_code(self, code: EnrollmentCode, *, scope: Scope) -> None:
        c = code
        try:
            with self._tx(scope) as cur:
                cur.execute(
                    "INSERT INTO enrollment_codes VALUES (%s,%s,%s,%s,%s)",
                    (c.code_hash, c.contributor, c.created_at, c.expires_at, c.used_at),
                )
        except errors.UniqueViolation:
            raise Conflict("enrollment code exists") from None

    def redeem_enrollment_code(
        self, code_hash: str, *, now: datetime, scope: Scope
    ) -> EnrollmentCode:
        with self._tx(scope) as cur:
            cur.execute(
                "UPDATE enrollment_codes SET used_at = %s WHERE code_hash = %s"
                " AND used_at IS NULL AND expires_at > %s RETURNING *",
                (now, code_hash, now),
            )
            r = cur.fetchone()
        if r is None:
            raise EnrollmentCodeInvalid("enrollment code is unknown, expired or used")
        return EnrollmentCode(
            code_hash=r["code_hash"],
            contributor=r["contributor"],
            created_at=r["created_at"].astimezone(UTC),
            expires_at=r["expires_at"].astimezone(UTC),
            used_at=_utc(r["used_at"]),
        )

    # -- consent and manifests -------------------------------------------------------------

    def record_consent(self, consent: ConsentRecord, *, scope: Scope) -> None:
        c = consent
        with self._tx(scope) as cur:
            cur.execute(
                "INSERT INTO consents VALUES (%s,%s,%s,%s,%s)"
                " ON CONFLICT (contributor, manifest_version) DO UPDATE SET"
                " manifest_digest = excluded.manifest_digest, given_at = excluded.given_at,"
                " withdrawn_at = excluded.withdrawn_at",
                (c.contributor, c.manifest_version, c.manifest_digest, c.given_at, c.withdrawn_at),
            )

    def withdraw_consent(self, contributor: str, *, at: datetime, scope: Scope) -> int:
        with self._tx(scope) as cur:
            cur.execute(
                "UPDATE consents SET withdrawn_at = %s"
                " WHERE contributor = %s AND withdrawn_at IS NULL RETURNING 1",
                (at, contributor),
            )
            return len(cur.fetchall())

    def consents(self, contributor: str, *, scope: Scope) -> list[ConsentRecord]:
        with self._tx(scope) as cur:
            cur.execute(
                "SELECT * FROM consents WHERE contributor = %s ORDER BY manifest_version",
                (contributor,),
            )
            return [_consent(r) for r in cur.fetchall()]

    def publish_manifest(self, manifest: ManifestRecord, *, scope: Scope) -> None:
        m = manifest
        with self._tx(scope) as cur:
            cur.execute(
                "INSERT INTO manifests VALUES (%s,%s,%s,%s) ON CONFLICT (version) DO NOTHING"
                " RETURNING version",
                (m.version, m.yaml_text, m.digest, m.published_at),
            )
            if cur.fetchone() is not None:
                return
            cur.execute("SELECT digest FROM manifests WHERE version = %s", (m.version,))
            row = cur.fetchone()
        if row is None or row["digest"] != m.digest:
            raise Conflict(f"manifest version {m.version} is already published")

    def get_manifest(self, version: int) -> ManifestRecord | None:
        with self._tx(_NO_SCOPE) as cur:
            cur.execute("SELECT * FROM manifests WHERE version = %s", (version,))
            row = cur.fetchone()
        return _manifest(row) if row else None

    def latest_manifest(self) -> ManifestRecord | None:
        with self._tx(_NO_SCOPE) as cur:
            cur.execute("SELECT * FROM manifests ORDER BY version DESC LIMIT 1")
            row = cur.fetchone()
        return _manifest(row) if row else None

    # -- fleet -----------------------------------------------------------------------------

    def fleet_state(self) -> FleetState:
        with self._tx(_NO_SCOPE) as cur:
            cur.execute("SELECT * FROM fleet_state WHERE id = 1")
            row = cur.fetchone()
        if row is None:
            raise RepositoryError("fleet_state row is missing (migrations not run?)")
        return _fleet(row)

    def set_fleet_halted(
        self,
        halted: bool,
        *,
        at: datetime,
        by: str,
        scope: Scope,
        notify: Callable[[FleetState], tuple[str, str]] | None = None,
    ) -> FleetState:
        with self._tx(scope) as cur:
            cur.execute(
                "UPDATE fleet_state SET halted = %s, generation = generation + 1,"
                " changed_at = %s, changed_by = %s WHERE id = 1 RETURNING *",
                (halted, at, by),
            )
            row = cur.fetchone()
            if row is None:  # the update policy hid the row: this scope may not write it
                raise ScopeError(f"role {scope.role} may not change fleet_state")
            state = _fleet(row)
            if notify is not None:
                # PostgreSQL delivers a NOTIFY at commit: the listeners hear of the change
                # exactly when it is durable, and of a rolled-back one never.
                cur.execute("SELECT pg_notify(%s, %s)", notify(state))
        return state

    # -- lineage ---------------------------------------------------------------------------

    def record_lineage(
        self, dataset_id: str, entries: Sequence[tuple[str, str]], *, scope: Scope
    ) -> None:
        with self._tx(scope) as cur:
            cur.executemany(
                "INSERT INTO lineage VALUES (%s,%s,%s) ON CONFLICT DO NOTHING",
                [(dataset_id, bid, c) for bid, c in entries],
            )

    def lineage(self, dataset_id: str, *, scope: Scope) -> list[LineageEntry]:
        with self._tx(scope) as cur:
            cur.execute(
                "SELECT * FROM lineage WHERE dataset_id = %s ORDER BY batch_id", (dataset_id,)
            )
            return [LineageEntry(r["dataset_id"], r["batch_id"], r["contributor"]) for r in cur]

    def datasets_of(self, contributor: str, *, scope: Scope) -> list[str]:
        with self._tx(scope) as cur:
            cur.execute(
                "SELECT dataset_id FROM contributor_datasets WHERE contributor = %s"
                " ORDER BY dataset_id",
                (contributor,),
            )
            return [r["dataset_id"] for r in cur]

    def close(self) -> None:
        self._pool.close()
