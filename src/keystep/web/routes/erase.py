"""Erase: the contributor (or a steward naming them) destroys their keys and batches."""

from __future__ import annotations

from fastapi import APIRouter

from keystep.collector import service
from keystep.web.deps import CallerDep, CollectorDep
from keystep.web.schemas import Count, EraseRequest

router = APIRouter(prefix="/v1/erase", tags=["erase"])


@router.post("")
def erase(c: CollectorDep, caller: CallerDep, body: EraseRequest) -> Count:
    return Count(count=service.erase(c, caller=caller, contributor=body.contributor))
