"""The collection manifest in force, earlier versions, and publishing a new one (steward)."""

from __future__ import annotations

from fastapi import APIRouter

from keystep.collector import service
from keystep.store.base import ManifestRecord
from keystep.web.deps import CallerDep, CollectorDep
from keystep.web.schemas import ManifestPublic, ManifestPublish

router = APIRouter(prefix="/v1/manifest", tags=["manifest"])


def _public(m: ManifestRecord) -> ManifestPublic:
    return ManifestPublic(
        version=m.version, digest=m.digest, yaml=m.yaml_text, published_at=m.published_at
    )


@router.get("")
def current(c: CollectorDep, caller: CallerDep) -> ManifestPublic:
    return _public(service.current_manifest(c))


@router.get("/{version}")
def by_version(c: CollectorDep, caller: CallerDep, version: int) -> ManifestPublic:
    return _public(service.current_manifest(c, version=version))


@router.post("", status_code=201)
async def publish(c: CollectorDep, caller: CallerDep, body: ManifestPublish) -> ManifestPublic:
    return _public(await service.publish_manifest(c, caller=caller, yaml_text=body.yaml))
