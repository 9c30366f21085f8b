"""Forget: a contributor deletes what was recorded recently."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from keystep.collector import service
from keystep.web.deps import CallerDep, CollectorDep
from keystep.web.schemas import Count, ForgetRequest

router = APIRouter(prefix="/v1/forget", tags=["forget"])


@router.post("")
def forget(c: CollectorDep, caller: CallerDep, body: ForgetRequest) -> Count:
    """Deletes the caller's own batches: of the last ``last_seconds``, or those named in
    ``batch_ids`` (ids that are not theirs, or already gone, are not counted)."""
    if body.batch_ids is not None:
        return Count(count=service.forget_batches(c, caller=caller, batch_ids=body.batch_ids))
    assert body.last_seconds is not None
    return Count(count=service.forget(c, caller=caller, last=timedelta(seconds=body.last_seconds)))
