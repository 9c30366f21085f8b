"""Recording leases: one on request, or a stream of them with the kill switch (SSE)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from keystep.collector import service
from keystep.web.deps import CallerDep, CollectorDep
from keystep.web.schemas import LeasePublic

router = APIRouter(prefix="/v1/lease", tags=["lease"])


class EventStreamResponse(Response):
    """Writes a :class:`~keystep.collector.service.LeaseSession`'s frames as they come.

    Plain ASGI rather than ``StreamingResponse``: that one runs a task group of two tasks
    per response, and ten thousand open streams made it the collector's main cost.
    Here each stream is one task; the disconnect watcher is a bare ``receive()``.
    """

    media_type = "text/event-stream"

    def __init__(self, session: service.LeaseSession) -> None:
        self.status_code = 200
        self.background = None
        self._session = session
        # No body attribute: Starlette then sets no Content-Length (the stream is chunked).
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = self._session

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(until_disconnect())
        watcher.add_done_callback(lambda _: session.close())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for frame in session.frames():
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            session.close()


@router.post("")
async def lease(c: CollectorDep, caller: CallerDep) -> LeasePublic:
    token, state = await run_in_threadpool(service.issue_lease, c, caller=caller)
    return LeasePublic(lease=token, generation=state.generation, ttl_s=c.lease_ttl)


@router.get(
    "/stream",
    status_code=200,
    response_class=EventStreamResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(c: CollectorDep, caller: CallerDep) -> EventStreamResponse:
    """Events: ``lease`` (every TTL/3), ``halt``, ``resume``, ``manifest``,
    ``consent-withdrawn``, ``device-revoked``, ``refused``."""
    return EventStreamResponse(service.LeaseSession(c, caller=caller))
