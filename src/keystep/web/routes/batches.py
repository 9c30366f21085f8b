"""Batch upload: one sealed envelope per request, as ``application/octet-stream``.

Every device calls this many times an hour; it is the collector's hot path. So it is served
by a plain ASGI handler (:class:`UploadPath`) in front of all of the framework's per-request
layers (telemetry, error and body-limit middleware, routing, dependency resolution, response
models: see :class:`keystep.web.app.CollectorApp`), and the whole decision — authenticate,
content type, checks, durable store — runs in one worker-thread hop
(:func:`keystep.collector.service.upload_request`). The framework still documents it: the
path is declared in the OpenAPI schema by :func:`openapi_path`, with the same models.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final, TypeVar

from keystep.collector import service
from keystep.collector.service import Collector, ServiceError
from keystep.web.schemas import BatchAck, ErrorPublic

PATH: Final = "/v1/batches"
# Uploads in the worker pool at once: enough that many share each group commit (fsync).
UPLOAD_THREADS: Final = 32

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ERRORS: Final = {
    401: "Unauthorized",
    403: "Forbidden",
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
}


class _ClientGone(Exception):
    """The client disconnected before its body arrived: nothing to answer."""


class _Workers:
    """Threads that run uploads, each answer handed back to its event loop with one
    ``call_soon_threadsafe``: a third of what ``run_in_executor`` costs per call (its pair of
    chained futures), which costs a third of the framework's (anyio) hop.

    Daemon threads: an upload cut off by the process exiting was never acknowledged, so its
    device sends it again."""

    def __init__(self, count: int, name: str) -> None:
        self._count = count
        self._name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        if not self._started:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, fn))
        return future

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for i in range(self._count):
                name = f"{self._name}-{i}"
                threading.Thread(target=self._serve, name=name, daemon=True).start()
            self._started = True

    def _serve(self) -> None:
        while True:
            loop, future, fn = self._jobs.get()
            try:
                result = fn()
            except BaseException as exc:  # handed to the request that awaits it
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)


_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class UploadPath:
    """ASGI middleware answering ``POST /v1/batches``; every other request goes to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._workers = _Workers(UPLOAD_THREADS, "keystep-upload")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        c: Collector = scope["app"].state.collector
        headers = dict(scope["headers"])
        try:
            ack = await _upload(c, headers, receive, self._workers)
        except _ClientGone:
            return
        except ServiceError as exc:
            extra = [(b"www-authenticate", b"Bearer")] if exc.status == 401 else []
            await _respond(send, exc.status, {"detail": exc.reason}, extra)
            return
        payload = {
            "batch_id": ack.batch_id,
            "sha256": ack.sha256,
            "size": ack.size,
            "duplicate": ack.duplicate,
        }
        await _respond(send, 200, payload)


async def _upload(
    c: Collector, headers: dict[bytes, bytes], receive: Receive, workers: _Workers
) -> service.Ack:
    authorization = headers.get(b"authorization", b"").decode("latin-1") or None
    service.bearer_token(authorization)  # a missing or malformed credential: 401 unread
    body = await _read_capped(headers, receive, c.max_batch_bytes)
    content_type = headers.get(b"content-type", b"").decode("latin-1")

    def call() -> service.Ack:
        return service.upload_request(
            c, authorization=authorization, content_type=content_type, body=body
        )

    return await workers.run(call)


async def _read_capped(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes:
    """The body, refusing early (413) when it is or becomes larger than ``limit``."""
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, f"batch exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, f"batch exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(
    send: Send, status: int, payload: dict[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def openapi_path(schema: dict[str, Any]) -> None:
    """Declare ``POST /v1/batches`` in the app's OpenAPI ``schema`` (in place)."""
    ref = "#/components/schemas/{model}"
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (BatchAck, ErrorPublic):
        components.setdefault(model.__name__, model.model_json_schema(ref_template=ref))
    schemes = schema["components"].setdefault("securitySchemes", {})
    schemes.setdefault("HTTPBearer", {"type": "http", "scheme": "bearer"})

    def answer(description: str, model: str) -> dict[str, Any]:
        content = {"application/json": {"schema": {"$ref": ref.format(model=model)}}}
        return {"description": description, "content": content}

    responses = {"200": answer("The acknowledgement: the batch is durably stored", "BatchAck")}
    responses |= {str(code): answer(text, "ErrorPublic") for code, text in _ERRORS.items()}
    schema.setdefault("paths", {})[PATH] = {
        "post": {
            "tags": ["batches"],
            "summary": "Upload one sealed batch",
            "description": "One sealed v1 envelope of the calling device. The same batch id with"
            " the same bytes again gets the same acknowledgement (duplicate: true); the same"
            " batch id, or the same device sequence number, with other bytes is 409.",
            "operationId": "upload_v1_batches_post",
            "requestBody": {
                "required": True,
                "content": {
                    service.ENVELOPE_TYPE: {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "responses": responses,
            "security": [{"HTTPBearer": []}],
        }
    }
