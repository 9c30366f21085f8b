"""Recording leases: one on request, or a stream of them with the kill switch (SSE)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from keystep.collector import service
from keystep.web.deps import CallerDep, CollectorDep
from keystep.web.schemas import LeasePublic

router = APIRouter(prefix="/v1/lease", tags=["lease"])


@router.post("")
async def lease(c: CollectorDep, caller: CallerDep) -> LeasePublic:
    token, state = await run_in_threadpool(service.issue_lease, c, caller=caller)
    return LeasePublic(lease=token, generation=state.generation, ttl_s=c.lease_ttl)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(c: CollectorDep, caller: CallerDep) -> StreamingResponse:
    """Events: ``lease`` (every TTL/3), ``halt``, ``resume``, ``manifest``,
    ``consent-withdrawn``, ``device-revoked``, ``refused``."""
    service.require(caller, "device")
    return StreamingResponse(
        service.lease_stream(c, caller=caller),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
