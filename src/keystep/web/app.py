"""The FastAPI application factory: opens the stores, the vault and the fleet bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from keystep import __version__
from keystep.collector.credentials import ContributorTokens, StaffTokens
from keystep.collector.fleet import open_fleet_bus
from keystep.collector.leases import DEFAULT_TTL, LeaseSigner
from keystep.collector.metrics import Metrics
from keystep.collector.service import DEFAULT_MAX_BATCH, Collector, ServiceError, ensure_manifest
from keystep.model.manifest import Manifest, default_manifest, load_manifest
from keystep.store.factory import open_blobs, open_repository
from keystep.web.routes import (
    batches,
    consent,
    enroll,
    erase,
    fleet,
    forget,
    health,
    lease,
    manifest,
    me,
    metrics,
)


@dataclass(frozen=True)
class Settings:
    """What ``keystep serve`` needs. ``state_dir`` holds the collector's own keys (the lease
    and contributor-token keys), shared by every collector of one deployment."""

    db: str
    blobs: str
    state_dir: Path
    vault_dir: Path | None = None
    tokens_file: Path | None = None
    manifest_file: Path | None = None
    lease_ttl: float = DEFAULT_TTL
    max_batch_bytes: int = DEFAULT_MAX_BATCH

    def manifest(self) -> Manifest:
        if self.manifest_file is None:
            return default_manifest()
        return load_manifest(self.manifest_file.read_text("utf-8"))


def open_collector(settings: Settings) -> Collector:
    """Everything but the fleet bus, which needs the event loop (see :func:`create_app`)."""
    repo = open_repository(settings.db)
    vault = None
    if settings.vault_dir is not None:
        from keystep.vault import open_local_vault

        vault = open_local_vault(settings.vault_dir, create=True)
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token_key = LeaseSigner.load_or_create(settings.state_dir / "contributor-token.key")
    c = Collector(
        repo=repo,
        blobs=open_blobs(settings.blobs),
        fleet=open_fleet_bus(repo, settings.db),
        signer=LeaseSigner.load_or_create(settings.state_dir / "lease.key"),
        contributor_tokens=ContributorTokens(token_key.private_key),
        staff=StaffTokens.load(settings.tokens_file),
        vault=vault,
        lease_ttl=settings.lease_ttl,
        max_batch_bytes=settings.max_batch_bytes,
        metrics=Metrics(),
    )
    ensure_manifest(c, settings.manifest())
    return c


class CollectorApp(FastAPI):
    """The collector's FastAPI application, with batch uploads answered in front of it.

    ``POST /v1/batches`` goes to :class:`~keystep.web.routes.batches.UploadPath` before
    anything of the framework runs for the request (its telemetry check, error, body-limit
    and exception middleware, routing): the hot path pays for none of them. Every other
    request, and the lifespan, is the framework's as usual."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._front = batches.UploadPath(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        await self._front(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        c = open_collector(settings)
        app.state.collector = c
        await c.fleet.start()
        try:
            yield
        finally:
            await c.fleet.close()
            if c.vault is not None:
                c.vault.close()
            c.blobs.close()
            c.repo.close()

    app = CollectorApp(
        title="keystep collector",
        version=__version__,
        description="Sealed batch upload, enrollment, consent, a contributor's own data, "
        "recording leases and the fleet kill switch.",
        lifespan=lifespan,
    )

    @app.exception_handler(ServiceError)
    async def refused(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=headers)

    for r in (health, metrics, enroll, manifest, consent, me, forget, erase, lease, fleet):
        app.include_router(r.router)
    framework_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = framework_openapi()
        if first:
            batches.openapi_path(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
