"""Liveness and readiness (no authentication, no data)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from keystep.web.deps import CollectorDep
from keystep.web.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/healthz")
def health(c: CollectorDep, response: Response) -> HealthPublic:
    ok = c.fleet.healthy
    if not ok:
        response.status_code = 503
    return HealthPublic(
        status="ok" if ok else "degraded", fleet="ok" if ok else "lost", halted=c.fleet.state.halted
    )
