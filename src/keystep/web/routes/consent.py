"""A contributor's consent: see it, give it to a manifest version, withdraw it."""

from __future__ import annotations

from fastapi import APIRouter

from keystep.collector import service
from keystep.store.base import ConsentRecord
from keystep.web.deps import CallerDep, CollectorDep
from keystep.web.schemas import ConsentGive, ConsentPublic, Count

router = APIRouter(prefix="/v1/consent", tags=["consent"])


def _public(r: ConsentRecord) -> ConsentPublic:
    return ConsentPublic(
        manifest_version=r.manifest_version,
        manifest_digest=r.manifest_digest,
        given_at=r.given_at,
        withdrawn_at=r.withdrawn_at,
    )


@router.get("")
def show(c: CollectorDep, caller: CallerDep) -> list[ConsentPublic]:
    return [_public(r) for r in service.consent_state(c, caller=caller)]


@router.post("", status_code=201)
def give(c: CollectorDep, caller: CallerDep, body: ConsentGive) -> ConsentPublic:
    return _public(
        service.give_consent(
            c,
            caller=caller,
            manifest_version=body.manifest_version,
            manifest_digest=body.manifest_digest,
        )
    )


@router.post("/withdraw")
async def withdraw(c: CollectorDep, caller: CallerDep) -> Count:
    return Count(count=await service.withdraw_consent(c, caller=caller))
