"""A contributor's own data: their batches' metadata, an export, and who accessed it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from keystep.collector import service
from keystep.web.deps import CallerDep, CollectorDep
from keystep.web.schemas import BatchPublic, ExportedBatch

router = APIRouter(prefix="/v1/me", tags=["me"])


@router.get("/batches")
def batches(c: CollectorDep, caller: CallerDep) -> list[BatchPublic]:
    return [
        BatchPublic(
            batch_id=b.batch_id,
            device=b.device,
            seq=b.seq,
            period=b.period,
            t_hour=b.t_hour,
            manifest_version=b.manifest_version,
            kinds=list(b.kinds),
            size=b.size,
            received_at=b.received_at,
        )
        for b in service.my_batches(c, caller=caller)
    ]


@router.get("/export")
def export(
    c: CollectorDep, caller: CallerDep, limit: int = Query(default=100, ge=1, le=1000)
) -> list[ExportedBatch]:
    """Opened by the vault for purpose contributor-access (and audited there)."""
    return [ExportedBatch(**d) for d in service.export_mine(c, caller=caller, limit=limit)]


@router.get("/feed")
def feed(c: CollectorDep, caller: CallerDep) -> list[dict[str, Any]]:
    return service.my_feed(c, caller=caller)
