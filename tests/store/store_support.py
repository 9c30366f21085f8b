"""Record builders shared by the store tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg

from keystep.store.base import BatchRecord, DeviceRecord, Scope
from keystep.store.pg_admin import TempDatabase

T0 = datetime(2026, 11, 3, 9, 15, 0, 123456, tzinfo=UTC)
A, B = "psA", "psB"
AS_A, AS_B = Scope.of_contributor(A), Scope.of_contributor(B)


def batch(n: int, *, contributor: str = A, device: str = "devA", **kw: object) -> BatchRecord:
    base = BatchRecord(
        batch_id=f"0190a1b2-c3d4-7e5f-8a9b-{n:012x}",
        device=device,
        seq=n,
        contributor=contributor,
        period="2026-11",
        t_hour=f"2026-11-03T{n % 24:02d}:00:00Z",
        manifest_version=1,
        redaction_version="r1",
        kinds=("key.down", "pointer.move"),
        key_id=f"k-{contributor}-2026-11",
        sha256=f"{n:064x}",
        size=1000 + n,
        blob_key=f"v1/2026-11/{contributor}/{n}",
        received_at=T0 + timedelta(seconds=n),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def device(device_id: str, contributor: str, **kw: object) -> DeviceRecord:
    d = DeviceRecord(device_id, contributor, b"\x01" * 32, "h" * 64, T0)
    return replace(d, **kw)  # type: ignore[arg-type]


def truncate(db: TempDatabase) -> None:
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE keystep.batches, keystep.devices, keystep.enrollment_codes,"
            " keystep.consents, keystep.lineage, keystep.manifests"
        )
        conn.execute(
            "UPDATE keystep.fleet_state SET halted = false, generation = 0,"
            " changed_at = NULL, changed_by = NULL"
        )
