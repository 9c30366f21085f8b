"""Batch upload: one sealed envelope per request, as ``application/octet-stream``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from keystep.collector import service
from keystep.collector.service import ServiceError
from keystep.web.deps import CallerDep, CollectorDep
from keystep.web.schemas import BatchAck, ErrorPublic

router = APIRouter(prefix="/v1", tags=["batches"])

_ERRORS: dict[int | str, dict[str, object]] = {
    s: {"model": ErrorPublic} for s in (401, 403, 409, 413, 415, 422)
}


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, refusing early (413) when it is or becomes larger than ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, f"batch exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, f"batch exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/batches",
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {service.ENVELOPE_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload(request: Request, c: CollectorDep, caller: CallerDep) -> BatchAck:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != service.ENVELOPE_TYPE:
        raise ServiceError(
            415, f"send the envelope as {service.ENVELOPE_TYPE}, not {ctype or 'nothing'}"
        )
    body = await read_capped(request, c.max_batch_bytes)
    ack = await run_in_threadpool(service.upload_batch, c, caller=caller, body=body)
    return BatchAck(
        batch_id=ack.batch_id, sha256=ack.sha256, size=ack.size, duplicate=ack.duplicate
    )
