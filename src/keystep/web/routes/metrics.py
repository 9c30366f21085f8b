"""Prometheus exposition: aggregates only, no per-device or per-contributor series."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from keystep.web.deps import CollectorDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(c: CollectorDep) -> Response:
    body = c.metrics.render(
        streams=lambda: c.fleet.listener_count,
        halted=c.fleet.state.halted,
        generation=c.fleet.state.generation,
    )
    return Response(body, media_type=CONTENT_TYPE_LATEST)
